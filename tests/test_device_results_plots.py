import sys

import numpy as np
import pytest
import torch

from pt_helpers.device import get_device, resolve_profile, seed_everything
from pt_helpers.plots import heatmap
from pt_helpers.results import load_results, make_row, save_rows


def test_same_seed_same_numbers():
    seed_everything(7)
    a = (torch.randn(3), np.random.rand(3))
    seed_everything(7)
    b = (torch.randn(3), np.random.rand(3))
    assert torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_profile_and_device():
    expected = "full" if torch.cuda.is_available() else "quick"
    assert resolve_profile("auto") == expected and resolve_profile("full") == "full"
    with pytest.raises(ValueError, match="profile must be one of"):
        resolve_profile("fast")
    assert get_device("cpu").type == "cpu"


def test_results_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("PT_RESULTS_DIR", str(tmp_path))
    assert load_results().empty
    save_rows("03", [make_row("03", "zero-shot", "sst2", "gpt2", False, "accuracy", 0.5)])
    save_rows("05", [make_row("05", "soft prompt", "sst2", "minilm", True, "accuracy", 0.8, 0.01, 3, 7680)])
    df = load_results()
    assert list(df["chapter"]) == ["03", "05"]
    assert list(load_results(pretrained_only=True)["method"]) == ["soft prompt"]
    with pytest.raises(ValueError, match="make_row"):
        save_rows("06", [{"method": "x"}])


def test_heatmap_checks_shape():
    ax = heatmap(np.ones((2, 3)), ["a", "b", "c"], ["x", "y"])
    assert ax.get_title() == ""
    with pytest.raises(ValueError, match="does not match"):
        heatmap(np.ones((2, 3)), ["a", "b"], ["x", "y"])


def test_cost_growth_figure_from_a_record_and_a_message_without_one(tmp_path, capsys):
    import json

    import matplotlib

    matplotlib.use("Agg")
    from pt_helpers.plots import show_cost_growth

    assert show_cost_growth(tmp_path / "absent.json") is None
    assert "run `make bench`" in capsys.readouterr().out
    rows = [
        dict(n=n, wall_s={"ours": 0.1 * n, "peft": 0.3 * n}, positions={"ours": n + 16 * 30, "peft": 16 * (n + 30)})
        for n in (1, 20, 100)
    ]
    rec = dict(date="2026-01-01 00:00 UTC", torch_threads=1, sweeps={"n_virtual": rows, "batch": []})
    path = tmp_path / "soft_prompt_growth.json"
    path.write_text(json.dumps([rec]))
    fig = show_cost_growth(path)
    assert len(fig.axes) == 2  # the one non-empty sweep: time, and ratio vs its limit
    ratio_lines = fig.axes[1].get_lines()
    measured, limit = ratio_lines[0].get_ydata(), ratio_lines[1].get_ydata()
    np.testing.assert_allclose(measured, [3.0, 3.0, 3.0])  # 0.3 n / 0.1 n
    np.testing.assert_allclose(limit, [16 * 31 / 481, 16 * 50 / 500, 16 * 130 / 580])
    assert show_cost_growth(path, threads=2) is None  # no record at that thread setting


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim and /proc are Linux (glibc) facilities")
def test_release_memory_hands_freed_activations_back():
    """Freed activations stay in glibc's pool (the process stays large) until release_memory trims it."""
    from pt_helpers.device import release_memory, resident_mib

    release_memory()
    torch.manual_seed(0)
    net = torch.nn.Sequential(*[torch.nn.Linear(512, 512) for _ in range(8)])
    for _ in range(3):  # forward + backward: dozens of 8 MiB activations, freed after each backward
        net(torch.randn(4096, 512, requires_grad=True)).square().sum().backward()
    before = resident_mib()
    after = release_memory()
    assert after is not None and after <= before - 40, f"resident {before} MiB → {after} MiB"


def test_a_rows_file_written_with_the_old_column_name_is_read_under_the_new_one(tmp_path, monkeypatch):
    """``trained_params`` was the column's name before issue 26: such a file still loads, as ``n_trainable``."""
    import json

    monkeypatch.setenv("PT_RESULTS_DIR", str(tmp_path))
    old = make_row("06", "deep prompt", "sst2", "minilm", True, "accuracy", 0.8, n_trainable=92160)
    old["trained_params"] = old.pop("n_trainable")  # the row as the earlier version wrote it
    (tmp_path / "06.json").write_text(json.dumps([old]))
    save_rows("05", [make_row("05", "soft prompt", "sst2", "minilm", True, "accuracy", 0.8, n_trainable=7680)])
    df = load_results()
    assert "trained_params" not in df.columns
    assert dict(zip(df["chapter"], df["n_trainable"])) == {"05": 7680, "06": 92160}
