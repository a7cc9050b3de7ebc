"""Engine, sessions and schema migrations.

SQLite is opened in WAL mode with ``BEGIN IMMEDIATE`` transactions, so one writer at a time
and readers never block. Every CLI command runs inside one :func:`transaction`: it either
commits whole or leaves nothing behind.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DatabaseError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ..config import Settings
from ..errors import MSG_CORRUPT_DB, MSG_NOT_INITIALISED, StoreError

_MIGRATIONS = Path(__file__).with_name("migrations")
_ENGINES: dict[str, Engine] = {}


def _sqlite_pragmas(dbapi_conn: sqlite3.Connection, _record: object) -> None:
    # Let SQLAlchemy's BEGIN be ours: autocommit off in the driver, BEGIN IMMEDIATE below.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin(conn) -> None:  # type: ignore[no-untyped-def]
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def get_engine(settings: Settings) -> Engine:
    """One engine per URL and process."""
    url = settings.db_url
    engine = _ENGINES.get(url)
    if engine is not None:
        return engine
    if url.startswith("sqlite"):
        db_path = url.split("///", 1)[-1]
        if db_path and db_path != ":memory:":
            Path(db_path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    _ENGINES[url] = engine
    return engine


def dispose_engines() -> None:
    """Close every pooled connection (tests and forked workers call this)."""
    for engine in _ENGINES.values():
        engine.dispose()
    _ENGINES.clear()


def _alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.set_main_option(
        "sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%")
    )
    return cfg


def head_revision() -> str:
    script = ScriptDirectory.from_config(_alembic_config(create_engine("sqlite://")))
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(settings: Settings) -> str:
    """Run ``alembic upgrade head`` on the store; returns the head revision."""
    engine = get_engine(settings)
    cfg = _alembic_config(engine)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except (DatabaseError, OperationalError) as exc:
        where = settings.db_url if not settings.is_default_sqlite else str(settings.state_dir)
        raise StoreError(MSG_CORRUPT_DB.format(where=where, reason=_short(exc))) from None
    return head_revision()


def _short(exc: Exception) -> str:
    return str(getattr(exc, "orig", exc)).splitlines()[0]


def check_ready(settings: Settings) -> Engine:
    """Open the store and make sure it is migrated to head; one clear error otherwise."""
    where = str(settings.workspace) if settings.is_default_sqlite else settings.db_url
    if settings.is_default_sqlite and not (settings.state_dir / "riskloop.db").exists():
        raise StoreError(MSG_NOT_INITIALISED.format(where=where))
    engine = get_engine(settings)
    try:
        rev = current_revision(engine)
        if rev is None:
            if not inspect(engine).get_table_names():
                raise StoreError(MSG_NOT_INITIALISED.format(where=where))
            raise StoreError(MSG_CORRUPT_DB.format(where=where, reason="no schema version"))
    except (DatabaseError, OperationalError) as exc:
        raise StoreError(MSG_CORRUPT_DB.format(where=where, reason=_short(exc))) from None
    if rev != head_revision():
        # A newer riskloop added tables: migrate forward automatically.
        upgrade(settings)
    return engine


@contextmanager
def transaction(settings: Settings) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception."""
    engine = check_ready(settings)
    factory = sessionmaker(bind=engine, expire_on_commit=False)
    session = factory()
    try:
        with session.begin():
            yield session
        head = session.info.pop("audit_head", None)
        if head is not None:
            from .audit import HEAD_FILE, write_head_file

            write_head_file(settings.state_dir / HEAD_FILE, *head)
    except (DatabaseError, OperationalError) as exc:
        raise StoreError(MSG_CORRUPT_DB.format(where=settings.db_url, reason=_short(exc))) from None
    finally:
        session.close()
