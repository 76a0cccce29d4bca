"""Each service's Alembic head is exactly the tables its store code uses, on both backends."""

from __future__ import annotations

import importlib

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from services.runtime import migrate
from services.runtime.db import make_engine


@pytest.mark.parametrize("service", ["registry", "audit", "scoring", "monitoring"])
def test_the_migrated_schema_is_the_tables_the_code_uses(service, db_url):
    migrate.upgrade(service, db_url)
    engine = make_engine(db_url)
    store = importlib.import_module(f"services.{service}.store")
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"version_table": f"alembic_version_{service}", "compare_type": True}
        )
        assert compare_metadata(context, store.metadata) == []
    engine.dispose()
