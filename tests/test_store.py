"""Store: migrations from empty to head, transactions, corrupt databases."""

from __future__ import annotations

import sqlalchemy as sa

from riskloop.store import db
from riskloop.store.models import Base


def test_migration_empty_to_head_matches_models(workspace):
    head = db.upgrade(workspace.settings)
    engine = db.get_engine(workspace.settings)
    assert db.current_revision(engine) == head
    tables = set(sa.inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    # Columns of every mapped table exist after migrating (schema and models agree).
    insp = sa.inspect(engine)
    for name, table in Base.metadata.tables.items():
        cols = {c["name"] for c in insp.get_columns(name)}
        assert {c.name for c in table.columns} == cols, name


def test_upgrade_is_idempotent(workspace):
    first = db.upgrade(workspace.settings)
    assert db.upgrade(workspace.settings) == first


def test_init_command_creates_wal_sqlite(sqlite_workspace):
    res = sqlite_workspace.invoke("init", "--json")
    assert res.exit_code == 0, res.output
    dbfile = sqlite_workspace.path / ".riskloop" / "riskloop.db"
    assert dbfile.exists()
    engine = db.get_engine(sqlite_workspace.settings)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_command_before_init_says_so(sqlite_workspace):
    res = sqlite_workspace.run("inventory")
    assert res.returncode == 2
    assert "riskloop init" in res.stderr
    assert "Traceback" not in res.stderr
    assert not (sqlite_workspace.path / ".riskloop" / "riskloop.db").exists()


def test_corrupt_database_is_one_line_exit_2(sqlite_workspace):
    state = sqlite_workspace.path / ".riskloop"
    state.mkdir()
    (state / "riskloop.db").write_bytes(b"this is not a database" * 100)
    res = sqlite_workspace.run("inventory")
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("error: ")
    assert "not a usable riskloop store" in res.stderr


def test_failed_command_writes_nothing(ready, tmp_path):
    from tests.helpers import write_csv

    ok = ready.invoke("register", "dataset", str(write_csv(tmp_path / "a.csv")), "--name", "d")
    assert ok.exit_code == 0
    # Unknown sensitive column: refused before anything is written, audit unchanged.
    before = ready.invoke("audit", "--json").output
    bad = ready.invoke("register", "dataset", str(tmp_path / "a.csv"), "--name", "d",
                       "--sensitive", "nope")
    assert bad.exit_code == 2
    assert ready.invoke("audit", "--json").output == before


def test_init_prints_the_first_admin_token_once(workspace):
    import json

    first = json.loads(workspace.invoke("init", "--json").output)
    assert first["admin_token"].startswith("rlk_")
    second = json.loads(workspace.invoke("init", "--json").output)
    assert second["admin_token"] is None
    tokens = json.loads(workspace.invoke("token", "list", "--json").output)
    assert [t["role"] for t in tokens] == ["admin"]
    assert first["admin_token"] not in workspace.invoke("audit", "--json").output
