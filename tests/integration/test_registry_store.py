"""The registry store's contract, run on SQLite and on a real PostgreSQL (the `db_url` fixture)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from contracts.registry.api import ModelCreate, VersionMetadata, VersionStatus
from services.registry import store
from services.registry.domain import Artifact, Step
from services.runtime import migrate
from services.runtime.db import make_engine
from tests.registry_helpers import metadata, model_body

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ARTIFACT = Artifact("ab" * 32, 1234, "skops")
META = VersionMetadata.model_validate(metadata())


@pytest.fixture
def engine(db_url):
    migrate.upgrade("registry", db_url)
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


def add_model(engine, name: str = "credit-default") -> None:
    with engine.begin() as conn:
        store.insert_model(conn, ModelCreate.model_validate(model_body(name)), T0, "user:alice")


def add_version(engine, name: str = "credit-default", by: str = "user:alice") -> int:
    with engine.begin() as conn:
        return store.insert_version(conn, store.lock_model(conn, name), ARTIFACT, META, T0, by)


class TestRegistryStore:
    def test_a_model_reads_back_as_created(self, engine):
        add_model(engine)
        with engine.connect() as conn:
            model = store.get_model(conn, "credit-default")
            listed = store.list_models(conn)
        # check every field survives, times come back in UTC
        assert model.model_dump(include=set(model_body())) == model_body()
        assert (model.created_at, model.created_by) == (T0, "user:alice")
        assert (model.latest_version, model.aliases) == (None, {})
        assert listed == [model]

    def test_versions_count_1_2_3_per_model(self, engine):
        add_model(engine, "credit-default")
        add_model(engine, "card-fraud")
        numbers = [add_version(engine, "credit-default") for _ in range(3)]
        # check the other model's numbering starts afresh
        assert numbers == [1, 2, 3]
        assert add_version(engine, "card-fraud") == 1
        with engine.connect() as conn:
            assert store.get_model(conn, "credit-default").latest_version == 3
            versions = store.list_versions(conn, "credit-default")
        assert [v.version for v in versions] == [1, 2, 3]
        assert versions[0].metadata == META
        assert (versions[0].artifact_sha256, versions[0].artifact_size, versions[0].status) == (
            ARTIFACT.sha256, ARTIFACT.size, VersionStatus.registered)

    def test_concurrent_registrations_get_distinct_consecutive_numbers(self, engine):
        add_model(engine)
        with ThreadPoolExecutor(max_workers=6) as pool:
            numbers = list(pool.map(lambda _: add_version(engine), range(12)))
        assert sorted(numbers) == list(range(1, 13))

    def test_an_unknown_model_cannot_be_locked(self, engine):
        with engine.begin() as conn:
            assert store.lock_model(conn, "nope") is None
            assert store.get_model(conn, "nope") is None
            assert store.get_version(conn, "nope", 1) is None

    def test_a_status_change_is_compare_and_set_and_kept_in_history(self, engine):
        add_model(engine)
        add_version(engine)
        later = T0 + timedelta(hours=1)
        with engine.begin() as conn:
            lock = store.lock_model(conn, "credit-default")
            moved = store.set_status(conn, lock, 1, VersionStatus.registered,
                                     Step(VersionStatus.validated, later, "user:bob", "checks pass"))
            stale = store.set_status(conn, lock, 1, VersionStatus.registered,
                                     Step(VersionStatus.retired, later, "user:bob"))
        # check the second change, based on a stale status, did nothing
        assert (moved, stale) == (True, False)
        with engine.connect() as conn:
            assert store.get_version(conn, "credit-default", 1).status == VersionStatus.validated
            history = store.version_history(conn, "credit-default", 1)
        assert history == [Step(VersionStatus.registered, T0, "user:alice"),
                           Step(VersionStatus.validated, later, "user:bob", "checks pass")]

    def test_aliases_are_set_moved_and_removed(self, engine):
        add_model(engine)
        add_version(engine)
        add_version(engine)
        with engine.begin() as conn:
            lock = store.lock_model(conn, "credit-default")
            store.put_alias(conn, lock, "champion", 1, T0, "service:wf", "review-1", None)
            store.put_alias(conn, lock, "challenger", 2, T0, "service:wf", "review-2", None)
            store.put_alias(conn, lock, "champion", 2, T0, "user:root", None, "incident")
            assert store.get_alias(conn, lock, "champion") == 2
        with engine.connect() as conn:
            assert store.get_model(conn, "credit-default").aliases == {"challenger": 2, "champion": 2}
            assert store.get_version(conn, "credit-default", 2).aliases == ["challenger", "champion"]
            assert store.get_version(conn, "credit-default", 1).aliases == []
        with engine.begin() as conn:
            lock = store.lock_model(conn, "credit-default")
            store.delete_alias(conn, lock, "challenger")
            assert store.get_alias(conn, lock, "challenger") is None
        with engine.connect() as conn:
            assert store.list_models(conn)[0].aliases == {"champion": 2}
