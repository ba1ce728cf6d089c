"""pt_helpers.device: the device choice (torch.accelerator, $PT_DEVICE, the "auto" profile), and
profile_settings: quick values, the full profile as one dict of overrides, the notebook's ``overrides``, and the
parameters the reader typed, which win always."""

from __future__ import annotations

import pytest
import torch

from pt_helpers import device as dev
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


# ---------------------------------------------------------------------------------------------------------------
# Device choice through torch.accelerator, and $PT_DEVICE. CI has only a CPU: torch.accelerator is monkeypatched
# to report each accelerator type, so the choice logic (not the accelerator) is what these tests check.
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def machine(monkeypatch):
    """Make torch report an accelerator of the given type (None: a CPU-only machine); $PT_DEVICE unset."""
    monkeypatch.delenv(dev.DEVICE_ENV_VAR, raising=False)

    def set_accelerator(device_type):
        found = None if device_type is None else torch.device(device_type)
        monkeypatch.setattr(torch.accelerator, "current_accelerator", lambda check_available=False: found)

    return set_accelerator


@pytest.mark.parametrize("device_type", ["cuda", "mps", "xpu"])
def test_the_accelerator_torch_reports_is_chosen(machine, device_type):
    machine(device_type)
    assert dev.get_device() == torch.device(device_type)


def test_a_machine_without_accelerator_gets_the_cpu(machine):
    machine(None)
    assert dev.get_device() == torch.device("cpu")


def test_the_real_machine_agrees_with_torch_accelerator():
    expected = torch.accelerator.current_accelerator(check_available=True) or torch.device("cpu")
    assert dev.get_device().type == expected.type


@pytest.mark.parametrize(
    ("forced", "device_type"), [("cpu", "mps"), ("CPU", "cuda"), ("mps", "mps"), ("cuda:1", "cuda")]
)
def test_pt_device_forces_a_device(machine, monkeypatch, forced, device_type):
    machine(device_type)
    monkeypatch.setenv(dev.DEVICE_ENV_VAR, forced)
    assert dev.get_device() == torch.device(forced.lower())


@pytest.mark.parametrize("bad", ["gpu", "metal", "cuda:x", "cpu:1", "mps:0:0"])
def test_a_bad_pt_device_names_the_variable_and_the_valid_values(machine, monkeypatch, bad):
    machine("cuda")
    monkeypatch.setenv(dev.DEVICE_ENV_VAR, bad)
    with pytest.raises(ValueError, match=r"\$PT_DEVICE = .* valid values: cpu, cuda, mps, xpu") as err:
        dev.get_device()
    assert repr(bad) in str(err.value)


def test_pt_device_naming_an_absent_accelerator_is_a_clear_error(machine, monkeypatch):
    machine("mps")
    monkeypatch.setenv(dev.DEVICE_ENV_VAR, "cuda")
    with pytest.raises(RuntimeError, match=r"\$PT_DEVICE asks for 'cuda', but torch sees mps.*use 'mps'"):
        dev.get_device()
    machine(None)
    with pytest.raises(RuntimeError, match=r"torch sees no accelerator.*use 'cpu'"):
        dev.get_device()


def test_prefer_beats_pt_device(machine, monkeypatch):
    machine("cuda")
    monkeypatch.setenv(dev.DEVICE_ENV_VAR, "cuda")
    assert dev.get_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="the device asked for = 'tpu'"):
        dev.get_device("tpu")


def test_torch_2_6_current_accelerator_without_check_available(monkeypatch):
    """torch 2.6's current_accelerator() takes no argument and raises when no accelerator exists."""

    def old_style():
        raise AssertionError("must not be called when is_available() is False")

    monkeypatch.setattr(torch.accelerator, "current_accelerator", old_style)
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: False)
    assert dev.accelerator() is None
    monkeypatch.setattr(torch.accelerator, "current_accelerator", lambda: torch.device("xpu"))
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: True)
    assert dev.accelerator() == torch.device("xpu")


@pytest.mark.parametrize(
    ("device_type", "profile"), [("cuda", "full"), ("mps", "quick"), ("xpu", "quick"), (None, "quick")]
)
def test_auto_profile_is_full_only_on_the_accelerators_that_run_it(machine, device_type, profile):
    machine(device_type)
    assert dev.resolve_profile("auto") == profile
    assert dev.resolve_profile("quick") == "quick" and dev.resolve_profile("full") == "full"


def test_auto_profile_follows_a_forced_device(machine, monkeypatch):
    machine("cuda")
    monkeypatch.setenv(dev.DEVICE_ENV_VAR, "cpu")
    assert dev.resolve_profile("auto") == "quick"
    assert dev.resolve_profile("auto", device="cuda") == "full"


def test_float64_falls_back_to_the_cpu_only_where_there_is_none():
    assert dev.float64_on("mps") == torch.device("cpu")
    assert dev.float64_on(torch.device("cuda", 1)) == torch.device("cuda", 1)
    assert dev.float64_on("cpu") == torch.device("cpu") and dev.float64_on(None) == torch.device("cpu")


@pytest.mark.parametrize("device_type", ["mps", "cpu"])
def test_describe_device_names_the_type(device_type):
    assert dev.describe_device(torch.device(device_type)).startswith(device_type + " (")


def test_a_retired_name_is_refused_with_its_new_name():
    """``steps`` / ``train_steps`` were the budget's names before issue 26: the error names ``max_steps``."""
    quick = dict(max_steps=10, n_test=5)
    for old in ("steps", "train_steps"):
        with pytest.raises(ParameterError, match=rf"\['{old}'\] \(renamed: {old} → max_steps\)"):
            profile_settings("quick", quick, overrides={old: 4})
    with pytest.raises(ParameterError) as err:  # a key of another notebook's settings: no hint to a missing name
        profile_settings("quick", dict(n_test=5), overrides={"steps": 4})
    assert "renamed" not in str(err.value)
