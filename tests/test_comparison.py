"""The chapter-06 comparison: the lr is chosen on the selection split only, rows are paired, one seed is n/a."""

import copy

import numpy as np
import pytest
import torch

from pt_helpers import comparison
from pt_helpers.errors import TrainConfigError

TEXTS = ["a fine film", "dull and slow", "moving and funny", "a lifeless mess", "great acting", "boring plot"]
LABELS = [1, 0, 1, 0, 1, 0]
SENTENCES = ("This is a negative review.", "This is a positive review.")


def _fake_train(select_scores, eval_calls):
    """A stand-in for train_method: selection accuracy from ``select_scores[lr]``; counts evaluation calls."""

    def train_method(method, encoder, tokenizer, label_sentences, train_data, select_data, *, lr, seed, **kw):
        def predict(texts):
            eval_calls.append((lr, seed, len(texts)))
            return np.array([1] * len(texts))

        row = dict(method=method, variant="v", seed=seed, lr=float(lr), n_trainable=10, best_step=1, steps_run=2)
        row |= dict(seconds=0.0, peak_mib=0.0, select_accuracy=select_scores[lr], loss_curve=[])
        return row, predict

    return train_method


def test_run_method_chooses_the_lr_on_the_selection_split_and_evaluates_only_the_chosen_runs(monkeypatch):
    calls = []
    monkeypatch.setattr(comparison, "train_method", _fake_train({1e-3: 0.6, 1e-2: 0.8, 1e-1: 0.7}, calls))
    evaluation = (["x"] * 5, [1, 1, 0, 1, 0])
    rows = comparison.run_method(
        "LoRA", None, None, SENTENCES, (TEXTS, LABELS), (TEXTS, LABELS), evaluation, seeds=[3, 4, 5],
        sweep=[1e-3, 1e-2, 1e-1],
    )  # fmt: skip
    assert [r["seed"] for r in rows] == [3, 4, 5]
    assert all(r["lr"] == 1e-2 for r in rows)  # the best selection accuracy, reused for every seed
    assert rows[0]["sweep"] == {1e-3: 0.6, 1e-2: 0.8, 1e-1: 0.7}
    assert calls == [(1e-2, 3, 5), (1e-2, 4, 5), (1e-2, 5, 5)]  # evaluation data: chosen runs only
    assert rows[0]["n"] == 5 and rows[0]["accuracy"] == pytest.approx(0.6)
    assert rows[0]["correct"].tolist() == [1, 1, 0, 1, 0]


def test_run_method_ties_keep_the_first_value(monkeypatch):
    calls = []
    monkeypatch.setattr(comparison, "train_method", _fake_train({0.1: 0.5, 1.0: 0.5}, calls))
    rows = comparison.run_method("linear probe", None, None, SENTENCES, (TEXTS, LABELS), (TEXTS, LABELS),
                                 (["x"], [1]), seeds=[0], sweep=[0.1, 1.0])  # fmt: skip
    assert rows[0]["lr"] == 0.1


def _row(method, seed, correct, lr=1e-3, steps_run=100):
    correct = np.asarray(correct, dtype=np.int8)
    return dict(method=method, variant=f"{method} variant", seed=seed, lr=lr, sweep={lr: 0.5}, n_trainable=5,
                best_step=2, steps_run=steps_run, seconds=1.0, peak_mib=2.0, accuracy=float(correct.mean()),
                n=len(correct), correct=correct)  # fmt: skip


def test_table_one_seed_is_not_applicable_and_names_the_variant():
    rows = [_row("full fine-tuning", 0, [1, 1, 1, 0] * 10), _row("LoRA", 0, [1, 0, 1, 0] * 10)]
    table = comparison.comparison_table(rows, 100)
    assert "n/a (1 seed)" in table.loc["LoRA", "mean over seeds"]
    assert "n/a (1 seed)" in table.loc["LoRA", "Δ over seeds"]
    assert table.loc["LoRA", "variant"] == "LoRA variant" and table.loc["LoRA", "n"] == 40
    assert table.loc["LoRA", "compared with"] == "full fine-tuning"
    assert "Δ = -0.250" in table.loc["LoRA", "paired test (first seed)"]  # 10 discordant examples, all for FT
    assert "0 vs 10 discordant" in table.loc["LoRA", "paired test (first seed)"]
    assert table.loc["full fine-tuning", "compared with"] == "—"  # no zero-shot row here


def test_table_draws_no_test_for_a_row_trained_at_a_smoke_budget():
    """A handful of steps ranks methods by how fast they move: the row says so instead of printing a p-value."""
    rows = [_row("full fine-tuning", 0, [1, 1, 1, 0] * 10), _row("LoRA", 0, [1, 0, 1, 0] * 10, steps_run=6)]
    cell = comparison.comparison_table(rows, 100).loc["LoRA", "paired test (first seed)"]
    assert cell.startswith("protocol check") and "p =" not in cell, cell


def test_table_labels_a_degenerate_pair_and_summarises_seeds():
    same = [1, 0] * 10
    rows = [_row("deep prompt", s, same) for s in (0, 1, 2)] + [_row("soft prompt", s, same) for s in (0, 1, 2)]
    table = comparison.comparison_table(rows, 100)
    assert table.loc["soft prompt", "paired test (first seed)"].startswith("degenerate")
    assert "over 3 seeds" in table.loc["soft prompt", "mean over seeds"]


def test_bad_inputs_are_named():
    with pytest.raises(TrainConfigError, match="unknown method"):
        comparison.train_method("prompt magic", None, None, SENTENCES, (TEXTS, LABELS), (TEXTS, LABELS), lr=1e-3)
    with pytest.raises(TrainConfigError, match="positive"):
        comparison.train_method("LoRA", None, None, SENTENCES, (TEXTS, LABELS), (TEXTS, LABELS), lr=0.0)
    with pytest.raises(TrainConfigError, match="seeds"):
        comparison.run_method("LoRA", None, None, SENTENCES, (TEXTS, LABELS), (TEXTS, LABELS), (TEXTS, LABELS),
                              seeds=[])  # fmt: skip


@pytest.mark.parametrize("method", comparison.COMPARED_METHODS)
def test_every_method_trains_what_it_says_on_a_copy(random_bert, method):
    """Mechanics on a random stand-in: the trained count of each method, and the caller's encoder untouched."""
    model, tok = random_bert
    before = {k: v.clone() for k, v in model.state_dict().items()}
    row, predict = comparison.train_method(
        method, model, tok, SENTENCES, (TEXTS, LABELS), (TEXTS[:2], LABELS[:2]), lr=1e-2 if method != "linear probe"
        else 1.0, max_steps=2, batch_size=3, n_virtual_tokens=4, progress=False,
    )  # fmt: skip
    d, n_layers = model.config.hidden_size, model.config.num_hidden_layers
    expected = {
        "deep prompt": 2 * n_layers * d * 4,
        "soft prompt": 4 * d,
        "soft prompt + pooled states": 4 * d,
        "linear probe": d + 1,  # binary logistic regression: one weight vector and a bias
        "full fine-tuning": sum(p.numel() for p in model.parameters()),
    }
    if method in expected:
        assert row["n_trainable"] == expected[method]
    else:  # the MLP and LoRA: more than nothing, less than the model
        assert 0 < row["n_trainable"] < sum(p.numel() for p in model.parameters())
    assert ("pool_prompt=True" in row["variant"]) == (method == "soft prompt + pooled states")
    assert predict(TEXTS).shape == (len(TEXTS),)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # trained a copy


def test_merge_lora_folds_the_update_into_plain_weights(random_bert):
    from peft import LoraConfig, inject_adapter_in_model

    model, tok = random_bert
    lora = inject_adapter_in_model(
        LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"]), __import__("copy").deepcopy(model)
    )
    torch.manual_seed(0)
    for name, p in lora.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)  # B starts at 0: make the update non-zero
    merged = comparison.merge_lora(lora)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    enc = tok(TEXTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        a, b, base = (m(**enc).last_hidden_state for m in (lora, merged, model))
    scale = a.abs().max().item()  # float32 round-off of a sum grows with the magnitudes summed
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5 * scale)
    assert (a - base).abs().max() > 100 * 1e-5 * scale  # the update is real, so the check can fail


def test_a_single_run_row_pairs_with_every_seed():
    rows = [_row("zero-shot", 0, [1, 0, 0, 0] * 5)] + [_row("full fine-tuning", s, [1, 1, 0, 0] * 5) for s in (0, 1, 2)]
    table = comparison.comparison_table(rows, 100)
    assert table.loc["full fine-tuning", "compared with"] == "zero-shot"
    assert "over 3 seeds" in table.loc["full fine-tuning", "Δ over seeds"]
    assert table.loc["full fine-tuning", "Δ over seeds"].startswith("0.250")


def test_run_dir_keeps_finished_runs_and_a_rerun_reads_them_back(monkeypatch, tmp_path):
    calls = []  # one evaluation per trained run: the count of runs trained
    monkeypatch.setattr(comparison, "train_method", _fake_train({1e-3: 0.6, 1e-2: 0.8}, calls))
    evaluation = (["x"] * 5, [1, 1, 0, 1, 0])
    args = ("LoRA", None, None, SENTENCES, (TEXTS, LABELS), (TEXTS, LABELS), evaluation)
    first = comparison.run_method(*args, seeds=[3, 4], sweep=[1e-3, 1e-2], run_dir=tmp_path, max_steps=7)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LoRA-lr0.001-seed3.json", "LoRA-lr0.01-seed3.json",
                                                          "LoRA-lr0.01-seed4.json"]  # fmt: skip
    assert len(calls) == 3 and [r["seed"] for r in first] == [3, 4] and all(r["lr"] == 1e-2 for r in first)
    again = comparison.run_method(*args, seeds=[3, 4], sweep=[1e-3, 1e-2], run_dir=tmp_path, max_steps=7)
    assert len(calls) == 3  # nothing trained again
    for a, b in zip(first, again):
        assert not a["resumed"] and b["resumed"]
        assert a["correct"].tolist() == b["correct"].tolist() and b["correct"].dtype == np.int8
        assert {k: v for k, v in a.items() if k not in ("correct", "resumed")} == {
            k: v for k, v in b.items() if k not in ("correct", "resumed")
        }
    (tmp_path / "LoRA-lr0.001-seed3.json").unlink()  # as if stopped before that run finished
    comparison.run_method(*args, seeds=[3, 4], sweep=[1e-3, 1e-2], run_dir=tmp_path, max_steps=7)
    assert len(calls) == 4  # only the missing run
    with pytest.raises(TrainConfigError, match=r"other settings \(differs in \['train_kwargs'\]\)"):
        comparison.run_method(*args, seeds=[3, 4], sweep=[1e-3, 1e-2], run_dir=tmp_path, max_steps=8)
    other_eval = (["x"] * 5, [0, 1, 0, 1, 0])
    with pytest.raises(TrainConfigError, match="data_sha256"):
        comparison.run_method(*args[:-1], other_eval, seeds=[3], sweep=[1e-2], run_dir=tmp_path, max_steps=7)
    with pytest.raises(TrainConfigError, match="keep_classifier"):
        comparison.run_method(*args, seeds=[3], sweep=[1e-2], run_dir=tmp_path, keep_classifier=True)


def test_run_dir_round_trips_a_real_run(random_bert, tmp_path):
    """A real row (loss curve, memory, numpy outcomes) survives the JSON file and is read back as it was."""
    model, tok = random_bert
    kw = dict(seeds=[0], sweep=[1e-2], max_steps=2, batch_size=3, n_virtual_tokens=4, progress=False, run_dir=tmp_path)
    data = (SENTENCES, (TEXTS, LABELS), (TEXTS[:2], LABELS[:2]), (TEXTS, LABELS))
    (a,) = comparison.run_method("deep prompt", model, tok, *data, **kw)
    (b,) = comparison.run_method("deep prompt", model, tok, *data, **kw)
    assert b["resumed"] and b["correct"].tolist() == a["correct"].tolist() and b["loss_curve"] == a["loss_curve"]
    assert b["accuracy"] == a["accuracy"] and b["select_accuracy"] == a["select_accuracy"]
    changed = copy.deepcopy(model)
    with torch.no_grad():  # above the embeddings only, as a fine-tuned encoder would differ
        changed.encoder.layer[-1].output.dense.weight[0, 0] += 1.0
    with pytest.raises(TrainConfigError, match=r"differs in \['model'\]"):
        comparison.run_method("deep prompt", changed, tok, *data, **kw)


def test_the_weights_hash_sees_every_weight_and_every_dtype(random_bert):
    from pt_helpers.checkpoint import model_fingerprint, weights_sha256

    model, _ = random_bert
    same, changed = copy.deepcopy(model), copy.deepcopy(model)
    with torch.no_grad():
        changed.encoder.layer[-1].output.dense.weight[0, 0] += 1.0
    assert weights_sha256(same) == weights_sha256(model)
    assert weights_sha256(changed) != weights_sha256(model)
    assert model_fingerprint(changed) == model_fingerprint(model)  # why RunStore does not use the short one
    assert weights_sha256(copy.deepcopy(model).to(torch.bfloat16)) != weights_sha256(model)


def test_a_run_stored_before_the_renames_is_read_back_under_the_new_names(monkeypatch, tmp_path):
    """A record whose options said ``steps`` (the budget) and whose row said ``trained_params`` / ``steps`` is
    read back as a run of ``max_steps`` with ``n_trainable`` / ``steps_run``: nothing is trained again."""
    import json

    calls = []
    monkeypatch.setattr(comparison, "train_method", _fake_train({1e-2: 0.8}, calls))
    args = ("LoRA", None, None, SENTENCES, (TEXTS, LABELS), (TEXTS, LABELS), (["x"] * 5, [1, 1, 0, 1, 0]))
    (first,) = comparison.run_method(*args, seeds=[3], sweep=[1e-2], run_dir=tmp_path, max_steps=7)
    path = tmp_path / "LoRA-lr0.01-seed3.json"
    record = json.loads(path.read_text())
    kwargs, row = record["settings"]["train_kwargs"], record["row"]
    kwargs["steps"] = kwargs.pop("max_steps")  # the record as the earlier version wrote it
    row["trained_params"], row["steps"] = row.pop("n_trainable"), row.pop("steps_run")
    path.write_text(json.dumps(record))
    (again,) = comparison.run_method(*args, seeds=[3], sweep=[1e-2], run_dir=tmp_path, max_steps=7)
    assert len(calls) == 1 and again["resumed"]
    assert again["n_trainable"] == first["n_trainable"] and again["steps_run"] == first["steps_run"]
    assert "trained_params" not in again and "steps" not in again


def test_a_recorded_comparison_is_read_back_without_training(monkeypatch, tmp_path):
    """``recorded_rows`` chooses the lr as run_method does and lists every method that is not fully recorded."""
    calls = []
    monkeypatch.setattr(comparison, "train_method", _fake_train({3e-3: 0.9, 1e-2: 0.7, 3e-2: 0.8}, calls))
    budget = comparison.RECORDED_BUDGET | dict(max_steps=7, n_seeds=2, sweep_size=2)
    evaluation = (["x"] * 5, [1, 1, 0, 1, 0])
    data = (None, None, SENTENCES, (TEXTS, LABELS), (TEXTS, LABELS), evaluation)
    options = comparison.recorded_options(budget, "P-tuning", "init")
    assert options["sweep"] == comparison.DEFAULT_SWEEP["P-tuning"][-2:] and options["seeds"] == [0, 1]
    trained = comparison.run_method("P-tuning", *data, run_dir=tmp_path, **options)
    rows, missing = comparison.recorded_rows(tmp_path, ("P-tuning", "LoRA"), budget)
    assert [(r["seed"], r["lr"]) for r in rows] == [(r["seed"], r["lr"]) for r in trained] == [(0, 3e-2), (1, 3e-2)]
    assert all(r["correct"].tolist() == [1, 1, 0, 1, 0] for r in rows) and rows[0]["sweep"] == {1e-2: 0.7, 3e-2: 0.8}
    assert missing["zero-shot"] == ["zero_shot.json"] and "P-tuning" not in missing
    assert missing["LoRA"] == ["LoRA-lr0.001-seed0.json", "LoRA-lr0.003-seed0.json", "LoRA-lr<chosen>-seed1.json"]
    (tmp_path / "P_tuning-lr0.03-seed1.json").unlink()  # the sweep is done, a seed at the chosen lr is not
    rows, missing = comparison.recorded_rows(tmp_path, ("P-tuning",), budget)
    assert missing["P-tuning"] == ["P_tuning-lr0.03-seed1.json"] and [r["seed"] for r in rows] == [0]
    with pytest.raises(TrainConfigError, match="max_steps=7, not the budget's 100"):  # another budget's files
        comparison.recorded_rows(tmp_path, ("P-tuning",), comparison.RECORDED_BUDGET | dict(n_seeds=1, sweep_size=2))
    header, table, _ = comparison.recorded_table(tmp_path, 10**6, ("P-tuning",), budget | dict(n_seeds=1))
    assert (
        "recorded profile: 7 steps × batch 32" in header
        and "not run yet (runs missing of the budget's): zero-shot (1 of 1)" in header
    )
    assert table.loc["P-tuning", "n"] == 5 and len(calls) == 3
