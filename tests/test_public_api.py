"""The curated public API is pinned."""

import riskloop


def test_all_is_sorted_and_importable():
    assert riskloop.__all__ == sorted(riskloop.__all__)
    for name in riskloop.__all__:
        assert hasattr(riskloop, name), name


def test_error_hierarchy():
    assert issubclass(riskloop.InputError, riskloop.UserError)
    assert issubclass(riskloop.UserError, riskloop.RiskloopError)
    assert riskloop.InputError.exit_code == 2
    assert riskloop.IntegrityError.exit_code == 1
