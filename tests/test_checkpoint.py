"""Tests of pt_helpers.checkpoint: a saved prompt comes back identical, and a folder that does not belong to
this model (another base model, a missing folder, a file changed after saving, another width) is refused by name.

Each method's own round trip is in its test module (tests/test_prefix.py, test_p_tuning.py); damaged files
are among tests/test_bad_inputs.py's cases.
"""

from __future__ import annotations

import pytest
import torch
from _helpers import TEXTS, batch

from pt_helpers.adapters import PromptedModel
from pt_helpers.checkpoint import CONFIG_FILE, TENSORS_FILE, load_prompt, save_prompt
from pt_helpers.errors import BaseModelMismatchError, CheckpointError, PromptShapeError
from pt_helpers.models import random_model
from pt_helpers.soft_prompt import SoftPrompt, add_soft_prompt, make_prompt


def test_save_load_round_trip_and_identity_checks(random_gpt2, tmp_path):
    model, tok = random_gpt2
    sp = add_soft_prompt(model, tok, 5, "vocab")
    ids, mask, _ = batch(tok, TEXTS)
    folder = save_prompt(sp.adapter, tmp_path / "prompts" / "lr0.01", model, tok, base_model="gpt2", task="sst2")
    assert (folder / TENSORS_FILE).is_file() and (folder / CONFIG_FILE).is_file()
    loaded = load_prompt(folder, model, tok)
    assert torch.equal(loaded.weight, sp.adapter.weight)
    assert torch.equal(PromptedModel(model, loaded)(ids, mask).logits, sp(ids, mask).logits)
    # a name with a dot is a name: a second prompt beside it does not replace it
    save_prompt(make_prompt(model, tok, 5, "vocab", seed=9), tmp_path / "prompts" / "lr0.03", model, tok)
    assert torch.equal(load_prompt(folder, model, tok).weight, sp.adapter.weight)
    other = random_model("gpt2", "causal", seed=1).model  # same shape, other weights
    with pytest.raises(BaseModelMismatchError, match="base model"):
        load_prompt(folder, other, tok)
    bert, bert_tok = random_model("bert-base-uncased", "encoder")
    with pytest.raises(BaseModelMismatchError, match="'gpt2'"):  # same hidden size (256), other model
        load_prompt(folder, bert, bert_tok)
    with pytest.raises(CheckpointError, match="not found"):
        load_prompt(tmp_path / "missing", model, tok)


def test_wrong_dimension_prompt_file(random_gpt2, tmp_path):
    from safetensors.torch import save_file

    model, tok = random_gpt2
    folder = save_prompt(SoftPrompt(3, model.config.n_embd), tmp_path / "p", model, tok)
    save_file({"prompt": torch.zeros(3, 17)}, str(folder / TENSORS_FILE))
    with pytest.raises(CheckpointError, match="SHA-256"):  # another file than the config was written with
        load_prompt(folder, model, tok)
    other = tmp_path / "q"
    save_prompt(SoftPrompt(3, model.config.n_embd), other, model, tok)
    import json

    config = json.loads((other / CONFIG_FILE).read_text())
    save_file({"prompt": torch.zeros(3, 17)}, str(other / TENSORS_FILE))
    import hashlib

    config["tensors_sha256"] = hashlib.sha256((other / TENSORS_FILE).read_bytes()).hexdigest()
    (other / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(PromptShapeError, match="hidden size"):
        load_prompt(other, model, tok)


def test_a_config_written_with_retired_keys_still_loads_under_the_new_names(random_gpt2, tmp_path):
    """A deep prompt saved before issue 26 named its training setting ``trained_with_reparameterization`` (a
    P-tuning prompt ``trained_with_encoder``): the folder still loads, and its config reads under today's names."""
    import json

    from pt_helpers.checkpoint import read_config
    from pt_helpers.prefix import make_prefix

    model, tok = random_gpt2
    prefix = make_prefix(model, tok, 3, init="random", reparameterize=True, mlp_hidden=8)
    folder = save_prompt(prefix, tmp_path / "deep", model, tok)
    config = json.loads((folder / CONFIG_FILE).read_text())
    assert config["adapter"]["reparameterize"] is True
    config["adapter"]["trained_with_reparameterization"] = config["adapter"].pop("reparameterize")  # the old file
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    assert read_config(folder)["adapter"]["reparameterize"] is True
    assert "trained_with_reparameterization" not in read_config(folder)["adapter"]
    loaded = load_prompt(folder, model, tok)
    torch.testing.assert_close(loaded(), prefix.to_direct()(), rtol=0, atol=0)  # the same saved tensor, bit for bit
