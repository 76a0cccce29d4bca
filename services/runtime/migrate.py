"""Alembic upgrades: one script directory and one version table per service database."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


def alembic_config(service: str, url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS / service))
    cfg.set_main_option("path_separator", "os")
    # set_main_option would %-interpolate the URL (passwords may hold '%'): pass it as attribute.
    cfg.attributes["url"] = url
    cfg.attributes["version_table"] = f"alembic_version_{service}"
    return cfg


def upgrade(service: str, url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(service, url), revision)


if __name__ == "__main__":
    import sys

    from services.runtime.settings import get_settings

    for name in sys.argv[1:] or ["registry", "scoring", "monitoring", "audit"]:
        upgrade(name, get_settings().database_url(name))
        print(f"{name}: migrated to head")
