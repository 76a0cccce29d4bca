"""What every service's Alembic env.py does: migrate the URL and version table it was handed."""

from __future__ import annotations

from alembic import context

from services.runtime.db import make_engine


def run() -> None:
    cfg = context.config
    engine = make_engine(cfg.attributes["url"])
    with engine.begin() as conn:
        context.configure(connection=conn, version_table=cfg.attributes["version_table"])
        context.run_migrations()
    engine.dispose()
