"""pt_helpers.device.profile_settings: quick values, the full profile as one dict of overrides, the notebook's
``overrides``, and the parameters the reader typed, which win always."""

from __future__ import annotations

import pytest

from pt_helpers.device import profile_settings
from pt_helpers.errors import ParameterError

QUICK = dict(n_test=48, n_demo_sets=5, n_pool=400)
FULL = dict(n_test=300, n_pool=None)


def test_quick_profile_is_the_quick_values():
    assert profile_settings("quick", QUICK, FULL) == QUICK


def test_full_profile_overrides_only_what_it_names():
    assert profile_settings("full", QUICK, FULL) == dict(n_test=300, n_demo_sets=5, n_pool=None)


def test_overrides_beat_the_profile():
    got = profile_settings("full", QUICK, FULL, overrides={"n_test": 7, "n_pool": 3})
    assert got == dict(n_test=7, n_demo_sets=5, n_pool=3)


def test_a_typed_value_beats_full_profile_and_overrides():
    # the reader's `-p n_test 50` (smaller than full's 300) stays 50; None means "not typed"
    got = profile_settings("full", QUICK, FULL, overrides={"n_test": 7}, given=dict(n_test=50, n_demo_sets=None))
    assert got == dict(n_test=50, n_demo_sets=5, n_pool=None)


def test_inputs_are_not_changed():
    quick = dict(QUICK)
    profile_settings("full", quick, FULL, given=dict(n_test=1))["n_demo_sets"] = 99
    assert quick == QUICK


@pytest.mark.parametrize(
    ("layer", "where"), [("overrides", "overrides"), ("given", "the given parameters"), ("full", "the full profile")]
)
def test_unknown_keys_are_named_with_the_known_ones(layer, where):
    kwargs = dict(full=FULL) | {layer: {"n_tset": 5}}
    with pytest.raises(ParameterError, match=rf"{where}: unknown setting\(s\) \['n_tset'\]") as err:
        profile_settings("quick", QUICK, **kwargs)
    assert "['n_demo_sets', 'n_pool', 'n_test']" in str(err.value)


def test_bad_profile_is_refused():
    with pytest.raises(ValueError, match="profile must be one of"):
        profile_settings("fast", QUICK)


def test_a_retired_name_is_refused_with_its_new_name():
    """``steps`` / ``train_steps`` were the budget's names before issue 26: the error names ``max_steps``."""
    quick = dict(max_steps=10, n_test=5)
    for old in ("steps", "train_steps"):
        with pytest.raises(ParameterError, match=rf"\['{old}'\] \(renamed: {old} → max_steps\)"):
            profile_settings("quick", quick, overrides={old: 4})
    with pytest.raises(ParameterError) as err:  # a key of another notebook's settings: no hint to a missing name
        profile_settings("quick", dict(n_test=5), overrides={"steps": 4})
    assert "renamed" not in str(err.value)
