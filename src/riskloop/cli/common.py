"""Shared CLI plumbing: settings from the context, JSON output, console helpers."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from sqlalchemy.orm import Session

from ..config import Settings, load_settings
from ..store.db import transaction

console = Console()
err_console = Console(stderr=True)

JSON_OPTION = typer.Option(False, "--json", help="Print machine-readable JSON instead of a table.")


def settings_from(ctx: typer.Context) -> Settings:
    root = ctx.find_root()
    obj = root.obj if isinstance(root.obj, dict) else {}
    settings = obj.get("settings")
    if settings is None:
        settings = load_settings(workspace=obj.get("workspace"))
        obj["settings"] = settings
        root.obj = obj
    return settings


@contextmanager
def unit(ctx: typer.Context) -> Iterator[tuple[Settings, Session]]:
    """One command = one transaction."""
    settings = settings_from(ctx)
    with transaction(settings) as session:
        yield settings, session


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def short(digest: str | None, n: int = 12) -> str:
    return (digest or "")[:n]
