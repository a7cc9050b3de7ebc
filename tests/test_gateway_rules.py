"""Fallback rules: parsing, binding to a model's inputs, first-match answers (vectorised)."""

from __future__ import annotations

import operator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from riskloop.errors import InputError
from riskloop.monitor.fallback import FallbackRules

RULES = """version: 1
default: reject
rules:
  - name: rich
    when: "income > 50000 and age >= 25"
    answer: approve
  - name: young
    when:
      - {feature: age, op: "<", value: 25}
    answer: refer
  - name: third-column
    when: "x2 == 1"
    answer: approve
"""


def test_first_matching_rule_answers_else_the_default():
    rules = FallbackRules.from_text(RULES, where="rules.yaml")
    bound = rules.bind(n_features=3, feature_names=["income", "age", "flag"])
    X = np.array([[60_000, 30, 0], [60_000, 20, 0], [10_000, 40, 1], [10_000, 40, 0]], dtype=float)
    answers, names = bound.answer(X)
    assert answers == ["approve", "refer", "approve", "reject"]
    assert names == ["rich", "young", "third-column", None]
    assert rules.answers == ["approve", "refer", "reject"]


def test_features_by_position_and_images_flattened():
    rules = FallbackRules.from_text('version: 1\ndefault: "0"\nrules:\n  - when: "X[27] > 0.5"\n    answer: "8"\n')
    bound = rules.bind(n_features=64)
    X = np.zeros((2, 1, 8, 8), dtype=np.float32)
    X[1, 0, 3, 3] = 0.9  # flat position 27
    assert bound.answer(X)[0] == ["0", "8"]
    with pytest.raises(InputError, match="expect 64 features"):
        bound.answer(np.zeros((1, 10)))


def test_stored_form_round_trips_with_the_same_digest():
    rules = FallbackRules.from_text(RULES)
    stored = {**rules.to_dict(), "digest": rules.digest, "answers": rules.answers}
    again = FallbackRules.from_dict(stored)
    assert again.digest == rules.digest and again.rules == rules.rules
    reordered = FallbackRules.from_text(RULES.replace("income > 50000 and age >= 25",
                                                      "income > 50000.0 and age >= 25.0"))
    assert reordered.digest == rules.digest  # the same meaning, the same digest


@pytest.mark.parametrize("text, words", [
    ("version: 2\ndefault: a\n", "version: expected 1"),
    ("default: a\nrules: {a: 1}\n", "expected a list of rules"),
    ("default: a\nrules:\n  - when: 'x1 ~ 2'\n    answer: b\n", "cannot read condition"),
    ("default: a\nrules:\n  - when: 'x1 > 2'\n", "answer"),
    ("default: a\nrules:\n  - when: []\n    answer: b\n", "at least one condition"),
    ("default: a\nrules:\n  - when: [{feature: x1, op: '=<', value: 1}]\n    answer: b\n", "op: expected one of"),
    ("default: true\n", "default"),
])
def test_bad_rules_name_the_line(text, words):
    with pytest.raises(InputError, match=words) as info:
        FallbackRules.from_text(text, where="f.yaml")
    assert str(info.value).startswith("f.yaml:")


def test_unknown_features_are_refused_when_bound():
    rules = FallbackRules.from_text(RULES)
    with pytest.raises(InputError, match="'income' is not an input"):
        rules.bind(n_features=3)
    with pytest.raises(InputError, match="'x9' is not an input"):
        FallbackRules.from_text("default: a\nrules:\n  - when: 'x9 > 1'\n    answer: b\n").bind(n_features=3)


OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
       "==": operator.eq, "!=": operator.ne}
condition = st.tuples(st.integers(0, 3), st.sampled_from(sorted(OPS)), st.integers(-2, 2))


@settings(max_examples=60, deadline=None)
@given(rules=st.lists(st.tuples(st.lists(condition, min_size=1, max_size=3), st.sampled_from("abc")),
                      max_size=5),
       X=st.lists(st.lists(st.integers(-2, 2), min_size=4, max_size=4), min_size=1, max_size=20))
def test_vectorised_answers_equal_a_row_by_row_first_match(rules, X):
    spec = {"version": 1, "default": "z", "rules": [
        {"name": f"r{k}", "answer": ans,
         "when": [{"feature": f"x{f}", "op": op, "value": v} for f, op, v in conds]}
        for k, (conds, ans) in enumerate(rules)]}
    bound = FallbackRules.from_dict(spec).bind(n_features=4)
    got, _ = bound.answer(np.asarray(X, dtype=float))
    for row, answer in zip(X, got, strict=True):
        expected = next((ans for conds, ans in rules
                         if all(OPS[op](row[f], v) for f, op, v in conds)), "z")
        assert answer == expected
