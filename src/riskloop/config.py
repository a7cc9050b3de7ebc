"""Settings: the workspace, the database URL and the acting user.

Resolution order for each value: explicit argument, then environment variable, then default.

- ``RISKLOOP_WORKSPACE``: folder holding ``.riskloop/`` (default: current directory).
- ``RISKLOOP_DB_URL``: SQLAlchemy URL of the store (default: SQLite in WAL mode at
  ``<workspace>/.riskloop/riskloop.db``).
- ``RISKLOOP_ACTOR``: name recorded on audit events (default: the login name).
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from pathlib import Path

STATE_DIR = ".riskloop"
DB_FILE = "riskloop.db"


@dataclass(frozen=True)
class Settings:
    """Resolved settings for one command or one service process."""

    workspace: Path
    db_url: str
    actor: str

    @property
    def state_dir(self) -> Path:
        return self.workspace / STATE_DIR

    @property
    def is_default_sqlite(self) -> bool:
        return "RISKLOOP_DB_URL" not in os.environ and self.db_url.startswith("sqlite")

    @property
    def artifacts_dir(self) -> Path:
        return self.state_dir / "artifacts"


def _default_actor() -> str:
    try:
        return getpass.getuser()
    except Exception:  # pragma: no cover - no login name in some containers
        return "unknown"


def load_settings(
    *, workspace: str | os.PathLike[str] | None = None, db_url: str | None = None
) -> Settings:
    """Resolve the settings for this process."""
    ws = Path(workspace or os.environ.get("RISKLOOP_WORKSPACE") or os.getcwd()).resolve()
    url = db_url or os.environ.get("RISKLOOP_DB_URL") or f"sqlite:///{ws / STATE_DIR / DB_FILE}"
    actor = os.environ.get("RISKLOOP_ACTOR") or _default_actor()
    return Settings(workspace=ws, db_url=url, actor=actor)
