"""Chapter 09: chat templates on the stand-ins, few-shot as a conversation, soft prompts on a chat model.

Every model here is a random stand-in: the checks are mechanical identities (token ids, cached = naive,
ours = PEFT, ours = recomputation), never behaviour.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
from _helpers import GRAD_RTOL, close
from torch.testing import assert_close

from pt_helpers import chat, icl
from pt_helpers.errors import CourseError
from pt_helpers.models import LoadedModel, random_model
from pt_helpers.soft_prompt import make_prompt, peft_twin
from pt_helpers.training import TrainSettings, fit

# PEFT still passes past_key_values=, which transformers 5 renames cache= (a FutureWarning per call)
pytestmark = [
    pytest.mark.filterwarnings("ignore:.*past_key_values.*deprecated:FutureWarning"),
    pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning"),  # raised inside PEFT
]

# One instruct hub name per tokenizer convention: Llama (the tokenizer adds BOS), Qwen2 (no BOS at all),
# GPT-2 (BOS = EOS, nothing added); Gemma 2 for its sliding-window layers and soft-capping.
CHAT_NAMES = {
    "llama": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "qwen2": "Qwen/Qwen2.5-0.5B-Instruct",
    "gpt2": "gpt2",
    "gemma2": "google/gemma-2-2b-it",
}
DEMOS = [("a gripping, beautifully acted film", 1), ("dull", 0), ("an utter bore, long and loud", 0)]
INPUTS = ["the plot goes nowhere", "great fun", "not bad at all, really"]

# Tolerances: tests/_helpers.py's ``close`` (rtol plus an atol of rtol × the largest magnitude, floor 1: the
# terms summed into logits, losses and the soft prompt's gradient are of size ~1 — see its floor rules) with its
# RTOL for outputs and GRAD_RTOL for gradients. A wrong position, a missing or doubled marker token, or a prompt
# in the wrong place changes the values by far more (~1e-1 on these stand-ins).


@pytest.fixture(scope="module")
def chat_stand_in():
    """``chat_stand_in(family)``: a random stand-in with the course's ChatML template, built once per module
    (tests deep-copy the model before wrapping it: PromptedModel freezes it)."""
    built = {}

    def get(family):
        if family not in built:
            loaded = random_model(CHAT_NAMES[family], seed=0)
            assert loaded.family == family
            chat.add_chat_template(loaded, seed=0)
            built[family] = loaded
        return built[family]

    return get


# --- the template on the stand-in ---------------------------------------------------------------------------


def test_stand_in_gets_chatml_markers_as_special_tokens_with_embedding_rows():
    loaded = random_model(CHAT_NAMES["llama"], seed=0)
    old = loaded.model.get_input_embeddings().weight.detach().clone()
    assert loaded.tokenizer.chat_template is None
    added = chat.add_chat_template(loaded, seed=0)
    model, tok = loaded
    assert added == list(chat.CHAT_MARKERS)
    ids = tok.convert_tokens_to_ids(list(chat.CHAT_MARKERS))
    assert ids == [old.shape[0], old.shape[0] + 1]  # two new ids after the old vocabulary
    assert all(m in tok.all_special_tokens for m in chat.CHAT_MARKERS)
    assert tok(chat.IM_START + "user", add_special_tokens=False)["input_ids"][0] == ids[0]  # never split
    emb = model.get_input_embeddings().weight
    assert emb.shape[0] == len(tok) == old.shape[0] + 2
    assert torch.equal(emb[: old.shape[0]], old)  # the old rows are untouched
    assert model.get_output_embeddings().weight.shape[0] == len(tok)
    # seeded: a second build gets the same new rows
    again = random_model(CHAT_NAMES["llama"], seed=0)
    chat.add_chat_template(again, seed=0)
    assert torch.equal(again.model.get_input_embeddings().weight, emb)
    # a tokenizer that has a template keeps it, and nothing is added twice
    assert chat.add_chat_template(loaded) == [] and len(tok) == emb.shape[0]


@pytest.mark.parametrize("family", ["llama", "qwen2", "gpt2"])
def test_rendered_ids_are_apply_chat_template_ids(chat_stand_in, family):
    tok = chat_stand_in(family).tokenizer
    msgs = chat.conversation(DEMOS, INPUTS[0], chat.chat_format("sst2"))
    text = chat.render(tok, msgs, add_generation_prompt=True)
    assert text.endswith(chat.IM_START + "assistant\n")
    assert text.count(chat.IM_START) == len(msgs) + 1 and text.count(chat.IM_END) == len(msgs)
    own = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    assert chat.template_ids(tok, msgs, add_generation_prompt=True) == list(own)


@pytest.mark.parametrize("family", ["llama", "qwen2", "gpt2"])
def test_scorer_reads_start_token_plus_the_template_ids(chat_stand_in, family):
    tok = chat_stand_in(family).tokenizer
    fmt = chat.chat_format("sst2")
    context, queries = chat.chat_context_and_queries(tok, DEMOS, INPUTS, fmt)
    for x, q in zip(INPUTS, queries):
        for word in fmt.label_words:
            msgs = chat.conversation(DEMOS, x, fmt)
            expected = [icl.bos_token_id(tok)] + chat.template_ids(tok, msgs, True)
            expected += tok(word, add_special_tokens=False)["input_ids"]
            assert chat.engine_ids(tok, context, q, word) == expected


def test_a_template_starting_with_bos_is_not_given_a_second_one(chat_stand_in):
    tok = copy.deepcopy(chat_stand_in("llama").tokenizer)
    tok.chat_template = "{{- bos_token }}" + chat.CHATML_TEMPLATE  # as Llama 3's template starts
    fmt = chat.chat_format("sst2")
    context, queries = chat.chat_context_and_queries(tok, DEMOS, INPUTS[:1], fmt)
    msgs = chat.conversation(DEMOS, INPUTS[0], fmt)
    ids = chat.template_ids(tok, msgs, True)
    assert ids[0] == tok.bos_token_id and ids[1] != tok.bos_token_id
    assert (
        chat.engine_ids(tok, context, queries[0], "positive")
        == ids + tok("positive", add_special_tokens=False)["input_ids"]
    )


# --- few-shot as a conversation: cached = naive --------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma2"])
def test_cached_chat_scoring_equals_naive(chat_stand_in, family, reduction):
    model, tok = chat_stand_in(family)
    # one bare one-token answer and one of several tokens: the answer's later tokens are scored too
    fmt = chat.ChatFormat("Classify the review.", "Review: ", ("positive", "negative", "mixed feelings"))
    assert max(len(tok(w, add_special_tokens=False)["input_ids"]) for w in fmt.label_words) >= 2
    demos = [(t, y % 3) for t, y in DEMOS]
    cached = chat.score_chat(model, tok, demos, INPUTS, fmt, reduction=reduction)
    naive = chat.score_chat(model, tok, demos, INPUTS, fmt, cached=False, reduction=reduction)
    assert cached.shape == (len(INPUTS), 3)
    assert (cached[0] - cached[1]).abs().max() > 1e-4  # the inputs matter: the comparison is not vacuous
    close(cached, naive, what=f"cached vs naive ({family}, {reduction})")


def test_zero_shot_chat_scoring_has_an_empty_shared_context_only_without_a_system_turn(chat_stand_in):
    model, tok = chat_stand_in("llama")
    fmt = chat.ChatFormat("", "Review: ", ("positive", "negative"))
    context, queries = chat.chat_context_and_queries(tok, [], INPUTS, fmt)
    assert context == "" and all(q.startswith(chat.IM_START + "user") for q in queries)
    close(
        chat.score_chat(model, tok, [], INPUTS, fmt),
        chat.score_chat(model, tok, [], INPUTS, fmt, cached=False),
        what="zero-shot cached vs naive",
    )


# --- a soft prompt on a chat model -----------------------------------------------------------------------------


def _right_padded(clf, texts):
    """The classifier's chat texts, right-padded (PEFT's positions follow the columns: no left padding)."""
    enc = clf.tokenizer(
        [clf.head.format(t) for t in texts], add_special_tokens=False, padding=True, return_tensors="pt"
    )
    assert clf.tokenizer.padding_side == "right"
    ids, mask = enc["input_ids"], enc["attention_mask"]
    return ids, mask, ids.masked_fill(mask == 0, -100)


@pytest.mark.parametrize("share", [True, False], ids=["shared-cache", "concatenated"])
@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_soft_prompt_before_the_system_turn_equals_peft(chat_stand_in, family, share):
    model, tok = chat_stand_in(family)
    n = 5
    clf = chat.chat_classifier(
        copy.deepcopy(model), tok, chat.chat_format("sst2"), make_prompt(model, tok, n, "vocab", seed=1),
        share_prompt_cache=share,
    )  # fmt: skip
    ids, mask, labels = _right_padded(clf, INPUTS)
    assert (ids == tok.convert_tokens_to_ids(chat.IM_START)).sum(-1).tolist() == [3] * len(INPUTS)
    out = clf.prompted(ids, mask, labels)
    out.loss.backward()
    twin = peft_twin(copy.deepcopy(model), clf.adapter, task_type="CAUSAL_LM")  # chapter 05's PEFT twin
    peft_weight = twin.prompt_encoder["default"].embedding.weight
    ref = twin.eval()(input_ids=ids, attention_mask=mask, labels=labels)
    ref.loss.backward()
    real = mask.bool()
    close(out.logits[real], ref.logits[:, n:][real], what="logits vs PEFT")
    close(out.loss, ref.loss, what="loss vs PEFT")
    assert clf.adapter.weight.grad.abs().max() > 0
    close(clf.adapter.weight.grad, peft_weight.grad, rtol=GRAD_RTOL, what="prompt gradient vs PEFT")


@pytest.mark.parametrize("family", ["llama", "gemma2"])
def test_soft_prompt_inside_the_user_turn_equals_recomputation(chat_stand_in, family):
    """Reference: the plain model on the embeddings [start + system turn + user header; P; input], one
    full forward pass per batch (no cache), P a separate leaf tensor."""
    model, tok = chat_stand_in(family)
    n = 4
    prompt = make_prompt(model, tok, n, "vocab", seed=2)
    clf = chat.chat_classifier(copy.deepcopy(model), tok, chat.chat_format("sst2"), prompt, placement="user_turn")
    anchor = clf.adapter.anchor_ids
    assert (
        anchor[0] == icl.bos_token_id(tok)
        and anchor[-3:] == tok(chat.IM_START + "user\n", add_special_tokens=False)["input_ids"]
    )
    ids, mask, _ = _right_padded(clf, INPUTS)
    ours = clf.prompted(ids, mask).logits
    probe = torch.randn(ours.shape, generator=torch.Generator().manual_seed(0))
    real = mask.bool()
    (ours * probe)[real].sum().backward()

    p_ref = prompt.weight.detach().clone().requires_grad_(True)
    ref_model = copy.deepcopy(model).requires_grad_(False)
    B, m = ids.shape[0], len(anchor)
    with torch.no_grad():
        anchor_emb, input_emb = (
            ref_model.get_input_embeddings()(torch.tensor(anchor)),
            ref_model.get_input_embeddings()(ids),
        )
    embeds = torch.cat([anchor_emb.expand(B, m, -1), p_ref.expand(B, n, -1), input_emb], 1)
    full_mask = torch.cat([torch.ones(B, m + n, dtype=mask.dtype), mask], 1)
    ref = ref_model(inputs_embeds=embeds, attention_mask=full_mask).logits[:, m + n :]
    (ref * probe)[real].sum().backward()
    close(ours[real], ref[real], what="user-turn prompt vs recomputation")
    assert prompt.weight.grad.abs().max() > 0
    close(prompt.weight.grad, p_ref.grad, rtol=GRAD_RTOL, what="prompt gradient vs recomputation")
    # the head reads the label words at the last real token (left padding in the classifier)
    heads = clf(*clf.tokenize(INPUTS))
    last = mask.sum(-1) - 1
    close(heads, ref[torch.arange(B), last][:, clf.head.label_ids].detach(), what="head vs recomputation")


def test_classifier_without_prompt_agrees_with_the_scorer(chat_stand_in):
    """The soft-prompt classifier's text and the scorer's conversation are the same tokens: with no prompt its
    label-word log-probs are the zero-shot chat scores."""
    model, tok = chat_stand_in("qwen2")
    fmt = chat.chat_format("sst2")
    clf = chat.chat_classifier(copy.deepcopy(model), tok, fmt)
    with torch.no_grad():
        logp = clf.prompted(*clf.tokenize(INPUTS)).logits[:, -1].float().log_softmax(-1)[:, clf.head.label_ids]
    close(logp, chat.score_chat(model, tok, [], INPUTS, fmt), what="classifier vs chat scorer")


@pytest.mark.parametrize("placement", chat.PLACEMENTS)
def test_fit_trains_only_the_chat_prompt(chat_stand_in, placement):
    model, tok = chat_stand_in("llama")
    frozen = copy.deepcopy(model)
    prompt = make_prompt(model, tok, 3, "vocab", seed=0)
    start = prompt.weight.detach().clone()
    clf = chat.chat_classifier(frozen, tok, chat.chat_format("sst2"), prompt, placement=placement)
    texts, labels = ["good", "bad", "fine film", "awful", "lovely", "boring"], [1, 0, 1, 0, 1, 0]
    settings = TrainSettings(
        task="sst2", max_steps=2, batch_size=3, eval_every=2, eval_batch_size=3, lr=0.1, progress=False, warmup=0.0
    )
    result = fit(clf, (texts[:4], labels[:4]), (texts[4:], labels[4:]), settings)
    assert result.n_trainable == prompt.weight.numel() and result.steps_run == 2
    assert len(result.history["loss"]) == 2
    for (name, p), (_, q) in zip(frozen.named_parameters(), model.named_parameters()):
        assert torch.equal(p, q), f"{name} changed: the chat model must stay frozen"
    # one evaluation (step 2), so fit keeps the parameters after two steps: the prompt has moved
    assert result.best_step == 2 and not torch.equal(prompt.weight.detach(), start)


# --- chain-of-thought sampling and voting ----------------------------------------------------------------------


def test_sample_answers_is_seeded_and_returns_one_reply_per_sample(chat_stand_in):
    model, tok = chat_stand_in("llama")
    msgs = [chat.message("user", "What is 2 + 3? " + chat.COT_TRIGGER)]
    a = chat.sample_answers(model, tok, msgs, n_samples=3, max_new_tokens=6, seed=0)
    b = chat.sample_answers(model, tok, msgs, n_samples=3, max_new_tokens=6, seed=0)
    assert a == b and len(a) == 3 and all(isinstance(t, str) for t in a)
    assert all(chat.IM_END not in t for t in a)


def test_extract_number_and_majority_vote():
    assert chat.extract_number("so 3 + 4 = 7. The answer is 12.") == "12"
    assert chat.extract_number("1,250 apples") == "1250"
    assert chat.extract_number("no idea") is None
    assert chat.majority_vote(["7", None, "12", "7"]) == ("7", 2)
    assert chat.majority_vote(["12", "7"]) == ("12", 1)  # a tie goes to the first answer seen
    assert chat.majority_vote([None, None]) == (None, 0)


# --- bad inputs ------------------------------------------------------------------------------------------------


def test_a_pretrained_base_model_is_not_given_a_chat_template():
    stand_in = random_model(CHAT_NAMES["llama"], seed=0)
    as_if_pretrained = LoadedModel(*stand_in, stand_in.name, "causal", "path", "/models/x", True, [])
    with pytest.raises(chat.ChatTemplateError, match="base model"):
        chat.add_chat_template(as_if_pretrained)


def test_a_tokenizer_without_template_is_a_clear_error():
    tok = random_model(CHAT_NAMES["llama"], seed=0).tokenizer
    with pytest.raises(chat.ChatTemplateError, match="load_chat_model"):
        chat.render(tok, [chat.message("user", "hi")])


def test_a_template_that_rewrites_earlier_turns_has_no_shared_context(chat_stand_in):
    tok = copy.deepcopy(chat_stand_in("llama").tokenizer)
    tok.chat_template = "{{- messages | length }}" + chat.CHATML_TEMPLATE  # depends on how many turns follow
    with pytest.raises(chat.ChatTemplateError, match="shared context"):
        chat.chat_context_and_queries(tok, DEMOS, INPUTS, chat.chat_format("sst2"))


def test_bad_arguments_are_named(chat_stand_in):
    model, tok = chat_stand_in("llama")
    fmt = chat.chat_format("sst2")
    with pytest.raises(icl.DemonstrationLeakError):
        chat.chat_context_and_queries(tok, DEMOS, [DEMOS[0][0]], fmt)
    with pytest.raises(chat.ChatTemplateError, match="role"):
        chat.message("narrator", "hi")
    with pytest.raises(CourseError, match="out of range"):
        chat.conversation([("x", 5)], None, fmt)
    with pytest.raises(CourseError, match="placement"):
        chat.chat_classifier(model, tok, fmt, placement="after_the_answer")
    with pytest.raises(CourseError, match="n_samples"):
        chat.sample_answers(model, tok, [chat.message("user", "hi")], n_samples=0)
    with pytest.raises(TypeError):
        chat.chat_context_and_queries(tok, DEMOS, "one string", fmt)


# --- what a closed API allows ----------------------------------------------------------------------------------


def test_closed_api_table_matches_the_course_functions():
    import importlib
    import inspect

    import pt_helpers

    for method, where, _, takes_model, api in chat.CLOSED_API_NEEDS:
        module, name = where.split(".")
        fn = getattr(importlib.import_module(f"{pt_helpers.__name__}.{module}"), name)
        params = inspect.signature(fn).parameters
        assert ("model" in params) == takes_model, (
            f"{where}: takes_model is {takes_model}, its signature says otherwise"
        )
        if api == "no":  # what an API cannot offer is exactly what needs the model's insides
            assert takes_model, method


def test_closed_api_gives_numbers_and_refuses_soft_prompts(chat_stand_in):
    from pt_helpers.soft_prompt import add_soft_prompt

    model, tok = chat_stand_in("llama")
    api = chat.ClosedChatAPI(model, tok)
    fmt = chat.chat_format("sst2")
    lp = api.answer_logprobs(DEMOS, INPUTS, fmt)
    close(lp, chat.score_chat(model, tok, DEMOS, INPUTS, fmt), what="API log-probs vs the scorer")
    assert not lp.requires_grad
    cf = api.answer_logprobs(DEMOS, list(icl.CONTENT_FREE_INPUTS), fmt)
    assert icl.contextual_calibration(lp, cf).shape == lp.shape  # calibration needs only these numbers
    with pytest.raises(TypeError, match="transformers model"):
        add_soft_prompt(api, tok, 4)
    assert len(api.reply([chat.message("user", "hi")], n=2, max_new_tokens=4)) == 2


def test_the_notebooks_peft_helper_matches_and_refuses_the_user_turn_placement(chat_stand_in):
    model, tok = chat_stand_in("qwen2")
    fmt = chat.chat_format("sst2")
    clf = chat.chat_classifier(copy.deepcopy(model), tok, fmt, make_prompt(model, tok, 3, "vocab", seed=3))
    pairs = chat.compare_with_peft(clf, INPUTS)
    close(*pairs["logits"], what="logits")
    close(*pairs["loss"], what="loss")
    assert pairs["gradient"][0].abs().max() > 0
    close(*pairs["gradient"], rtol=GRAD_RTOL, what="gradient")
    assert clf.adapter.weight.grad is None  # the helper leaves no gradient behind
    other = chat.chat_classifier(
        copy.deepcopy(model), tok, fmt, make_prompt(model, tok, 3, "vocab"), placement="user_turn"
    )
    with pytest.raises(CourseError, match="before-the-system-turn"):
        chat.compare_with_peft(other, INPUTS)


def test_load_chat_model_offline_gives_a_bannered_stand_in_with_the_template(monkeypatch, capsys):
    monkeypatch.setenv("PT_RANDOM_FALLBACK", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = chat.load_chat_model(CHAT_NAMES["qwen2"], seed=0)
    out = capsys.readouterr().out
    assert not loaded.is_pretrained and loaded.family == "qwen2"
    assert "RANDOM WEIGHTS" in out and "chat template" in out and "<|im_start|>" in out
    assert loaded.tokenizer.chat_template == chat.CHATML_TEMPLATE
    assert loaded.model.get_input_embeddings().num_embeddings == len(loaded.tokenizer)
    # Qwen2 ties its input and output embeddings: the resize keeps them one matrix
    assert (
        loaded.model.get_output_embeddings().weight.data_ptr() == loaded.model.get_input_embeddings().weight.data_ptr()
    )
    # the notebook's path (load_model's fallback, whatever magnitudes it gives the stand-in): the two identities
    model, tok = loaded
    fmt = chat.chat_format("sst2")
    close(
        chat.score_chat(model, tok, DEMOS, INPUTS, fmt),
        chat.score_chat(model, tok, DEMOS, INPUTS, fmt, cached=False),
        what="cached vs naive (load_chat_model)",
    )
    clf = chat.chat_classifier(copy.deepcopy(model), tok, fmt, make_prompt(model, tok, 4, "vocab", seed=0))
    pairs = chat.compare_with_peft(clf, INPUTS)
    close(*pairs["logits"], what="logits vs PEFT (load_chat_model)")
    close(*pairs["gradient"], rtol=GRAD_RTOL, what="gradient vs PEFT (load_chat_model)")


def test_paired_verdict_ranks_only_what_the_test_decides():
    from pt_helpers import stats

    n = 40
    a = [True] * n  # A right everywhere
    b = [True] * 10 + [False] * 30  # B wrong on 30: 30 discordant, all A's → p ≈ 2e-9
    decided = chat.paired_verdict("A", "B", stats.paired_test(a, b))
    assert decided.endswith("→ A higher (p < 0.05)"), decided
    assert chat.paired_verdict("B", "A", stats.paired_test(b, a)).endswith("→ A higher (p < 0.05)")
    # 3 discordant of 40, all A's: p = 0.25 — too few to rank, and the sentence says so with n
    close_b = [True] * 37 + [False] * 3
    undecided = chat.paired_verdict("A", "B", stats.paired_test(a, close_b))
    assert "cannot rank" in undecided and "n = 40" in undecided and "higher" not in undecided
    smoke = chat.paired_verdict("A", "B", stats.paired_test(a, b, smoke=True))
    assert stats.PROTOCOL_CHECK in smoke and "higher" not in smoke  # a smoke budget ranks nothing
    same = chat.paired_verdict("A", "B", stats.paired_test(a, a))
    assert "degenerate" in same and "higher" not in same
    with pytest.raises(CourseError, match="stats.paired_test"):
        chat.paired_verdict("A", "B", 0.03)


@pytest.mark.parametrize("family", ["llama", "gemma2"])  # gemma2: its embedding layer scales rows by √d
def test_user_turn_prompt_saves_and_loads(chat_stand_in, family, tmp_path):
    """A user-turn soft prompt round-trips through pt_helpers.checkpoint: the loaded adapter has the same anchor
    ids, the same virtual embeddings (anchor recomputed from the model's embedding layer + the stored P) and
    gives the same class logits on the same inputs. Tolerance 0: P is stored in float32 without loss and the
    anchor is recomputed by the same embedding lookup on the same weights, so the same CPU computation follows;
    a wrong anchor or a dropped √d scale would change the embeddings by ~1."""
    from pt_helpers.checkpoint import load_prompt, save_prompt

    model, tok = chat_stand_in(family)
    clf = chat.chat_classifier(
        copy.deepcopy(model), tok, chat.chat_format("sst2"), make_prompt(model, tok, 3, "random", seed=4),
        placement="user_turn",
    )  # fmt: skip
    with torch.no_grad():
        clf.adapter.prompt.weight.add_(0.1 * torch.randn(clf.adapter.prompt.weight.shape))  # as if trained
    folder = save_prompt(clf.adapter, tmp_path / "user_turn", clf.model, tok)
    loaded = load_prompt(folder, clf.model, tok)
    assert isinstance(loaded, chat.UserTurnSoftPrompt) and loaded.anchor_ids == clf.adapter.anchor_ids
    assert_close(loaded.virtual_embeddings(2), clf.adapter.virtual_embeddings(2), rtol=0, atol=0)
    twin = chat.ChatPromptClassifier(clf.model, tok, clf.head, loaded)
    with torch.no_grad():
        assert_close(twin(*twin.tokenize(INPUTS)), clf(*clf.tokenize(INPUTS)), rtol=0, atol=0)


def test_a_saved_user_turn_prompt_loads_before_its_module_is_imported(chat_stand_in, tmp_path, monkeypatch):
    """load_prompt imports the course module named in the config (``adapter_module``) when the method is not
    registered yet, as in a fresh process that never imported pt_helpers.chat; a module outside pt_helpers
    is never imported, and the error then names the method."""
    import sys

    import pt_helpers
    from pt_helpers.adapters import ADAPTERS
    from pt_helpers.checkpoint import CONFIG_FILE, load_prompt, save_prompt
    from pt_helpers.errors import CheckpointError

    model, tok = chat_stand_in("llama")
    clf = chat.chat_classifier(model, tok, chat.chat_format("sst2"), make_prompt(model, tok, 3, "random", seed=4),
                               placement="user_turn")  # fmt: skip
    folder = save_prompt(clf.adapter, tmp_path / "user_turn", clf.model, tok)
    monkeypatch.delitem(ADAPTERS, "chat_user_turn")  # as if pt_helpers.chat had never been imported
    monkeypatch.delitem(sys.modules, "pt_helpers.chat")
    monkeypatch.setattr(pt_helpers, "chat", pt_helpers.chat)  # the re-import rebinds it; restored after the test
    loaded = load_prompt(folder, clf.model, tok)
    assert type(loaded).method == "chat_user_turn" and loaded.anchor_ids == clf.adapter.anchor_ids
    config = json.loads((folder / CONFIG_FILE).read_text())
    config["adapter_module"] = "os.path"  # never imported: not a course module
    (folder / CONFIG_FILE).write_text(json.dumps(config))
    monkeypatch.delitem(ADAPTERS, "chat_user_turn")
    with pytest.raises(CheckpointError, match="unknown prompt method 'chat_user_turn'"):
        load_prompt(folder, clf.model, tok)


def test_user_turn_checkpoint_without_anchor_ids_is_a_clear_error(chat_stand_in):
    model, _ = chat_stand_in("llama")
    weight = {"prompt": torch.zeros(2, model.get_input_embeddings().embedding_dim)}
    with pytest.raises(CourseError, match="anchor_ids"):
        chat.UserTurnSoftPrompt.from_saved(model, weight, {})
