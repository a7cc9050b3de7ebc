"""Rule-based fallback: the answer a deployment gives when its model must not (paper 5.2.1).

A small YAML file of ordered rules, each a set of thresholds on input features and an
answer; the first rule whose conditions all hold answers, otherwise the default does::

    version: 1
    default: "reject"            # answer when no rule matches
    rules:
      - name: high-income
        when: "income > 50000 and age >= 25"    # a string: conditions joined by 'and'
        answer: "approve"
      - name: centre-pixel
        when:                                   # or a list of conditions
          - {feature: "X[27]", op: ">", value: 0.5}
        answer: "1"

A feature is named by the model's feature name, by ``x3`` / ``X[3]`` or by its integer
position in the flattened input. Operators: ``<``, ``<=``, ``>``, ``>=``, ``==``, ``!=``.
The file is checked when it is loaded (errors name the file, the line and the key) and
again when it is bound to a model (feature names and positions must exist).

The gateway answers with these rules in ``fallback`` mode (the model does not run) and in
``shadow`` mode (the model runs and is logged, the rules answer).
"""

from __future__ import annotations

import hashlib
import json
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..errors import MSG_PATH_MISSING, InputError

OPS: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "==": operator.eq, "!=": operator.ne,
}
_COND = re.compile(r"^\s*(?P<feature>\S+?)\s*(?P<op><=|>=|==|!=|<|>)\s*(?P<value>\S+)\s*$")
_INDEXED = re.compile(r"^(?:x(?P<a>\d+)|X\[(?P<b>\d+)\])$")
MAX_RULES = 1000
STORED_KEYS = ("digest", "answers", "outside_classes")  # added when a deployment stores rules


class FallbackError(InputError):
    """A rules file that cannot be used; the message names the file, line and key."""


@dataclass(frozen=True)
class Condition:
    feature: str
    op: str
    value: float

    def text(self) -> str:
        return f"{self.feature} {self.op} {self.value:g}"


@dataclass(frozen=True)
class Rule:
    name: str
    conditions: tuple[Condition, ...]
    answer: str


@dataclass(frozen=True)
class FallbackRules:
    """Parsed, checked rules (not yet bound to a model's features)."""

    rules: tuple[Rule, ...]
    default: str
    source: str = "<text>"

    @property
    def digest(self) -> str:
        body = json.dumps(self.to_dict(include_source=False), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(body.encode()).hexdigest()

    @property
    def answers(self) -> list[str]:
        """Every answer these rules can give (rules first, then the default)."""
        seen: list[str] = []
        for a in [*(r.answer for r in self.rules), self.default]:
            if a not in seen:
                seen.append(a)
        return seen

    # -- loading ----------------------------------------------------------------------------
    @classmethod
    def from_text(cls, text: str, *, where: str = "<text>") -> FallbackRules:
        try:
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            raw = yaml.safe_load(text)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else 1
            raise FallbackError(f"{where}:{line}: not valid YAML ({exc.problem}): fix the syntax") from None
        except yaml.YAMLError as exc:
            raise FallbackError(f"{where}:1: not valid YAML ({exc}): fix the syntax") from None
        lines = _lines(node) if node is not None else {}
        return cls.from_dict(raw, where=where, lines=lines)

    @classmethod
    def load(cls, path: str | Path) -> FallbackRules:
        p = Path(path)
        if not p.exists():
            raise FallbackError(MSG_PATH_MISSING.format(path=p))
        if p.is_dir():
            raise FallbackError(f"'{p}' is a folder: give the fallback rules YAML file")
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise FallbackError(f"fallback rules '{p}' cannot be read ({exc})") from None
        return cls.from_text(text, where=str(p))

    @classmethod
    def from_dict(
        cls, raw: Any, *, where: str = "<rules>", lines: dict[str, int] | None = None
    ) -> FallbackRules:
        lines = lines or {}

        def fail(key: str, message: str) -> FallbackError:
            line = lines.get(key)
            while line is None and "." in key:
                key = key.rsplit(".", 1)[0]
                line = lines.get(key)
            return FallbackError(f"{where}:{line or 1}: {message}")

        if not isinstance(raw, dict):
            raise fail("", "expected a mapping with 'default' and 'rules'")
        unknown = set(raw) - {"version", "default", "rules", "source", *STORED_KEYS}
        if unknown:
            key = sorted(map(str, unknown))[0]
            raise fail(key, f"{key}: unknown key: allowed keys are version, default, rules")
        if raw.get("version", 1) != 1:
            raise fail("version", f"version: expected 1, got {raw.get('version')!r}")
        default = raw.get("default")
        if not _is_answer(default):
            raise fail("default", f"default: expected the answer when no rule matches (text), got {default!r}")
        items = raw.get("rules") or []
        if not isinstance(items, list):
            raise fail("rules", "rules: expected a list of rules")
        if len(items) > MAX_RULES:
            raise fail("rules", f"rules: at most {MAX_RULES} rules, got {len(items)}")
        rules = []
        for i, item in enumerate(items):
            key = f"rules.{i}"
            if not isinstance(item, dict):
                raise fail(key, f"{key}: expected a rule with 'when' and 'answer'")
            extra = set(item) - {"name", "when", "answer"}
            if extra:
                raise fail(key, f"{key}: unknown key '{sorted(map(str, extra))[0]}': use name, when, answer")
            if not _is_answer(item.get("answer")):
                raise fail(f"{key}.answer", f"{key}.answer: expected an answer (text), got {item.get('answer')!r}")
            conds = _conditions(item.get("when"), key=f"{key}.when", fail=fail)
            rules.append(Rule(name=str(item.get("name") or f"rule-{i + 1}"), conditions=conds,
                              answer=str(item["answer"])))
        return cls(rules=tuple(rules), default=str(default), source=str(raw.get("source") or where))

    def to_dict(self, *, include_source: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": 1, "default": self.default,
            "rules": [
                {"name": r.name, "answer": r.answer,
                 "when": [{"feature": c.feature, "op": c.op, "value": c.value} for c in r.conditions]}
                for r in self.rules
            ],
        }
        if include_source:
            out["source"] = self.source
        return out

    # -- binding ----------------------------------------------------------------------------
    def bind(self, *, n_features: int, feature_names: Sequence[str] | None = None) -> BoundRules:
        """Resolve feature references against a model's inputs; unknown ones are errors."""
        names = {str(n): i for i, n in enumerate(feature_names or [])}
        compiled = []
        for rule in self.rules:
            idx, ops, vals = [], [], []
            for cond in rule.conditions:
                pos = _position(cond.feature, names, n_features)
                if pos is None:
                    hint = (f"features are {', '.join(list(names)[:8])}{', ...' if len(names) > 8 else ''}"
                            if names else f"use x0..x{n_features - 1} or a position 0..{n_features - 1}")
                    raise FallbackError(
                        f"{self.source}: rule '{rule.name}': feature '{cond.feature}' is not an "
                        f"input of the model ({hint})"
                    )
                idx.append(pos)
                ops.append(OPS[cond.op])
                vals.append(cond.value)
            compiled.append((np.asarray(idx, dtype=np.int64), ops, np.asarray(vals), rule))
        return BoundRules(rules=self, compiled=compiled, n_features=n_features)


@dataclass(frozen=True)
class BoundRules:
    """Rules bound to a model's flattened inputs; :meth:`answer` is vectorised over rows."""

    rules: FallbackRules
    compiled: list[tuple[np.ndarray, list[Callable[[Any, Any], Any]], np.ndarray, Rule]]
    n_features: int

    def answer(self, X: np.ndarray) -> tuple[list[str], list[str | None]]:
        """Answers for each row and the name of the rule that gave it (None: the default)."""
        flat = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
        if flat.shape[1] != self.n_features:
            raise InputError(
                f"fallback rules expect {self.n_features} features per row, got {flat.shape[1]}"
            )
        n = len(flat)
        chosen = np.full(n, -1, dtype=np.int64)
        for k, (idx, ops, vals, _rule) in enumerate(self.compiled):
            open_rows = chosen < 0
            if not open_rows.any():
                break
            mask = open_rows.copy()
            for j, op in enumerate(ops):
                mask &= op(flat[:, idx[j]], vals[j])
            chosen[mask] = k
        answers = [self.rules.default if c < 0 else self.compiled[c][3].answer for c in chosen]
        names = [None if c < 0 else self.compiled[c][3].name for c in chosen]
        return answers, names


def _is_answer(value: Any) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip() != ""


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        v = float(value)
    elif isinstance(value, str):
        try:
            v = float(value)
        except ValueError:
            return None
    else:
        return None
    return v if np.isfinite(v) else None


def _conditions(
    when: Any, *, key: str, fail: Callable[[str, str], FallbackError]
) -> tuple[Condition, ...]:
    if isinstance(when, str):
        parts = [p for p in re.split(r"\s+and\s+", when.strip()) if p]
        items: list[Any] = []
        for part in parts:
            m = _COND.match(part)
            if not m:
                raise fail(key, f"{key}: cannot read condition '{part}': write FEATURE OP NUMBER, e.g. 'x3 > 0.5'")
            items.append(m.groupdict())
    elif isinstance(when, list):
        items = when
    else:
        raise fail(key, f"{key}: expected conditions ('x3 > 0.5 and x4 <= 1' or a list), got {when!r}")
    if not items:
        raise fail(key, f"{key}: a rule needs at least one condition")
    out = []
    for j, item in enumerate(items):
        ckey = f"{key}.{j}" if isinstance(when, list) else key
        if not isinstance(item, dict) or set(item) - {"feature", "op", "value"}:
            raise fail(ckey, f"{ckey}: expected {{feature, op, value}}, got {item!r}")
        feature = item.get("feature")
        if not isinstance(feature, str | int) or isinstance(feature, bool) or str(feature) == "":
            raise fail(ckey, f"{ckey}: feature: expected a feature name or position, got {feature!r}")
        op = item.get("op")
        if op not in OPS:
            raise fail(ckey, f"{ckey}: op: expected one of {', '.join(OPS)}, got {op!r}")
        value = _number(item.get("value"))
        if value is None:
            raise fail(ckey, f"{ckey}: value: expected a finite number, got {item.get('value')!r}")
        out.append(Condition(feature=str(feature), op=str(op), value=value))
    return tuple(out)


def _position(feature: str, names: dict[str, int], n_features: int) -> int | None:
    if feature in names:
        return names[feature]
    m = _INDEXED.match(feature)
    if m:
        pos = int(m.group("a") or m.group("b"))
    elif feature.isdigit():
        pos = int(feature)
    else:
        return None
    return pos if 0 <= pos < n_features else None


def _lines(node: yaml.Node, prefix: str = "") -> dict[str, int]:
    out: dict[str, int] = {}
    if isinstance(node, yaml.MappingNode):
        for knode, vnode in node.value:
            key = f"{prefix}.{knode.value}" if prefix else str(knode.value)
            out[key] = knode.start_mark.line + 1
            out.update(_lines(vnode, key))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            key = f"{prefix}.{i}" if prefix else str(i)
            out[key] = item.start_mark.line + 1
            out.update(_lines(item, key))
    return out
