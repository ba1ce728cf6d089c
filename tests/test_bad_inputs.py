"""Wrong or unlucky inputs, tried as a new user would: each gets the course's error, naming the input and the
fix — never a traceback from inside torch, datasets or transformers — or behaves correctly.

One parametrised test per category; each case is (id, action, expected error type, words the message must
contain). The training CLI's output folder, SIGKILL + --resume and the notebook runner have their own
tests (tests/test_train_cli.py, tests/test_run.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml

from pt_helpers import data
from pt_helpers.errors import (
    BaseModelMismatchError,
    CheckpointError,
    CourseError,
    DataFormatError,
    PromptShapeError,
    TrainConfigError,
)

DATA = Path(data.__file__).resolve().parents[1] / "data"


# --- data files: one error naming the file, the line and what was expected ------------------------------


def _write(tmp_path, task, split, text):
    folder = tmp_path / "data"
    if not folder.exists():
        shutil.copytree(DATA, folder)
    path = folder / data.task_info(task).splits[split]
    path.write_text(text, encoding="utf-8")
    return path


DATA_CASES = [
    ("empty file", "sst2", "dev", "", "is empty"),
    ("blank lines only", "sst2", "dev", "\n\n  \n", "is empty"),
    ("line without a label", "sst2", "dev", "1 a fine film\nno-label-here\n", "line 2"),
    ("label out of range", "sst2", "dev", "1 a fine film\n7 a strange label\n", "line 2"),
    ("text missing", "sst2", "dev", "1 a fine film\n0\n", "line 2"),
    ("TREC line without its tag", "trec", "test", "NUM:date When was it ?\nWhen did it happen ?\n", "COARSE:fine"),
    ("TREC unknown coarse class", "trec", "test", "NUM:date When was it ?\nXYZ:abc What ?\n", "line 2"),
    ("CSV without a needed column", "agnews", "test", "Class Index,Title\n1,Hello\n", "Description"),
    ("CSV label out of range", "agnews", "test", 'Class Index,Title,Description\n9,"A","B"\n', "line 2"),
    (
        "truncated JSON line",
        "cb",
        "dev",
        '{"premise": "a", "hypothesis": "b", "label": "neutral"}\n{"premise": "a", "hyp',
        "line 2",
    ),
    ("JSON line without a key", "rte", "dev", '{"premise": "a", "label": "entailment"}\n', "hypothesis"),
    ("unknown label name", "cb", "dev", '{"premise": "a", "hypothesis": "b", "label": "maybe"}\n', "maybe"),
    ("not UTF-8", "sst2", "dev", None, "UTF-8"),
]


@pytest.mark.parametrize("case, task, split, text, words", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_bad_data_files(case, task, split, text, words, tmp_path, monkeypatch):
    path = _write(tmp_path, task, split, text or "")
    if text is None:
        path.write_bytes(b"1 caf\xe9 cr\xe8me\n")
    monkeypatch.setenv(data.DATA_ENV_VAR, str(tmp_path / "data"))
    with pytest.raises(DataFormatError) as err:
        data.load_task(task, split)
    assert str(path) in str(err.value) and words in str(err.value)


def test_data_file_missing_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_ENV_VAR, str(tmp_path))
    with pytest.raises(CourseError, match=data.DATA_ENV_VAR):
        data.load_task("sst2", "dev")


# --- saved files: an error naming the file and what to do ------------------------------------------------


@pytest.fixture(scope="module")
def saved_prompt(tmp_path_factory):
    from pt_helpers.checkpoint import save_prompt
    from pt_helpers.models import random_model
    from pt_helpers.soft_prompt import make_prompt

    model, tok = random_model("gpt2", "causal", seed=0)
    folder = tmp_path_factory.mktemp("saved") / "prompts" / "lr0.01"
    save_prompt(make_prompt(model, tok, 3, "vocab"), folder, model, tok)
    return model, tok, folder


def _damage(folder: Path, how: str) -> None:
    from pt_helpers.checkpoint import CONFIG_FILE, TENSORS_FILE

    tensors, config = folder / TENSORS_FILE, folder / CONFIG_FILE
    if how == "truncated safetensors":
        tensors.write_bytes(tensors.read_bytes()[:40])
    elif how == "corrupted safetensors":
        tensors.write_bytes(b"\x00" * 64)
    elif how == "a pickle renamed .safetensors":
        torch.save({"prompt": torch.zeros(3, 256)}, tensors)
    elif how == "invalid JSON config":
        config.write_text('{"format_version": 2, "method": "soft"')
    elif how == "config of another format":
        config.write_text(json.dumps({"format_version": 1}))
    elif how == "tensors file missing":
        tensors.unlink()
    elif how == "config missing":
        config.unlink()


SAVED_CASES = [
    ("truncated safetensors", CheckpointError, "SHA-256"),
    ("corrupted safetensors", CheckpointError, "SHA-256"),
    ("a pickle renamed .safetensors", CheckpointError, "SHA-256"),
    ("invalid JSON config", CheckpointError, "not valid JSON"),
    ("config of another format", CheckpointError, "format_version"),
    ("tensors file missing", CheckpointError, "not found"),
    ("config missing", CheckpointError, "not found"),
]


@pytest.mark.parametrize("how, error, words", SAVED_CASES, ids=[c[0] for c in SAVED_CASES])
def test_damaged_saved_prompts(how, error, words, saved_prompt, tmp_path):
    from pt_helpers.checkpoint import load_prompt

    model, tok, folder = saved_prompt
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy)
    _damage(copy, how)
    with pytest.raises(error) as err:
        load_prompt(copy, model, tok)
    assert words in str(err.value) and str(copy) in str(err.value)


def test_a_prompt_for_another_model_or_tokenizer(saved_prompt):
    from transformers import AutoTokenizer

    from pt_helpers.checkpoint import load_prompt
    from pt_helpers.models import MINILM_NAME, random_model

    model, tok, folder = saved_prompt
    with pytest.raises(BaseModelMismatchError, match="fingerprint"):
        load_prompt(folder, random_model("gpt2", "causal", seed=1).model, tok)
    bert_tok = random_model(MINILM_NAME, "encoder").tokenizer
    with pytest.raises(BaseModelMismatchError, match="tokenizer"):
        load_prompt(folder, model, bert_tok)
    with pytest.raises(PromptShapeError):
        load_prompt(folder, random_model("Qwen/Qwen2.5-0.5B").model, tok, check_identity=False)
    assert AutoTokenizer  # the import above is the public way users load tokenizers


def test_a_file_where_a_prompt_folder_should_be(saved_prompt, tmp_path):
    from pt_helpers.checkpoint import save_prompt
    from pt_helpers.soft_prompt import make_prompt

    model, tok, _ = saved_prompt
    (tmp_path / "taken").write_text("x")
    with pytest.raises(CheckpointError, match="is a file"):
        save_prompt(make_prompt(model, tok, 2, "vocab"), tmp_path / "taken", model, tok)


def test_corrupt_timings_file_does_not_break_later_runs(tmp_path):
    from pt_helpers.project import load_timings

    bad = tmp_path / "timings.json"
    bad.write_text("{not json")
    with pytest.warns(UserWarning, match="moved it to"):
        assert load_timings(bad) == {}
    assert (tmp_path / "timings.json.corrupt").is_file() and not bad.exists()
    assert load_timings(bad) == {}  # the next run starts afresh, silently


def test_corrupt_results_file_names_the_file(tmp_path, monkeypatch):
    from pt_helpers import results

    monkeypatch.setenv(results.RESULTS_ENV_VAR, str(tmp_path))
    (tmp_path / "05.json").write_text("[{]")
    with pytest.raises(CourseError, match="05.json"):
        results.load_results()


# --- training settings: the setting and its valid range ----------------------------------------------------

SETTING_CASES = [
    ("temperature 0", dict(temperature=0.0), "temperature"),
    ("negative temperature", dict(temperature=-1.0), "temperature"),
    ("negative learning rate", dict(lr=-0.1), "lr"),
    ("learning rate 0", dict(lr=0.0), "lr"),
    ("NaN learning rate", dict(lr=float("nan")), "lr"),
    ("negative train size", dict(train_size=-5), "train_size"),
    ("eval batch 0", dict(eval_batch_size=0), "eval_batch_size"),
    ("a float where an int is needed", dict(n_virtual_tokens=2.5), "n_virtual_tokens"),
    ("a bool where an int is needed", dict(max_steps=True), "max_steps"),
    ("warm-up as steps, not a fraction", dict(warmup=10), "warmup"),
    ("unknown schedule", dict(lr_schedule="step"), "lr_schedule"),
    ("unknown optimiser", dict(optimizer="sgd"), "optimizer"),
    ("unknown method", dict(method="shallow"), "method"),
    ("unknown init for a deep prompt", dict(method="deep", init="vocab"), "init"),
    ("text init for P-tuning (its E is random)", dict(method="p_tuning", init="text"), "init"),
    ("unknown P-tuning encoder", dict(method="p_tuning", p_tuning_encoder="gru"), "p_tuning_encoder"),
    ("reparameterising a soft prompt", dict(reparameterize=True), "reparameterize"),
    ("batch that accumulation cannot split", dict(batch_size=6, grad_accum_steps=4), "grad_accum_steps"),
    ("negative select size", dict(select_size=-1), "select_size"),
    ("unknown task", dict(task="imdb"), "valid tasks"),
]


@pytest.mark.parametrize("case, changes, words", SETTING_CASES, ids=[c[0] for c in SETTING_CASES])
def test_bad_training_settings(case, changes, words):
    from pt_helpers.training import TrainSettings

    with pytest.raises(CourseError, match=words):
        TrainSettings(**changes).resolved()


YAML_CASES = [
    ("a YAML list", "- method\n- deep\n", "mapping"),
    ("a YAML syntax error", "method: [deep\n", "not valid YAML"),
    ("an unknown key", "n_virtual_token: 3\n", "unknown keys"),
    ("a string where a number is needed", "lr: fast\n", "lr"),
]


@pytest.mark.parametrize("case, text, words", YAML_CASES, ids=[c[0] for c in YAML_CASES])
def test_bad_yaml_config(case, text, words, tmp_path):
    from pt_helpers.train import parse_config

    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(TrainConfigError, match=words):
        parse_config(["--config", str(path)])
    assert yaml  # YAML is what users write their configs in


# --- models: what was tried, and the fix --------------------------------------------------------------


def _model_case(case, tmp_path, monkeypatch):
    from pt_helpers.models import load_model, random_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if case == "None as a name":
        return lambda: load_model(None)
    if case == "an empty name":
        return lambda: load_model("  ")
    if case == "a typo offline, fallback on":
        return lambda: load_model("gtp2", allow_random=True, verbose=False)
    if case == "a typo offline, fallback off":
        return lambda: load_model("gtp2", allow_random=False, verbose=False)
    if case == "a folder with no config":
        (tmp_path / "empty-model").mkdir()
        return lambda: load_model(str(tmp_path / "empty-model"), verbose=False)
    if case == "a folder with a config but no weights":
        folder = tmp_path / "no-weights"
        random_model("gpt2").model.config.save_pretrained(folder)
        return lambda: load_model(str(folder), verbose=False)
    if case == "another model's tokenizer":
        folder = tmp_path / "mixed"
        random_model("gpt2").model.save_pretrained(folder)
        random_model("bert-base-uncased", "encoder").tokenizer.save_pretrained(folder)
        return lambda: _shrunk(folder)
    raise AssertionError(case)


def _shrunk(folder):
    """A GPT-2 stand-in cut to 1,000 embedding rows beside a 30k-token BERT tokenizer: not its tokenizer."""
    from transformers import AutoTokenizer

    from pt_helpers.classifiers import label_word_classifier
    from pt_helpers.models import random_model

    model = random_model("gpt2").model
    model.resize_token_embeddings(1000)
    return label_word_classifier(model, AutoTokenizer.from_pretrained(str(folder)), ["no", "yes"])


MODEL_CASES = [
    ("None as a name", CourseError, "got None"),
    ("an empty name", CourseError, "model name"),
    ("a typo offline, fallback on", CourseError, "no weights found for 'gtp2'"),
    ("a typo offline, fallback off", CourseError, "no weights found for 'gtp2'"),
    ("a folder with no config", CourseError, "config"),
    ("a folder with a config but no weights", CourseError, "weights"),
    ("another model's tokenizer", CourseError, "belongs to another model"),
]


@pytest.mark.parametrize("case, error, words", MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
def test_bad_models(case, error, words, tmp_path, monkeypatch):
    action = _model_case(case, tmp_path, monkeypatch)
    with pytest.raises(error) as err:
        action()
    assert words in str(err.value)
    if case.startswith("a typo"):  # "no weights" and what was tried come before anything about stand-ins
        assert str(err.value).index("no weights") < str(err.value).find("stand-in") or "stand-in" not in str(err.value)


def test_packaged_minilm_is_verified_before_it_is_called_pretrained(tmp_path):
    from pt_helpers.errors import ModelNotFoundError
    from pt_helpers.models import MINILM_SHA256, _minilm_package_dir, check_minilm_weights

    check_minilm_weights(_minilm_package_dir())  # the installed copy is the hub's file
    fake = tmp_path / "minilm"
    fake.mkdir()
    (fake / "model.safetensors").write_bytes(b"not the weights")
    with pytest.raises(ModelNotFoundError, match=MINILM_SHA256[:12]):
        check_minilm_weights(fake)


# --- in-context-learning helpers -------------------------------------------------------------------------


def _icl_case(case):
    from pt_helpers import icl
    from pt_helpers.models import random_model

    fmt = icl.prompt_format("sst2")
    pool = [("a gem", 1), ("a mess", 0), ("lovely", 1), ("awful", 0), ("fine work", 1)]
    if case == "a string where a list of test examples goes":
        model, tok = random_model("gpt2")
        return lambda: icl.score_icl(model, tok, pool[:1], "a fine film", fmt)
    if case == "calibrating with no content-free inputs":
        return lambda: icl.contextual_calibration(torch.zeros(3, 2), torch.zeros(0, 2))
    if case == "k larger than the pool":
        return lambda: icl.sample_demonstrations(pool, 9, seed=0)
    if case == "a balanced sample the pool cannot supply":
        return lambda: icl.sample_demonstrations(pool, 4, seed=0, balanced=True, exclude_texts=["awful"])
    if case == "more neighbours than the pool holds":
        e = torch.nn.functional.normalize(torch.randn(3, 4), dim=-1)
        return lambda: icl.nearest_neighbour_indices(e, e[:1], 3)
    if case == "only one of the text lists":
        e = torch.nn.functional.normalize(torch.randn(3, 4), dim=-1)
        return lambda: icl.nearest_neighbour_indices(e, e[:1], 1, pool_texts=["a", "b", "c"])
    if case == "a test example among its demonstrations":
        return lambda: icl.build_prompt(pool[:2], "a gem", fmt)
    raise AssertionError(case)


ICL_CASES = [
    ("a string where a list of test examples goes", TypeError, "not one string"),
    ("calibrating with no content-free inputs", CourseError, "content-free"),
    ("k larger than the pool", CourseError, "cannot draw 9"),
    ("a balanced sample the pool cannot supply", CourseError, "balanced"),
    ("more neighbours than the pool holds", CourseError, "lower k"),
    ("only one of the text lists", CourseError, "both"),
    ("a test example among its demonstrations", CourseError, "also demonstrations"),
]


@pytest.mark.parametrize("case, error, words", ICL_CASES, ids=[c[0] for c in ICL_CASES])
def test_bad_icl_inputs(case, error, words):
    with pytest.raises(error, match=words):
        _icl_case(case)()


def test_nearest_neighbours_never_return_the_test_input_itself():
    from pt_helpers import icl

    pool = torch.nn.functional.normalize(torch.randn(6, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    chosen = icl.nearest_neighbour_indices(pool, pool[2:3], 3)  # the query IS pool row 2, no texts given
    assert 2 not in chosen[0].tolist()


# --- swapped arguments and None: a TypeError naming the argument ------------------------------------------


def _swapped_case(case):
    from pt_helpers import icl, lm
    from pt_helpers.adapters import PromptedModel
    from pt_helpers.checkpoint import save_prompt
    from pt_helpers.classifiers import label_sentence_classifier
    from pt_helpers.models import random_model
    from pt_helpers.soft_prompt import make_prompt

    model, tok = random_model("gpt2")
    calls = {
        "sequence_logprob(tokenizer, model)": lambda: lm.sequence_logprob(tok, model, "hello"),
        "conditional_logprob(tokenizer, model)": lambda: lm.conditional_logprob(tok, model, "a", " b"),
        "score_label_words_cached(tokenizer, model)": lambda: icl.score_label_words_cached(
            tok, model, "", ["x"], [" a", " b"]
        ),
        "make_prompt(tokenizer, model)": lambda: make_prompt(tok, model, 3),
        "label_sentence_classifier(tokenizer, model)": lambda: label_sentence_classifier(tok, model, ["a", "b"]),
        "PromptedModel(tokenizer)": lambda: PromptedModel(tok),
        "PromptedModel(model, 'a prompt')": lambda: PromptedModel(model, "a prompt"),
        "save_prompt(None, …)": lambda: save_prompt(None, "p", model, tok),
        "PromptedModel(model)(a list of ids)": lambda: PromptedModel(model)([[1, 2, 3]]),
    }
    return calls[case]


SWAPPED_CASES = [
    ("sequence_logprob(tokenizer, model)", "model"),
    ("conditional_logprob(tokenizer, model)", "model"),
    ("score_label_words_cached(tokenizer, model)", "model"),
    ("make_prompt(tokenizer, model)", "model"),
    ("label_sentence_classifier(tokenizer, model)", "model"),
    ("PromptedModel(tokenizer)", "model"),
    ("PromptedModel(model, 'a prompt')", "adapter"),
    ("save_prompt(None, …)", "adapter"),
    ("PromptedModel(model)(a list of ids)", "input_ids"),
]


@pytest.mark.parametrize("case, argument", SWAPPED_CASES, ids=[c[0] for c in SWAPPED_CASES])
def test_swapped_or_missing_arguments(case, argument):
    with pytest.raises(TypeError) as err:
        _swapped_case(case)()
    assert str(err.value).startswith(argument) or f" {argument}" in str(err.value)


# --- notebook parameters: typed by the notebook's own parameters cell -------------------------------------

NB = Path(data.__file__).resolve().parents[1] / "notebooks"
PARAM_CASES = [
    ("a string with a colon stays a string", "01_chain_rule_probability.ipynb", "text", "Verdict: a fine film", None),
    ("a word where a list is expected", "05_soft_prompt_tuning.ipynb", "overrides", "positive", "dict"),
    ("letters where an int is expected", "01_chain_rule_probability.ipynb", "seed", "abc", "int"),
    ("an unknown parameter", "01_chain_rule_probability.ipynb", "sedd", "1", "seed"),
]


@pytest.mark.parametrize("case, notebook, name, raw, words", PARAM_CASES, ids=[c[0] for c in PARAM_CASES])
def test_notebook_parameters_are_typed_by_the_notebook(case, notebook, name, raw, words):
    from pt_helpers.course.run import ParameterError, type_parameters

    if words is None:
        assert type_parameters({name: raw}, NB / notebook) == {name: raw}
        return
    with pytest.raises(ParameterError) as err:
        type_parameters({name: raw}, NB / notebook)
    assert name in str(err.value) and words in str(err.value)


# --- work is never lost or mixed up ---------------------------------------------------------------------


def test_prompts_whose_names_have_dots_are_two_prompts(tmp_path):
    from pt_helpers.checkpoint import load_prompt, save_prompt
    from pt_helpers.models import random_model
    from pt_helpers.soft_prompt import make_prompt

    model, tok = random_model("gpt2")
    a, b = make_prompt(model, tok, 2, "vocab", seed=1), make_prompt(model, tok, 2, "vocab", seed=2)
    save_prompt(a, tmp_path / "prompts" / "lr0.01", model, tok)
    save_prompt(b, tmp_path / "prompts" / "lr0.03", model, tok)
    assert torch.equal(load_prompt(tmp_path / "prompts" / "lr0.01", model, tok).weight, a.weight)
    assert torch.equal(load_prompt(tmp_path / "prompts" / "lr0.03", model, tok).weight, b.weight)


def test_number_of_cases_in_this_table():
    n = (
        len(DATA_CASES)
        + len(SAVED_CASES)
        + len(SETTING_CASES)
        + len(YAML_CASES)
        + len(MODEL_CASES)
        + len(ICL_CASES)
        + len(SWAPPED_CASES)
        + len(PARAM_CASES)
        + len(TEXT_CASES)
        + len(TOKENIZER_CASES)
        + len(PARAMETER_TYPE_CASES)
        + len(BOM_CASES)
    )
    assert n >= 60, n


# --- None (or another non-string) where a text is expected: a TypeError naming the text and its index ------

TEXT_CASES = [
    ("None among the texts of check_texts", "check_texts", "texts[1] is None"),
    ("NaN (an empty pandas cell) among the texts", "nan", "missing value"),
    ("one string instead of a list", "one string", "not one string"),
    ("None among a classifier's texts", "predict", "texts[1] is None"),
    ("None among the texts to embed", "embed", "texts[0] is None"),
    ("None in a template's field", "template", "'text' is None"),
    ("None among ROUGE's predictions", "rouge", "predictions[0] is None"),
    ("None as the prompt of conditional_logprob", "conditional", "[prompt, target][0] is None"),
    ("None among ICL's test examples", "icl test", "test_examples[1] is None"),
    ("None as a demonstration's text", "icl demo", "demonstration texts[0] is None"),
]


def _text_action(case, random_gpt2, random_bert):
    from pt_helpers import icl
    from pt_helpers.classifiers import classifier_for
    from pt_helpers.errors import check_texts
    from pt_helpers.lm import conditional_logprob
    from pt_helpers.prompts import Template, rouge
    from pt_helpers.scoring import embed_sentences

    model, tok = random_gpt2
    actions = {
        "check_texts": lambda: check_texts(["fine", None]),
        "nan": lambda: check_texts(["fine", float("nan")]),
        "one string": lambda: classifier_for(model, tok, "sst2").predict("a fine film"),
        "predict": lambda: classifier_for(model, tok, "sst2").predict(["a fine film", None]),
        "embed": lambda: embed_sentences(*random_bert, [None, "fine"]),
        "template": lambda: Template("Review: {text} Sentiment:").format({"text": None}),
        "rouge": lambda: rouge([None], ["a summary"]),
        "conditional": lambda: conditional_logprob(model, tok, None, " positive"),
        "icl test": lambda: icl.build_context_and_queries([("fine", 1)], ["a film", None], icl.prompt_format("sst2")),
        "icl demo": lambda: icl.build_context_and_queries([(None, 1)], ["a film"], icl.prompt_format("sst2")),
    }
    return actions[case]


@pytest.mark.parametrize("case, action, words", TEXT_CASES, ids=[c[0] for c in TEXT_CASES])
def test_a_missing_text_is_named_at_the_boundary(case, action, words, random_gpt2, random_bert):
    with pytest.raises(TypeError) as err:
        _text_action(action, random_gpt2, random_bert)()
    assert words in str(err.value), str(err.value)
    assert "strip" not in str(err.value)


# --- a tokenizer of another model family, smaller than the model's embedding table --------------------------

TOKENIZER_CASES = [
    ("BERT's tokenizer on GPT-2 (GPT-2's end-of-text id 50,256 is not a BERT token)", "gpt2", "token id 50,256"),
    ("BERT's tokenizer on a SmolLM2-sized Llama (special ids 1 and 2 exist in BERT too)", "llama", "never be used"),
]


def _smollm2_sized_llama():
    """A 1-layer Llama with SmolLM2-135M's vocabulary (49,152 rows) and special ids (BOS 1, EOS 2)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    return LlamaForCausalLM(config).eval()


@pytest.mark.parametrize("case, family, words", TOKENIZER_CASES, ids=[c[0] for c in TOKENIZER_CASES])
def test_another_familys_smaller_tokenizer_is_refused_where_model_and_tokenizer_meet(case, family, words, random_bert):
    from pt_helpers.classifiers import classifier_for
    from pt_helpers.errors import TokenizerMismatchError
    from pt_helpers.lm import sequence_logprob
    from pt_helpers.models import random_model

    model = random_model("gpt2", "causal", seed=0).model if family == "gpt2" else _smollm2_sized_llama()
    bert_tok = random_bert.tokenizer
    assert len(bert_tok) < model.get_input_embeddings().num_embeddings  # smaller: the old check let it through
    for use in (lambda: classifier_for(model, bert_tok, "sst2"), lambda: sequence_logprob(model, bert_tok, "a film")):
        with pytest.raises(TokenizerMismatchError) as err:
            use()
        assert words in str(err.value) and "same name or folder" in str(err.value)


def test_a_padded_embedding_table_is_still_accepted(random_gpt2):
    """Models pad their tables (GPT-2-size 50,257 → 50,304): a tokenizer a few % smaller is the model's own."""
    import copy

    from pt_helpers.frozen import check_model_and_tokenizer

    model, tok = random_gpt2
    padded = copy.deepcopy(model)
    padded.resize_token_embeddings(50304)
    check_model_and_tokenizer(padded, tok, "a padded table")


# --- a notebook parameter of the wrong type: named with the type its parameters cell declares -------------
# (python -m pt_helpers.course.run checks before a notebook starts; a plain papermill run is checked by the
# notebook's own check_parameters cell, right after the injected parameters)

PARAMETER_TYPE_CASES = [
    ("letters for an int (run)", "run", "01", "seed", "abc", "expects an int"),
    ("letters for an int annotated int | None (run)", "run", "annotated", "n_eval", "abc", "expects an int"),
    ("letters for an int (plain papermill)", "papermill", "01", "seed", "abc", "declared int"),
    ("letters for an int annotated int | None (plain papermill)", "papermill", "annotated", "n_eval", "abc", "int"),
    ("a word for a bool (plain papermill)", "papermill", "annotated", "pool", "yes please", "declared bool"),
]


def _annotated_notebook(folder: Path) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("n_eval: int | None = None  # None: the profile's size\npool = False\n")
    params.metadata["tags"] = ["parameters"]
    check = nbformat.v4.new_code_cell("from pt_helpers.parameters import check_parameters\n\ncheck_parameters()")
    nb.cells = [nbformat.v4.new_markdown_cell("# 10 · a test"), params, check, nbformat.v4.new_code_cell("1 + n_eval")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / "10_annotated.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.mark.parametrize(
    "case, via, notebook, name, raw, words", PARAMETER_TYPE_CASES, ids=[c[0] for c in PARAMETER_TYPE_CASES]
)
def test_a_parameter_of_the_wrong_type_is_named_with_its_declared_type(case, via, notebook, name, raw, words, tmp_path):
    from pt_helpers.course.run import type_parameters
    from pt_helpers.errors import ParameterError

    path = NB / "01_chain_rule_probability.ipynb" if notebook == "01" else _annotated_notebook(tmp_path)
    if via == "run":
        with pytest.raises(ParameterError) as err:
            type_parameters({name: raw}, path)
        assert name in str(err.value) and words in str(err.value)
        return
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError) as err:
        pm.execute_notebook(
            str(path), str(tmp_path / "out.ipynb"), parameters={name: raw}, cwd=str(NB), progress_bar=False
        )
    assert err.value.ename == "ParameterError" and err.value.exec_count == 3, (err.value.ename, err.value.evalue)
    assert repr(name) in err.value.evalue and words in err.value.evalue and repr(raw) in err.value.evalue


# --- a byte-order mark (Excel's "CSV UTF-8", Notepad's "UTF-8 with BOM") is read, not refused -------------

BOM_CASES = [  # (task, split): every reader — text lines, the AG News CSV header, JSON lines
    ("sst2", "dev"),
    ("trec", "test"),
    ("agnews", "test"),
    ("cb", "dev"),
]


@pytest.mark.parametrize("task, split", BOM_CASES, ids=[c[0] for c in BOM_CASES])
def test_a_byte_order_mark_is_read_as_the_same_data(task, split, tmp_path, monkeypatch):
    """The same file with and without a UTF-8 BOM gives the same rows (first row included)."""
    path = _write(tmp_path, task, split, "")
    original = (DATA / data.task_info(task).splits[split]).read_bytes()
    path.write_bytes(b"\xef\xbb\xbf" + original)
    monkeypatch.setenv(data.DATA_ENV_VAR, str(tmp_path / "data"))
    with_bom = data.load_task(task, split)
    monkeypatch.setenv(data.DATA_ENV_VAR, str(DATA))
    plain = data.load_task(task, split)
    assert len(with_bom) == len(plain) and with_bom[0] == plain[0] and with_bom[:]["label"] == plain[:]["label"]
