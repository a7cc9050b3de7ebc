"""Property-based fuzzing of ``/api/v1`` from the served OpenAPI schema (schemathesis): a
bounded number of generated requests per operation, as an admin (so that every request passes
authentication and reaches validation and the library) and without a token; no answer may be
a server error, and every refusal is one-line JSON."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import sqlalchemy as sa
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from riskloop import load_settings
from riskloop.service import create_app, tokens
from riskloop.store import db
from riskloop.store.db import transaction
from tests.helpers import write_csv

MAX_EXAMPLES = 12
PG_URL = os.environ.get("RISKLOOP_TEST_PG_URL")
TOKEN: dict[str, str] = {}
SEEN: list[int] = []


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def api_app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as mp:
        for var in ("RISKLOOP_DB_URL", "RISKLOOP_POLICY"):
            mp.delenv(var, raising=False)
        mp.setenv("RISKLOOP_ACTOR", "tester")
        schema = None
        if request.param == "postgres":
            if not PG_URL:
                pytest.skip("RISKLOOP_TEST_PG_URL not set: PostgreSQL backend not fuzzed")
            schema = "t_" + uuid.uuid4().hex[:12]
            with sa.create_engine(PG_URL).begin() as conn:
                conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
            sep = "&" if "?" in PG_URL else "?"
            mp.setenv("RISKLOOP_DB_URL", f"{PG_URL}{sep}options=-csearch_path%3D{schema}")
        root: Path = tmp_path_factory.mktemp("fuzz") / "ws"
        root.mkdir()
        s = load_settings(workspace=root)
        db.upgrade(s)
        write_csv(root / "data.csv")
        with transaction(s) as session:
            TOKEN["admin"] = tokens.create_token(session, owner="fuzzer", role="admin", actor="tester")[1]
        app = create_app(s)
        try:
            with TestClient(app):
                yield app
        finally:
            db.dispose_engines()
            if schema:
                with sa.create_engine(PG_URL).begin() as conn:  # type: ignore[arg-type]
                    conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")


def _check(case: Any) -> None:
    for headers in ({"Authorization": f"Bearer {TOKEN['admin']}"}, {}):
        response = case.call(headers=headers)
        SEEN.append(response.status_code)
        case.validate_response(response, checks=[not_a_server_error])
        assert response.status_code < 500, (case.method, case.formatted_path, response.text)
        if response.status_code >= 400:
            assert set(response.json()) == {"detail"}, response.text
        if not headers:
            assert response.status_code == 401, (case.method, case.formatted_path)


def test_no_server_errors(api_app: Any) -> None:
    SEEN.clear()
    schema = schemathesis.openapi.from_asgi("/openapi.json", api_app).include(path_regex="^/api/v1/")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30
    for op in operations:
        run = settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                       suppress_health_check=list(HealthCheck))(given(case=op.as_strategy())(_check))
        run()
    # The run really exercised the API: answers, refusals of bad input, refusals of no token.
    assert len(SEEN) >= 2 * len(operations) * 3
    assert {200, 401, 404, 422} <= set(SEEN), sorted(set(SEEN))
