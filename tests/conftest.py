"""Shared fixtures: isolated workspaces on SQLite and (when RISKLOOP_TEST_PG_URL is set)
PostgreSQL, a CLI runner, and deterministic torch settings."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from riskloop import load_settings
from riskloop.cli.app import app
from riskloop.store import db

torch.set_num_threads(2)
PG_URL = os.environ.get("RISKLOOP_TEST_PG_URL")
SHARED = Path(__file__).resolve().parents[2] / "shared"


@dataclass
class Workspace:
    """A fresh workspace with its own store; ``env`` makes subprocesses use the same store."""

    path: Path
    env: dict[str, str]
    backend: str

    @property
    def settings(self):  # type: ignore[no-untyped-def]
        return load_settings(workspace=self.path, db_url=self.env.get("RISKLOOP_DB_URL"))

    def invoke(self, *args: str, input: str | None = None):  # type: ignore[no-untyped-def]
        """Run the CLI in-process through Typer's runner."""
        runner = CliRunner()
        return runner.invoke(app, ["--workspace", str(self.path), *args], env=self.env,
                             input=input, catch_exceptions=False)

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run the CLI as a real subprocess (``python -m riskloop``)."""
        env = {**os.environ, **self.env}
        return subprocess.run(
            [sys.executable, "-m", "riskloop", "--workspace", str(self.path), *args],
            capture_output=True, text=True, env=env, timeout=timeout,
        )


def _pg_schema_url(schema: str) -> str:
    sep = "&" if "?" in PG_URL else "?"  # type: ignore[operator]
    return f"{PG_URL}{sep}options=-csearch_path%3D{schema}"


def _make_workspace(tmp_path: Path, backend: str) -> Iterator[Workspace]:
    env = {"RISKLOOP_ACTOR": "tester"}
    schema = None
    if backend == "postgres":
        if not PG_URL:
            pytest.skip("RISKLOOP_TEST_PG_URL not set: PostgreSQL backend not tested")
        import sqlalchemy as sa

        schema = "t_" + uuid.uuid4().hex[:12]
        eng = sa.create_engine(PG_URL)
        with eng.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        eng.dispose()
        env["RISKLOOP_DB_URL"] = _pg_schema_url(schema)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    ws = Workspace(tmp_path / "ws", env, backend)
    ws.path.mkdir()
    try:
        yield ws
    finally:
        db.dispose_engines()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        if schema:
            import sqlalchemy as sa

            eng = sa.create_engine(PG_URL)
            with eng.begin() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
            eng.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def workspace(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Workspace]:
    """An empty, un-initialised workspace on each store backend."""
    yield from _make_workspace(tmp_path, request.param)


@pytest.fixture
def sqlite_workspace(tmp_path: Path) -> Iterator[Workspace]:
    """An empty workspace on SQLite only (for compute-heavy tests)."""
    yield from _make_workspace(tmp_path, "sqlite")


@pytest.fixture
def ready(workspace: Workspace) -> Workspace:
    """A workspace whose store is initialised (both backends)."""
    db.upgrade(workspace.settings)
    return workspace


@pytest.fixture
def ready_sqlite(sqlite_workspace: Workspace) -> Workspace:
    db.upgrade(sqlite_workspace.settings)
    return sqlite_workspace


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.exists():
        pytest.skip(f"shared material not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a test module: small models train and attack fastest on one
    thread, and on a busy two-core machine two threads thrash. Modules that train or attack
    models use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
