"""The root ``riskloop`` command: global options, error handling, sub-command registration."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import click
import typer
from typer.core import TyperGroup

from .. import __version__
from ..errors import RiskloopError


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is now (test runners swap it between invocations)."""

    @property  # type: ignore[override]
    def stream(self):  # type: ignore[no-untyped-def]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:  # type: ignore[no-untyped-def]
        pass


class RiskloopGroup(TyperGroup):
    """Turns every riskloop error raised by a command into one line on stderr + exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RiskloopError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


app = typer.Typer(
    name="riskloop",
    cls=RiskloopGroup,
    help="The AI security risk-management loop: map, measure, manage and monitor ML models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"riskloop {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    workspace: Path = typer.Option(
        None, "--workspace", "-w", envvar="RISKLOOP_WORKSPACE",
        help="Folder holding the .riskloop store (default: current directory).",
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details to stderr."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """The AI security risk-management loop: map, measure, manage and monitor ML models."""
    ctx.obj = {"workspace": str(workspace) if workspace else None}
    root_logger = logging.getLogger()
    if not any(isinstance(h, _StderrHandler) for h in root_logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root_logger.addHandler(handler)
    root_logger.setLevel(logging.INFO if verbose else logging.WARNING)


def _register() -> None:
    from . import audit_cmd, demo_cmd, govern_cmd, inventory_cmd, monitor_cmd, signing_cmd

    inventory_cmd.register(app)
    signing_cmd.register(app)
    from . import scan_cmd

    scan_cmd.register(app)
    from . import assess_cmd

    assess_cmd.register(app)
    audit_cmd.register(app)
    govern_cmd.register(app)
    monitor_cmd.register(app)
    from . import serve_cmd

    serve_cmd.register(app)
    from . import token_cmd

    token_cmd.register(app)
    from . import incident_cmd

    incident_cmd.register(app)
    from . import simulate_cmd

    simulate_cmd.register(app)
    from . import mitigate_cmd

    mitigate_cmd.register(app)
    demo_cmd.register(app)


_register()


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    app()
