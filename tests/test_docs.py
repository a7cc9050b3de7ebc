"""Documentation stays in step with the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_cli_reference_is_current():
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_cli_docs.py"), "--check"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_readme_starts_with_the_two_commands():
    head = (ROOT / "README.md").read_text().splitlines()[:15]
    text = "\n".join(head)
    assert "make demo" in text and "make test" in text


def test_every_top_level_command_is_in_the_readme_or_docs():
    import typer.main

    from riskloop.cli.app import app

    docs = (ROOT / "README.md").read_text() + "".join(
        p.read_text() for p in (ROOT / "docs").glob("*.md") if p.name != "cli.md"
    )
    root = typer.main.get_command(app)
    missing = [n for n in root.commands if f"riskloop {n}" not in docs]
    assert not missing, f"commands not described outside docs/cli.md: {missing}"
