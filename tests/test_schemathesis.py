"""Property-based fuzzing of ``/api/v1`` from the served OpenAPI schema (schemathesis): a
bounded number of generated requests per operation, as an admin (so that every request passes
authentication and reaches validation and the library) and without a token; no answer may be
a server error, and every refusal is one-line JSON."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from riskloop import load_settings
from riskloop.service import create_app, tokens
from riskloop.store import db
from riskloop.store.db import transaction
from tests.helpers import write_csv

MAX_EXAMPLES = 12
TOKEN: dict[str, str] = {}
SEEN: list[int] = []


@pytest.fixture(scope="module")
def api_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with pytest.MonkeyPatch.context() as mp:
        for var in ("RISKLOOP_DB_URL", "RISKLOOP_POLICY"):
            mp.delenv(var, raising=False)
        mp.setenv("RISKLOOP_ACTOR", "tester")
        root: Path = tmp_path_factory.mktemp("fuzz") / "ws"
        root.mkdir()
        s = load_settings(workspace=root)
        db.upgrade(s)
        write_csv(root / "data.csv")
        with transaction(s) as session:
            TOKEN["admin"] = tokens.create_token(session, owner="fuzzer", role="admin", actor="tester")[1]
        app = create_app(s)
        with TestClient(app):
            yield app
    db.dispose_engines()


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
