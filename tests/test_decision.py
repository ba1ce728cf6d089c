"""The decision table of chapter 10 (pt_helpers.decision) on a small random Llama chat stand-in: mechanics only
(random weights rank nothing) — every row present, prompt methods leave the base bit-identical, LoRA does not,
the costs are the tensors' own sizes and full fine-tuning says why it was not run."""

import copy

import numpy as np
import pytest

from pt_helpers import chat, decision, lora
from pt_helpers.checkpoint import weights_sha256
from pt_helpers.data import task_splits
from pt_helpers.errors import CourseError
from pt_helpers.models import random_model


@pytest.fixture(scope="module")
def table():
    loaded = random_model("HuggingFaceTB/SmolLM2-135M-Instruct", seed=0)
    chat.add_chat_template(loaded, seed=0)
    model, tok = loaded
    splits = task_splits("sst2", select_size=8, train_size=16, eval_size=12, seed=0)
    other_x, other_y = task_splits("agnews", select_size=1, train_size=1, eval_size=10, seed=0).texts_labels("eval")
    budget = decision.Budget(max_steps=2, batch_size=4, eval_every=1, n_virtual_tokens=2, lora_rank=2, k_shot=2,
                             max_length=96)  # fmt: skip
    before = weights_sha256(model)
    runs = decision.decision_runs(
        model, tok, splits, budget=budget,
        forgetting_eval=lambda m: decision.chat_outcomes(m, tok, "agnews", other_x, other_y),
    )  # fmt: skip
    return model, before, budget, runs


def test_every_row_and_column(table):
    model, before, budget, runs = table
    names = [r.name for r in runs]
    assert names == ["zero-shot", "calibrated k-shot ICL", "soft prompt", "deep prompt", "P-tuning", "LoRA",
                     "full fine-tuning"]  # fmt: skip
    df = decision.decision_table(runs)
    assert list(df["method"]) == names
    for col in ("accuracy", "vs zero-shot", "vs nearest rival", "n_trainable", "bytes per task", "s / step",
                "serves many tasks", "other task after training"):  # fmt: skip
        assert col in df.columns
    assert all(r.correct.size == 12 for r in runs[:-1])
    assert "protocol check" in df.set_index("method").loc["soft prompt", "vs zero-shot"]  # 2 steps rank nothing
    assert weights_sha256(model) == before  # nothing trained the shared base (LoRA trains a copy)


def test_costs_are_the_tensors_sizes(table):
    model, _, budget, runs = table
    by = {r.name: r for r in runs}
    d = model.get_input_embeddings().weight.shape[1]
    assert by["soft prompt"].bytes_per_task == budget.n_virtual_tokens * d * 4 == by["soft prompt"].n_trainable * 4
    assert by["P-tuning"].bytes_per_task == budget.n_virtual_tokens * d * 4 < by["P-tuning"].n_trainable * 4
    assert by["LoRA"].n_trainable == lora.lora_parameter_count(model, budget.lora_rank)
    assert by["LoRA"].bytes_per_task == 4 * by["LoRA"].n_trainable
    assert by["soft prompt"].steps_run == budget.max_steps and by["soft prompt"].seconds_per_step > 0
    assert by["zero-shot"].n_trainable == 0 and np.isnan(by["zero-shot"].seconds_per_step)


def test_forgetting_column(table):
    _, _, _, runs = table
    by = {r.name: r for r in runs}
    for name in decision.PROMPT_METHODS:
        assert by[name].base_unchanged is True
        assert np.array_equal(by[name].other_correct, by["zero-shot"].other_correct)
    assert by["LoRA"].base_unchanged is False and by["LoRA"].other_correct.size == 10
    full = by["full fine-tuning"]
    n_parameters = sum(p.numel() for p in table[0].parameters())
    assert full.correct.size == 0 and "GiB" in full.note and full.n_trainable == n_parameters


def test_nearest_rival_is_the_closest_accuracy():
    def run(name, k):
        return decision.MethodRun(name, "", np.array([1] * k + [0] * (10 - k), np.int8))

    runs = [run("zero-shot", 5), run("a", 9), run("b", 6), run("c", 2)]
    assert decision.nearest_rival(runs, "a") == "b"
    assert decision.nearest_rival(runs, "c") == "b"  # zero-shot is its own column, never the rival


def test_lora_trains_a_copy_only():
    loaded = random_model("HuggingFaceTB/SmolLM2-135M-Instruct", seed=0)
    chat.add_chat_template(loaded, seed=0)
    model = copy.deepcopy(loaded.model)
    before = weights_sha256(model)
    splits = task_splits("sst2", select_size=4, train_size=8, eval_size=4, seed=0)
    budget = decision.Budget(max_steps=1, batch_size=4, eval_every=1, lora_rank=2, max_length=64)
    clf, result = decision.train_lora(model, loaded.tokenizer, "sst2", splits.texts_labels("train"),
                                      splits.texts_labels("select"), budget)  # fmt: skip
    assert weights_sha256(model) == before and result.n_trainable == lora.lora_parameter_count(model, 2)
    assert decision.full_finetuning_bytes(10) == 160


def test_findings_are_plain_json(table):
    import json

    _, _, _, runs = table
    found = json.loads(json.dumps(decision.findings(runs)))
    assert found["soft prompt"]["n"] == 12 and 0 <= found["soft prompt"]["accuracy"] <= 1
    assert found["soft prompt"]["base_unchanged"] is True and found["full fine-tuning"]["accuracy"] is None


def test_an_extra_row_joins_and_a_mismatched_one_is_refused(table):
    model, _, budget, runs = table
    extra = decision.MethodRun("instruction-tuned LoRA", "", runs[0].correct.copy(), runs[0].other_correct)
    assert list(decision.decision_table([*runs, extra])["method"])[-1] == "instruction-tuned LoRA"
    bad = decision.MethodRun("instruction-tuned LoRA", "", np.ones(3, np.int8))
    loaded = random_model("HuggingFaceTB/SmolLM2-135M-Instruct", seed=0)
    chat.add_chat_template(loaded, seed=0)
    splits = task_splits("sst2", select_size=4, train_size=4, eval_size=4, seed=0)
    with pytest.raises(CourseError, match="scored on 3 examples"):
        decision.decision_runs(loaded.model, loaded.tokenizer, splits, budget=decision.Budget(max_steps=1, batch_size=2,
                               eval_every=1, n_virtual_tokens=1, lora_rank=1, k_shot=1, max_length=64),
                               forgetting_eval=lambda m: np.zeros(2, np.int8), extra_runs=[bad])  # fmt: skip
