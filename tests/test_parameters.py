"""Tests of pt_helpers.parameters: a notebook's parameters typed by its own parameters cell. Each wrong value
given to a real notebook is a case of tests/test_bad_inputs.py; here the rules themselves."""

from __future__ import annotations

import pytest

from pt_helpers.errors import ParameterError
from pt_helpers.parameters import check_parameters, declared_parameters

CELL = """seed = 0
max_steps: int | None = None  # None: the profile's default
lr: float = 3e-2
model_name = "gpt2"
overrides = {}
stop = None
"""


def test_the_type_comes_from_the_annotation_else_from_the_default():
    declared = declared_parameters(CELL)
    assert list(declared) == ["seed", "max_steps", "lr", "model_name", "overrides", "stop"]
    kinds = {name: (p.type_name, p.optional) for name, p in declared.items()}
    assert kinds == {
        "seed": ("int", False),
        "max_steps": ("int", True),
        "lr": ("float", False),
        "model_name": ("str", False),
        "overrides": ("dict", False),
        "stop": ("None", False),  # None without an annotation declares no type
    }
    assert declared["max_steps"].describe() == "max_steps (int or None, default None)"


def test_injected_values_are_checked_against_the_parameters_cell():
    history = ["import x", CELL, "# Parameters\nmax_steps = 4\nlr = 1\nstop = 'anything'\n"]
    check_parameters(dict(max_steps=4, lr=1, stop="anything"), history)  # an int will do for a float
    history[-1] = "# Parameters\nmax_steps = 'abc'\n"
    with pytest.raises(ParameterError, match=r"parameter 'max_steps' .* declared int or None .* given 'abc'"):
        check_parameters(dict(max_steps="abc"), history)
    history[-1] = "# Parameters\nseed = True\n"
    with pytest.raises(ParameterError, match="a bool is not an int|declared int"):  # True is no seed
        check_parameters(dict(seed=True), history)
    check_parameters(dict(seed="abc"), ["import x", CELL])  # run interactively: nothing injected, nothing checked
