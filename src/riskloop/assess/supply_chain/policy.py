"""Scan policies: the user's own allow/deny entries and budgets, from a TOML, YAML or JSON file.

::

    # scan-policy.toml
    allow = ["mypackage.models.Net"]          # module.name, or module.* for a whole package
    deny = ["sklearn.neighbors.*"]
    [budgets]
    max_seconds = 60
    max_decompressed = 1_000_000_000

``riskloop scan --policy default`` (or no ``--policy``) uses the built-in tables only.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import MSG_PATH_MISSING, InputError
from .allowlist import Allowlist
from .budgets import Budgets

_ENTRY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_<>][A-Za-z0-9_<>]*)*(\.\*)?$")


@dataclass(frozen=True)
class ScanPolicy:
    """What a scan allows, denies and may spend."""

    name: str = "default"
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    budgets: Budgets = field(default_factory=Budgets)

    @property
    def allowlist(self) -> Allowlist:
        return Allowlist(allow=self.allow, deny=self.deny)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "allow": list(self.allow), "deny": list(self.deny),
                "budgets": self.budgets.as_dict()}


def _entries(data: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{where}: '{key}' must be a list of 'module.name' strings")
    for v in value:
        if "." not in v or not _ENTRY.match(v):
            raise InputError(
                f"{where}: bad {key} entry '{v}': write module.name (e.g. mypkg.models.Net) "
                "or module.* for a whole package"
            )
    return tuple(value)


def policy_from_dict(data: Any, *, name: str = "custom") -> ScanPolicy:
    where = f"scan policy '{name}'"
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a mapping with allow, deny and budgets")
    unknown = set(data) - {"allow", "deny", "budgets"}
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}: use allow, deny, budgets")
    budgets = data.get("budgets") or {}
    if not isinstance(budgets, dict):
        raise InputError(f"{where}: 'budgets' must be a table of budget = number")
    return ScanPolicy(name=name, allow=_entries(data, "allow", where),
                      deny=_entries(data, "deny", where),
                      budgets=Budgets().updated(budgets, where=where))


def load_policy(spec: str | Path | None) -> ScanPolicy:
    """``None`` or ``"default"``: the built-in policy; otherwise a TOML/YAML/JSON file."""
    if spec is None or str(spec) == "default":
        return ScanPolicy()
    path = Path(spec)
    if not path.is_file():
        raise InputError(MSG_PATH_MISSING.format(path=path) + " (--policy takes 'default' or a file)")
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        elif path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"scan policy '{path}' cannot be parsed ({exc})") from None
    except Exception as exc:  # yaml.YAMLError and friends
        raise InputError(f"scan policy '{path}' cannot be parsed ({type(exc).__name__})") from None
    return policy_from_dict(data, name=str(path))
