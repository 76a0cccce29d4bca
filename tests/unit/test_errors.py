"""The problem+json answers of services/runtime/errors.py for what a request's values can break
below the routes' own checks: they are the caller's to mend, so 422, never 500."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.exc import DataError

from contracts import canonical
from services.runtime.errors import PROBLEM_JSON, install_error_handlers


class NulRefused(Exception):
    """Stands in for psycopg's DataError (which needs a server to raise)."""

    def __str__(self) -> str:
        return "PostgreSQL text fields cannot contain NUL (0x00) bytes"


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/canonical")
    def _canonical():
        canonical.dumps({"n": 2**60})

    @app.get("/nul")
    def _nul():
        raise DataError("INSERT INTO models ...", {"description": "a\x00b"}, NulRefused())

    @app.get("/range")
    def _range():
        raise DataError("INSERT ...", {}, Exception("integer out of range\nCONTEXT: ..."))

    @app.get("/bug")
    def _bug():
        raise KeyError("x")

    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize(("path", "words"), [
    ("/canonical", "cannot be recorded exactly (2**60"),
    ("/nul", "contains the NUL character (U+0000), which the database cannot store"),
    ("/range", "a value cannot be stored: integer out of range; nothing was changed"),
])
def test_values_the_record_cannot_hold_are_422_saying_why(client, path, words):
    response = client.get(path)
    assert response.status_code == 422 and response.headers["content-type"] == PROBLEM_JSON
    detail = response.json()["detail"]
    assert words in detail.replace("1152921504606846976", "2**60"), detail
    assert "INSERT" not in detail  # the statement stays in the log


def test_a_bug_is_still_a_500_that_shows_nothing(client):
    response = client.get("/bug")
    assert response.status_code == 500 and "KeyError" not in response.text
