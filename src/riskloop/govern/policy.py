"""Policy as code: the risk-appetite YAML file, its schema, validation and resolution.

The governance committee sets the risk appetite (paper 4.3.1); this module turns it into a
checked data structure. A policy file may be partial: every key left out takes the built-in
default (``default_policy.yaml``, which ``riskloop policy init`` writes with its comments).
Validation errors name the file, the line and the dotted key, and say what is expected.

Overrides apply per EU AI Act tier and per domain, in the order base → tier → domain.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..errors import InputError
from ..inventory.profiles import DOMAINS, TIERS

POLICY_FILE = "riskloop-policy.yaml"
BUILTIN = "<built-in default policy>"
ON_MISSING = ("no-go", "needs-approval")
NEEDS_TRUST = ("fail", "require-trusted", "allow")


class PolicyError(InputError):
    """A policy file that cannot be used; the message names file, line and key."""


# --- schema -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Num:
    """A number in [lo, hi]; ``integer`` for counts, ``nullable`` for optional values."""

    lo: float | None = None
    hi: float | None = None
    integer: bool = False
    nullable: bool = False
    hint: str = ""

    def check(self, value: Any) -> tuple[Any, str | None]:
        if value is None:
            return (None, None) if self.nullable else (None, f"expected {self.describe()}, got nothing")
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None, f"expected {self.describe()}, got {value!r}"
        if self.integer and not float(value).is_integer():
            return None, f"expected {self.describe()}, got {value!r}"
        if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            return None, f"expected {self.describe()}, got {value!r}"
        return (int(value) if self.integer else float(value)), None

    def describe(self) -> str:
        kind = "a whole number" if self.integer else "a number"
        if self.lo is not None and self.hi is not None:
            rng = f" from {self.lo:g} to {self.hi:g}"
        elif self.lo is not None:
            rng = f" of at least {self.lo:g}"
        else:
            rng = ""
        return kind + rng + (" or null" if self.nullable else "") + (f" ({self.hint})" if self.hint else "")


@dataclass(frozen=True)
class Bool:
    def check(self, value: Any) -> tuple[Any, str | None]:
        if isinstance(value, bool):
            return value, None
        return None, f"expected true or false, got {value!r}"


@dataclass(frozen=True)
class Choice:
    values: tuple[str, ...]

    def check(self, value: Any) -> tuple[Any, str | None]:
        if value in self.values:
            return value, None
        return None, f"expected one of {', '.join(self.values)}, got {value!r}"


@dataclass(frozen=True)
class Text:
    def check(self, value: Any) -> tuple[Any, str | None]:
        if isinstance(value, str) and value.strip() and len(value) <= 200:
            return value, None
        return None, f"expected a non-empty name (at most 200 characters), got {value!r}"


Leaf = Num | Bool | Choice | Text
Spec = dict[str, Any]  # key -> Leaf | Spec

FRACTION = Num(0.0, 1.0, hint="a fraction: 0.85 means 85%")
DAYS = Num(1, 3650, integer=True)

RULES_SPEC: Spec = {
    "evasion": {"required": Bool(), "min_ars": FRACTION,
                "eps": Num(0.0, None, nullable=True, hint="null = the suite's standard epsilon")},
    "supply_chain": {"required": Bool(), "max_critical": Num(0, None, integer=True),
                     "needs_trust": Choice(NEEDS_TRUST)},
    "signature": {"required": Bool()},
    "privacy": {"required": Bool(), "max_membership_advantage": FRACTION,
                "max_tpr_at_1pct_fpr": FRACTION},
    "extraction": {"required": Bool(), "max_fidelity": FRACTION,
                   "budget": Num(1, None, integer=True, nullable=True,
                                 hint="null = the largest budget measured")},
    "integrity": {"required": Bool(), "max_label_issue_fraction": FRACTION,
                  "max_backdoor_flagged_fraction": FRACTION},
    "fairness": {"required": Bool(), "max_demographic_parity_difference": FRACTION,
                 "max_equalized_odds_difference": FRACTION},
}
BODY_SPEC: Spec = {
    "evidence": {"max_age_days": DAYS, "on_missing": Choice(ON_MISSING)},
    "approval": {"required": Bool(), "max_age_days": DAYS, "separation_of_duties": Bool(),
                 "allow_risk_acceptance": Bool()},
    "rules": RULES_SPEC,
    "monitoring": {"drift_window_hours": Num(1, 24 * 365, integer=True),
                   "drift_alert_psi": Num(0.0, None), "drift_block_psi": Num(0.0, None),
                   "max_defence_fpr": FRACTION, "mttr_target_hours": Num(0.0, None),
                   "auto_contain": Bool(), "contain_mode": Choice(("fallback", "shadow")),
                   "review_confidence": FRACTION},
}
SPEC: Spec = {
    "version": Num(1, 1, integer=True),
    "name": Text(),
    **BODY_SPEC,
    "overrides": {"tiers": dict.fromkeys(TIERS, BODY_SPEC),
                  "domains": dict.fromkeys(DOMAINS, BODY_SPEC)},
}
PARTIAL = ("overrides",)  # sections whose keys are all optional


def leaves(spec: Spec, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Leaf]]:
    """Every (path, leaf) of a spec, overrides excluded."""
    out: list[tuple[tuple[str, ...], Leaf]] = []
    for key, sub in spec.items():
        if key in PARTIAL:
            continue
        if isinstance(sub, dict):
            out.extend(leaves(sub, (*prefix, key)))
        else:
            out.append(((*prefix, key), sub))
    return out


# --- parsing ------------------------------------------------------------------------------


def _line_map(node: yaml.Node, where: str, prefix: tuple[str, ...] = ()) -> dict[str, int]:
    """Dotted key -> 1-based line, and a clear error for duplicate or non-text keys."""
    lines: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for knode, vnode in node.value:
            line = knode.start_mark.line + 1
            if not isinstance(knode, yaml.ScalarNode):
                raise PolicyError(f"{where}:{line}: {'.'.join(prefix) or '<top>'}: keys must be plain names")
            key = str(knode.value)
            path = (*prefix, key)
            if key in seen:
                raise PolicyError(
                    f"{where}:{line}: {'.'.join(path)}: key appears twice: keep one of them"
                )
            seen.add(key)
            lines[".".join(path)] = line
            lines.update(_line_map(vnode, where, path))
    return lines


def _validate(data: Any, spec: Spec, path: tuple[str, ...], ctx: _Ctx) -> dict[str, Any]:
    where = ".".join(path) or "<top>"
    if not isinstance(data, dict):
        ctx.fail(path, f"{where}: expected a section of keys, got {data!r}")
    out: dict[str, Any] = {}
    for key, value in data.items():
        sub_path = (*path, str(key))
        dotted = ".".join(sub_path)
        if key not in spec:
            close = difflib.get_close_matches(str(key), list(spec), n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"allowed: {', '.join(spec)}"
            ctx.fail(sub_path, f"{dotted}: unknown key: {hint}")
        sub = spec[key]
        if isinstance(sub, dict):
            if value is None and (key in PARTIAL or path[:1] == ("overrides",)):
                out[key] = {}
                continue
            out[key] = _validate(value, sub, sub_path, ctx)
        else:
            checked, problem = sub.check(value)
            if problem:
                ctx.fail(sub_path, f"{dotted}: {problem}")
            out[key] = checked
    return out


@dataclass
class _Ctx:
    where: str
    lines: dict[str, int]

    def fail(self, path: tuple[str, ...], message: str) -> None:
        line = None
        for n in range(len(path), 0, -1):
            line = self.lines.get(".".join(path[:n]))
            if line:
                break
        raise PolicyError(f"{self.where}:{line or 1}: {message}")


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_text(text: str, *, where: str, defaults: dict[str, Any] | None) -> tuple[dict[str, Any], dict[str, int]]:
    """Validate policy text; merge it onto ``defaults`` (None: it must be complete)."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise PolicyError(f"{where}:{line}: not valid YAML ({exc.problem}): fix the syntax") from None
    except yaml.YAMLError as exc:
        raise PolicyError(f"{where}:1: not valid YAML ({exc}): fix the syntax") from None
    if raw is None:
        raw = {}
    lines = _line_map(node, where) if node is not None else {}
    ctx = _Ctx(where, lines)
    checked = _validate(raw, SPEC, (), ctx)
    data = deep_merge(defaults, checked) if defaults is not None else checked
    missing = [".".join(p) for p, _ in leaves(SPEC) if _dig(data, p, _MISSING) is _MISSING]
    if missing:
        raise PolicyError(f"{where}:1: {missing[0]}: required key is missing: add it")
    _check_monitoring(data, ctx)
    return data, lines


_MISSING = object()


def _check_monitoring(data: dict[str, Any], ctx: _Ctx) -> None:
    bodies = [("", data["monitoring"])]
    for kind in ("tiers", "domains"):
        for name, body in data["overrides"].get(kind, {}).items():
            if body.get("monitoring"):
                bodies.append((f"overrides.{kind}.{name}.", {**data["monitoring"], **body["monitoring"]}))
    for prefix, mon in bodies:
        if mon["drift_alert_psi"] > mon["drift_block_psi"]:
            key = f"{prefix}monitoring.drift_alert_psi"
            ctx.fail(tuple(key.split(".")),
                     f"{key}: the alert level ({mon['drift_alert_psi']:g}) is above the block "
                     f"level ({mon['drift_block_psi']:g}): make drift_alert_psi <= drift_block_psi")


def _dig(data: dict[str, Any], path: tuple[str, ...], default: Any = None) -> Any:
    cur: Any = data
    for key in path:
        if not isinstance(cur, dict) or key not in cur:
            return default
        cur = cur[key]
    return cur


def default_text() -> str:
    return resources.files("riskloop.govern").joinpath("default_policy.yaml").read_text()


_DEFAULTS: dict[str, Any] | None = None


def defaults() -> dict[str, Any]:
    global _DEFAULTS
    if _DEFAULTS is None:
        _DEFAULTS, _ = parse_text(default_text(), where="default_policy.yaml", defaults=None)
    return copy.deepcopy(_DEFAULTS)


# --- the policy object --------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """A validated, complete policy and where each key came from."""

    data: dict[str, Any]
    source: str = BUILTIN
    text: str = ""
    lines: dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.data["name"])

    @property
    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the data: same meaning, same digest."""
        return hashlib.sha256(
            json.dumps(self.data, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()

    def resolve(self, *, tier: str, domain: str) -> Resolved:
        body = {k: v for k, v in self.data.items() if k != "overrides"}
        applied: list[str] = []
        origin: dict[str, str] = {}
        for kind, key in (("tiers", tier), ("domains", domain)):
            extra = self.data["overrides"].get(kind, {}).get(key)
            if extra:
                body = deep_merge(body, extra)
                applied.append(f"{kind[:-1]}:{key}")
                for path, _ in leaves(extra):
                    origin[".".join(path)] = f"overrides.{kind}.{key}.{'.'.join(path)}"
        return Resolved(data=body, applied=tuple(applied), policy=self, origin=origin)

    def dump(self) -> str:
        return dump(self.data)


@dataclass(frozen=True)
class Resolved:
    """The policy as it applies to one model (overrides for its tier and domain applied)."""

    data: dict[str, Any]
    applied: tuple[str, ...]
    policy: Policy
    origin: dict[str, str]

    def get(self, dotted: str) -> Any:
        value = _dig(self.data, tuple(dotted.split(".")), _MISSING)
        if value is _MISSING:
            raise KeyError(dotted)
        return value

    def key_of(self, dotted: str) -> str:
        """The policy key that set this value (an override's key when one applied)."""
        return self.origin.get(dotted, dotted)

    def line_of(self, dotted: str) -> int | None:
        return self.policy.lines.get(self.key_of(dotted))


def dump(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)


def parse(text: str, *, where: str = "<text>") -> Policy:
    data, lines = parse_text(text, where=where, defaults=defaults())
    return Policy(data=data, source=where, text=text, lines=lines)


def load(path: str | os.PathLike[str] | None = None, *, workspace: Path | None = None) -> Policy:
    """Load a policy file; without a path, the workspace's ``riskloop-policy.yaml`` or the
    built-in default (``RISKLOOP_POLICY`` names a file too)."""
    if path is None:
        env = os.environ.get("RISKLOOP_POLICY")
        if env:
            path = env
        elif workspace is not None and (workspace / POLICY_FILE).exists():
            path = workspace / POLICY_FILE
        else:
            text = default_text()
            data, lines = parse_text(text, where=BUILTIN, defaults=None)
            return Policy(data=data, source=BUILTIN, text=text, lines=lines)
    p = Path(path)
    if not p.exists():
        raise PolicyError(
            f"policy file '{p}' does not exist: create one with 'riskloop policy init {p}'"
        )
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"policy file '{p}' cannot be read ({exc}): check the path") from None
    return parse(text, where=str(p))


def write_default(path: Path, *, force: bool = False) -> Path:
    if path.exists() and not force:
        raise InputError(f"'{path}' already exists: choose another path or pass --force")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(default_text(), encoding="utf-8")
    return path
