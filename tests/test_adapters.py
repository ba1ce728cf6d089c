"""Tests of pt_helpers.adapters: the method registry (``register_method``, modelled on PEFT's
``register_peft_method``). Every method is registered once with its adapter class, settings, inits, default lr
and factory, and the settings, the CLI and chapter 06's comparison read it — so a new method needs no edit
anywhere else (the toy method below is registered here only, and appears in all three). ``PromptedModel`` is
tested with each adapter in tests/test_soft_prompt.py, test_prefix.py, test_p_tuning.py and test_family_matrix.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields

import pytest
import torch

from pt_helpers import comparison
from pt_helpers.adapters import (
    METHODS,
    Method,
    get_method,
    option,
    register_adapter,
    register_method,
    unregister_method,
)
from pt_helpers.checkpoint import load_prompt
from pt_helpers.data import task_info, task_splits
from pt_helpers.errors import CourseError, TrainConfigError
from pt_helpers.models import load_model
from pt_helpers.p_tuning import PTuningEncoder
from pt_helpers.prefix import PrefixEncoder
from pt_helpers.soft_prompt import SoftPrompt, make_prompt
from pt_helpers.train import build_parser, main
from pt_helpers.training import TrainSettings

pytestmark = pytest.mark.usefixtures("random_fallback")


def test_the_course_methods_are_registered_once_with_everything_they_need():
    expected = {"soft": SoftPrompt, "deep": PrefixEncoder, "p_tuning": PTuningEncoder}
    for name, cls in expected.items():
        method = get_method(name)
        assert method.adapter_class is cls and method.trains == "prompt" and callable(method.factory)
        assert method.default_init in method.inits and method.default_lr > 0
        for f in method.option_fields():  # every setting of a method carries its help text
            assert f.metadata["help"], (name, f.name)
    # the comparison's baselines are methods too (they train the model's weights or a probe, not a prompt)
    assert {m: METHODS[m].trains for m in ("lora", "full_finetuning", "linear_probe")} == {
        "lora": "model",
        "full_finetuning": "model",
        "linear_probe": "features",
    }
    # TrainSettings reads a method's own settings from the registry: one default, one help text
    deep = {f.name: f for f in fields(get_method("deep").options)}
    train_fields = {f.name: f for f in fields(TrainSettings)}
    for name in ("reparameterize", "mlp_hidden", "init_std"):
        assert train_fields[name].default == deep[name].default
        assert train_fields[name].metadata["help"] == deep[name].metadata["help"]


def test_one_default_per_setting_for_the_cli_and_the_comparison():
    """The CLI and chapter 06 build a deep prompt alike (init_std 0.5, n_virtual_tokens 20 unless given)."""
    bert = load_model("bert", "encoder", allow_random=True, verbose=False)
    torch.manual_seed(0)
    settings = TrainSettings(method="deep", reparameterize=True, n_virtual_tokens=3).resolved()
    adapter = get_method("deep").factory(bert.model, bert.tokenizer, settings, init_text="x")
    # E ~ N(0, 0.5²): over 3 × kv_width numbers its std is 0.5 within a few percent (sampling error ~1/sqrt(n))
    n = adapter.embedding.numel()
    assert abs(adapter.embedding.std().item() - 0.5) < 5 * 0.5 / n**0.5
    row, _ = comparison.train_method(
        "deep prompt", bert.model, bert.tokenizer, task_info("sst2").label_sentences,
        (["good", "bad"] * 4, [1, 0] * 4), (["fine", "awful"], [1, 0]), lr=1e-2, max_steps=1, batch_size=4,
        max_length=8, progress=False,
    )  # fmt: skip
    assert "20 trained keys" in row["variant"]  # n_virtual_tokens None: TrainSettings' 20, as the CLI


def test_a_name_is_registered_once():
    with pytest.raises(CourseError, match="already registered"):
        register_method(Method("soft", "another soft prompt", factory=None))
    with pytest.raises(CourseError, match="registered methods"):
        get_method("no-such-method")
    with pytest.raises(TrainConfigError, match="deep"):
        TrainSettings(method="soft", init_std=2.0).resolved()  # another method's option is an error


# --- a new method: one module + its registration (here, this test) + its tests ---------------------------


@register_adapter
class ToyPrompt(SoftPrompt):
    """A soft prompt under another name: the smallest new method."""

    method = "toy"


@dataclass
class ToyOptions:
    toy_scale: float = option(1.0, "toy only: scale of the initial prompt")


def build_toy(model, tokenizer, settings, *, init_text, label_words=None):
    base = make_prompt(model, tokenizer, settings.n_virtual_tokens, "random", seed=settings.seed)
    scale = getattr(settings, "toy_scale", 1.0)
    return ToyPrompt(base.n_virtual_tokens, base.weight.shape[1], base.weight.detach() * scale).to(base.weight.device)


@pytest.fixture
def toy():
    method = register_method(
        Method("toy", "a toy soft prompt", build_toy, ToyPrompt, ToyOptions, ("random",), "random", 0.05)
    )
    yield method
    unregister_method("toy")


def test_a_registered_method_appears_in_the_cli_and_trains(toy, tmp_path):
    parser = build_parser()
    method_flag = next(a for a in parser._actions if a.dest == "method")
    assert "toy" in method_flag.choices and "a toy soft prompt" in method_flag.help
    assert "0.05 toy" in next(a for a in parser._actions if a.dest == "lr").help
    assert TrainSettings(method="toy").resolved().lr == 0.05 and TrainSettings(method="toy").resolved().init == "random"
    out = tmp_path / "toy"
    argv = ["--model", "bert", "--task", "sst2", "--method", "toy", "--n-virtual-tokens", "2", "--max-steps", "2",
            "--batch-size", "4", "--train-size", "8", "--select-size", "4", "--eval-size", "8", "--max-length", "16",
            "--cpu", "--no-progress", "--eval-every", "1", "--output-dir", str(out)]  # fmt: skip
    metrics = main(argv)
    assert metrics["method"] == "toy" and metrics["steps_run"] == 2
    assert json.loads((out / "adapter_config.json").read_text())["method"] == "toy"
    bert = load_model("bert", "encoder", allow_random=True, verbose=False)
    assert isinstance(load_prompt(out, bert.model, bert.tokenizer), ToyPrompt)  # saved and loaded by its name


def test_a_registered_method_runs_in_the_comparison(toy):
    bert = load_model("bert", "encoder", allow_random=True, verbose=False)
    splits = task_splits("sst2", 4, 8, 6)
    data = [splits.texts_labels(k) for k in ("train", "select", "eval")]
    rows = comparison.run_method(
        "toy", bert.model, bert.tokenizer, task_info("sst2").label_sentences, *data, max_steps=2, batch_size=4,
        n_virtual_tokens=2, max_length=16, progress=False,
    )  # fmt: skip
    assert [r["method"] for r in rows] == ["toy"] and rows[0]["lr"] == 0.05  # its default lr, the one value tried
    assert rows[0]["n_trainable"] == 2 * bert.model.config.hidden_size and rows[0]["n"] == 6
    assert "a toy soft prompt" in rows[0]["variant"]


def test_a_method_without_a_prompt_is_not_offered_by_the_cli():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--method", "lora"])
