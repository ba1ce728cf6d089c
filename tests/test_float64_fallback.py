"""Float64 arithmetic falls back to the CPU on a device without 64-bit floats (Apple's MPS), explicitly.

CI has no MPS device, so the choice is tested with the ``meta`` device standing in for one: a meta tensor can
hold float64 (shapes only) but cannot be copied to the CPU. With ``meta`` listed as a device without float64,
``icl.as_float64`` must try to move the data to the CPU (and so fail here); with it not listed, the float64
tensor is made on the device itself. On a CPU tensor the values are exactly the float64 computation.
"""

from __future__ import annotations

import pytest
import torch

from pt_helpers import device as dev
from pt_helpers import icl


def test_float64_stays_on_a_device_that_has_it():
    x = torch.empty(3, 2, device="meta")
    out = icl.as_float64(x)
    assert out.device.type == "meta" and out.dtype == torch.float64
    assert icl.label_probs(x).device.type == "meta"


def test_float64_moves_to_the_cpu_on_a_device_without_it(monkeypatch):
    monkeypatch.setattr(dev, "NO_FLOAT64_DEVICES", ("mps", "meta"))
    assert dev.float64_on("meta") == torch.device("cpu")
    x = torch.empty(3, 2, device="meta")
    for fn in (icl.as_float64, icl.label_probs, icl.content_free_distribution):
        with pytest.raises(NotImplementedError, match="meta"):  # it tried to copy the data to the CPU
            fn(x)


def test_the_cpu_path_is_the_plain_float64_computation():
    lp = torch.tensor([[-1.0, -2.0], [-0.5, -3.0]])
    torch.testing.assert_close(icl.label_probs(lp), torch.softmax(lp.double(), -1), rtol=0, atol=0)
    assert icl.label_probs([[0.0, 0.0]]).dtype == torch.float64  # a list works as before
    p_cf = icl.content_free_distribution(lp)
    expected = torch.softmax(torch.logsumexp(lp.double(), 0), -1)  # mean of probabilities, renormalised
    torch.testing.assert_close(p_cf, expected, rtol=1e-12, atol=0)  # float64 rounding only
    assert p_cf.dtype == torch.float64 and p_cf.device.type == "cpu"
