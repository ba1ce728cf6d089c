"""Chapter 10's instruction tuning (pt_helpers.instruct) on the real SmolLM2-135M-Instruct and its own template:
the mixture, the assistant-only loss mask and its check, the SFT objective = transformers' loss, a tiny LoRA SFT
that leaves the base bit-identical, held-out zero-shot = the SFT objective's reply probability, DPO two ways.

Mechanics and identities only: no accuracy is asserted here (the experiment's numbers are reported, not tested).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _helpers import RTOL, close
from _smollm2 import needs_smollm2, smollm2
from torch.testing import assert_close

from pt_helpers import data, instruct
from pt_helpers.errors import CourseError, TrainConfigError, UnknownTaskError

pytestmark = needs_smollm2


@pytest.fixture(scope="module")
def tok():
    return smollm2().tokenizer


@pytest.fixture(scope="module")
def model():
    return smollm2().model


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


# A two-exchange conversation with a system turn: two replies to learn, and user/system tokens around them.
MULTI = [
    {"role": "system", "content": "You classify texts."},
    user("Review: dull\nSentiment?"),
    assistant("negative"),
    user("Review: great fun\nSentiment?"),
    assistant("positive"),
]


def labelled_runs(labels_row):
    """The contiguous runs of positions whose label is not -100, as lists of positions."""
    runs, current = [], []
    for p, label in enumerate(labels_row.tolist()):
        if label != instruct.IGNORE_INDEX:
            current.append(p)
        elif current:
            runs.append(current)
            current = []
    return runs + ([current] if current else [])


# ---------------------------------------------------------------------------------------------------
# The mixture
# ---------------------------------------------------------------------------------------------------


def test_mixture_is_flan_style_seeded_and_balanced(tok):
    mix = instruct.build_mixture(tok, ("sst2", "ag_news", "trec"), n_per_task=6, seed=0)
    assert mix == instruct.build_mixture(tok, ("sst2", "agnews", "trec"), n_per_task=6, seed=0)  # "ag_news" alias
    assert mix != instruct.build_mixture(tok, ("sst2", "agnews", "trec"), n_per_task=6, seed=1)
    per_task = {t: 0 for t in instruct.MIXTURE_TASKS}
    phrasings = {t: set() for t in instruct.MIXTURE_TASKS}
    for conv in mix:
        assert [t["role"] for t in conv] == ["user", "assistant"]
        # the three tasks' label words are disjoint, so the answer names the task
        (task,) = [t for t in instruct.MIXTURE_TASKS if conv[1]["content"] in data.task_info(t).label_words]
        per_task[task] += 1
        assert ", ".join(data.task_info(task).label_words) in conv[0]["content"]  # the options are listed
        matches = [
            i
            for i, p in enumerate(instruct.PHRASINGS[task])
            if all(piece in conv[0]["content"] for piece in p.replace("{options}", "{text}").split("{text}"))
        ]
        assert matches, conv[0]["content"]
        phrasings[task].add(matches[0])
    assert per_task == {t: 6 for t in instruct.MIXTURE_TASKS}
    assert all(len(p) >= 2 for p in phrasings.values()), phrasings  # several phrasings drawn per task
    with_system = instruct.build_mixture(tok, ("trec",), n_per_task=2, seed=0, system="Answer with one word.")
    assert [t["role"] for t in with_system[0]] == ["system", "user", "assistant"]


# ---------------------------------------------------------------------------------------------------
# The mask
# ---------------------------------------------------------------------------------------------------


def test_mask_labels_exactly_each_reply_and_its_end_of_turn(tok):
    mix = instruct.build_mixture(tok, n_per_task=3, seed=0)
    conversations = [*mix, MULTI]
    batch = instruct.encode_sft(tok, conversations, max_length=256)
    end = tok.convert_tokens_to_ids("<|im_end|>")  # SmolLM2's end of turn (a fact of this tokenizer)
    assert instruct.reply_end(tok) == "<|im_end|>"
    for r, conv in enumerate(conversations):
        ids, labels = batch["input_ids"][r], batch["labels"][r]
        runs = labelled_runs(labels)
        replies = [t["content"] for t in conv if t["role"] == "assistant"]
        assert len(runs) == len(replies)
        for run, reply in zip(runs, replies):
            # every token of the answer, then the end of turn, and nothing else
            assert ids[run].tolist() == tok(reply, add_special_tokens=False)["input_ids"] + [end]
            assert labels[run].tolist() == ids[run].tolist()  # labels are the tokens, unshifted
            # the template's newline after the end of turn is glue, never generated: no loss
            assert tok.convert_ids_to_tokens(ids[run[-1] + 1 : run[-1] + 2].tolist()) == ["Ċ"]
        n_labelled = int((labels != instruct.IGNORE_INDEX).sum())
        assert n_labelled == sum(len(tok(x, add_special_tokens=False)["input_ids"]) + 1 for x in replies)
    assert ((batch["labels"] != -100) <= (batch["attention_mask"] == 1)).all()  # padding never carries loss
    instruct.check_assistant_only_loss(tok, batch)  # the independent check agrees


def test_encode_shapes_start_token_and_padding(tok):
    convs = [[user("hi"), assistant("positive")], MULTI, [user("Question: Who?\nType?"), assistant("person")]]
    batch = instruct.encode_sft(tok, convs, max_length=200)
    lengths = [len(tok.apply_chat_template(c, tokenize=False)) for c in convs]  # only to name the longest
    width = batch["input_ids"].shape[1]
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert all(v.shape == (3, width) and v.dtype == torch.long for v in batch.values())
    assert int(batch["attention_mask"].sum(1).max()) == width  # padded to the longest, not to max_length
    assert int(batch["attention_mask"].sum(1).argmax()) == int(np.argmax(lengths))
    start = tok.convert_tokens_to_ids("<|endoftext|>")  # the course's start token for SmolLM2 (lm.bos_token_id)
    assert (batch["input_ids"][:, 0] == start).all() and (batch["labels"][:, 0] == -100).all()
    for r, c in enumerate(convs):  # after the start token, exactly the template's ids, then right padding
        n = int(batch["attention_mask"][r].sum())
        assert batch["attention_mask"][r, :n].all() and not batch["attention_mask"][r, n:].any()
        template = tok(tok.apply_chat_template(c, tokenize=False), add_special_tokens=False)["input_ids"]
        assert batch["input_ids"][r, 1:n].tolist() == template


def test_objective_is_transformers_masked_loss(tok, model):
    """SFTObjective's cross-entropy with class 0 = the reply's summed NLL = transformers' loss on the labels × the
    number of labelled tokens (it averages over them), divided by the number of conversations."""
    convs = instruct.build_mixture(tok, n_per_task=2, seed=3)
    objective = instruct.SFTObjective(model, tok)
    ids, roles = objective.tokenize([json.dumps(c) for c in convs])
    batch = instruct.encode_sft(tok, convs)
    assert torch.equal(ids, batch["input_ids"]) and torch.equal(roles, batch["attention_mask"] + (batch["labels"] >= 0))
    with torch.no_grad():
        logits = objective(ids, roles)
        ours = F.cross_entropy(logits, torch.zeros(len(convs), dtype=torch.long))
        ref = model(**batch).loss * (batch["labels"] != -100).sum() / len(convs)
        per_row = objective.reply_logprob(ids, roles)
    close(ours, ref, what="SFT objective vs transformers' loss")
    close(torch.logsumexp(logits, -1), torch.zeros(len(convs)), what="the two logits' normaliser is 0")
    close(ours, -per_row.mean(), what="cross-entropy with class 0 = − mean reply log-probability")


# ---------------------------------------------------------------------------------------------------
# The check catches broken masks
# ---------------------------------------------------------------------------------------------------


def test_check_names_the_position_of_a_broken_mask(tok):
    good = instruct.encode_sft(tok, [MULTI, [user("Review: ok\nSentiment?"), assistant("positive")]])
    instruct.check_assistant_only_loss(tok, good)

    def broken(row, pos, label=None):
        bad = {k: v.clone() for k, v in good.items()}
        bad["labels"][row, pos] = bad["input_ids"][row, pos] if label is None else label
        return bad

    ids = good["input_ids"][0].tolist()
    tokens = tok.convert_ids_to_tokens(ids)
    system_pos = tokens.index("Ġclassify")  # inside the system turn's content
    user_pos = tokens.index("Ġdull")  # inside the first user turn
    for pos, part in ((system_pos, "system turn"), (user_pos, "user turn"), (1, "system header")):
        with pytest.raises(CourseError, match=rf"row 0, position {pos} .* lies in the {part}"):
            instruct.check_assistant_only_loss(tok, broken(0, pos))
    # the mask shifted one token right: the reply's first token unlabelled, the newline after the end labelled
    (first, *_), *_ = labelled_runs(good["labels"][0])
    shifted = {k: v.clone() for k, v in good.items()}
    shifted["labels"][0, first] = -100
    end_of_first = labelled_runs(good["labels"][0])[0][-1]
    shifted["labels"][0, end_of_first + 1] = shifted["input_ids"][0, end_of_first + 1]
    with pytest.raises(CourseError, match=rf"position {end_of_first + 1} .* lies in the template"):
        instruct.check_assistant_only_loss(tok, shifted)
    pad_pos = int(good["attention_mask"][1].sum())  # row 1 is the shorter: padding follows
    with pytest.raises(CourseError, match=rf"row 1, position {pad_pos} .* lies in the padding"):
        instruct.check_assistant_only_loss(tok, broken(1, pad_pos))
    with pytest.raises(CourseError, match=rf"position {first}: label 7 is not the token there"):
        instruct.check_assistant_only_loss(tok, broken(0, first, label=7))
    with pytest.raises(CourseError, match="batch has no 'labels'"):
        instruct.check_assistant_only_loss(tok, {"input_ids": good["input_ids"]})


# ---------------------------------------------------------------------------------------------------
# Bad inputs: clear errors naming the input and the fix
# ---------------------------------------------------------------------------------------------------


def test_bad_conversations_and_tasks_get_clear_errors(tok, model):
    ok = [user("hi"), assistant("positive")]
    with pytest.raises(CourseError, match=r"conversations\[1\] is empty"):
        instruct.encode_sft(tok, [ok, []])
    with pytest.raises(CourseError, match=r"conversations\[0\] has no assistant turn .* append"):
        instruct.encode_sft(tok, [[user("hi")]])
    with pytest.raises(CourseError, match=r"conversations\[0\]\[0\]: an assistant turn must follow a user turn"):
        instruct.encode_sft(tok, [[assistant("positive")]])
    with pytest.raises(CourseError, match=r"conversations\[0\]\[1\] has role 'bot'"):
        instruct.encode_sft(tok, [[user("hi"), {"role": "bot", "content": "x"}]])
    with pytest.raises(CourseError, match=r"conversations\[0\]\[1\]: the assistant's reply is empty"):
        instruct.encode_sft(tok, [[user("hi"), assistant(" ")]])
    with pytest.raises(CourseError, match=r"conversations\[0\] is \d+ tokens, longer than max_length=8"):
        instruct.encode_sft(tok, [ok], max_length=8)
    with pytest.raises(CourseError, match="non-empty list of conversations"):
        instruct.encode_sft(tok, ok[0])
    with pytest.raises(UnknownTaskError, match=r"unknown mixture task 'imdb'; valid: sst2, agnews, trec"):
        instruct.build_mixture(tok, ("sst2", "imdb"), n_per_task=2, seed=0)
    with pytest.raises(UnknownTaskError, match=r"'rte' is a course task, but not one of these"):
        instruct.build_mixture(tok, ("rte",), n_per_task=2, seed=0)
    with pytest.raises(UnknownTaskError, match="non-empty list of task names"):
        instruct.build_mixture(tok, "sst2", n_per_task=2, seed=0)
    with pytest.raises(CourseError, match="n_per_task=9000 but trec's training split has"):
        instruct.build_mixture(tok, ("trec",), n_per_task=9000, seed=0)
    with pytest.raises(UnknownTaskError, match="unknown held-out task 'sst2'; valid: rte, cb"):
        instruct.held_out_zero_shot(model, tok, "sst2", 4, 0)
    with pytest.raises(CourseError, match="n=1000 but cb's dev split has 56 examples"):
        instruct.held_out_examples("cb", 1000, 0)
    with pytest.raises(TrainConfigError, match="select_size=8 leaves nothing to train on out of 6"):
        instruct.sft_lora(model, tok, instruct.build_mixture(tok, ("sst2",), 6, 0), max_steps=1, lr=1e-3,
                          lora_rank=2, seed=0, select_size=8)  # fmt: skip
    with pytest.raises(TrainConfigError, match="max_steps must be a positive integer"):
        instruct.sft_lora(model, tok, instruct.build_mixture(tok, ("sst2",), 12, 0), max_steps=0, lr=1e-3,
                          lora_rank=2, seed=0)  # fmt: skip


def test_lora_needs_the_query_and_value_projections(random_gpt2):
    with pytest.raises(CourseError, match=r"no linear layers named \['q_proj', 'v_proj'\]"):
        instruct.inject_lora(random_gpt2.model, 4)  # GPT-2's attention is one Conv1D, c_attn


# ---------------------------------------------------------------------------------------------------
# A tiny LoRA SFT run
# ---------------------------------------------------------------------------------------------------


def test_tiny_sft_lora_trains_only_lora_and_leaves_the_base_bit_identical(tok, model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    mix = instruct.build_mixture(tok, n_per_task=4, seed=0)
    tuned, result = instruct.sft_lora(
        model, tok, mix, max_steps=2, lr=1e-2, lora_rank=2, seed=0, batch_size=4, select_size=4
    )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the caller's model untouched
    lora = {k: v for k, v in tuned.state_dict().items() if ".lora_" in k}
    base = {k.replace(".base_layer", ""): v for k, v in tuned.state_dict().items() if ".lora_" not in k}
    assert base.keys() == before.keys()
    assert all(torch.equal(before[k], v) for k, v in base.items())  # every base weight bit-identical
    n_layers = model.config.num_hidden_layers
    assert len(lora) == n_layers * 2 * 2  # A and B on q_proj and v_proj of every layer
    trainable = {n for n, p in tuned.named_parameters() if p.requires_grad}
    assert trainable == set(lora) and result.n_trainable == sum(v.numel() for v in lora.values())
    assert any(v.abs().max() > 0 for k, v in lora.items() if "lora_B" in k)  # B starts at 0: it was trained
    assert (
        result.steps_run == 2 and len(result.history["loss"]) == 2 and all(map(math.isfinite, result.history["loss"]))
    )
    from pt_helpers.comparison import merge_lora

    merged = merge_lora(tuned)  # the update folded in: the query weights now differ from the base's
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged.state_dict()[q], before[q])


# ---------------------------------------------------------------------------------------------------
# Held-out zero-shot
# ---------------------------------------------------------------------------------------------------


def test_held_out_score_is_the_sft_objectives_reply_probability(tok, model):
    """The zero-shot score of answer c = log P(reply c + end of turn | user turn), the very quantity SFT trains:
    the cached scorer through the template equals SFTObjective on the conversation that ends with that reply."""
    turns, labels, words = instruct.held_out_examples("rte", 3, seed=1)
    assert words == ("entailment", "not entailment")  # the data's label names, as words
    again, labels_again, _ = instruct.held_out_examples("rte", 3, seed=1)  # the same examples before and after
    assert again == turns and labels_again.tolist() == labels.tolist()
    assert all("Answer with one of: entailment, not entailment." in t for t in turns)
    scores, labels2 = instruct.held_out_scores(model, tok, "rte", 3, seed=1)
    assert np.array_equal(labels, labels2) and scores.shape == (3, 2)
    objective = instruct.SFTObjective(model, tok)
    convs = [[user(t), assistant(w)] for t in turns for w in words]
    with torch.no_grad():
        direct = objective.reply_logprob(*objective.tokenize([json.dumps(c) for c in convs])).view(3, 2)
    close(scores, direct, rtol=RTOL, what="cached chat scorer vs SFT objective")
    correct = instruct.held_out_zero_shot(model, tok, "rte", 3, seed=1)
    assert correct.tolist() == (scores.argmax(-1).numpy() == labels).astype(int).tolist()


# ---------------------------------------------------------------------------------------------------
# DPO two ways
# ---------------------------------------------------------------------------------------------------


def test_dpo_two_ways_agree_with_each_other_by_hand_and_with_trl():
    # by hand: margin = (−1 − (−1.5)) − (−2 − (−1.5)) = 1, β = 0.5: loss = −log σ(0.5) = log(1 + e^−0.5)
    a, b = instruct.dpo_loss_two_ways(torch.tensor([-1.0]), torch.tensor([-2.0]), torch.tensor([-1.5]),
                                      torch.tensor([-1.5]), beta=0.5)  # fmt: skip
    hand = math.log1p(math.exp(-0.5))  # 0.4740769841801067
    assert_close(a, torch.tensor([hand]), rtol=1e-6, atol=1e-7)  # float32 numbers of size ~0.5
    assert_close(b, torch.tensor([hand]), rtol=1e-6, atol=1e-7)
    gen = torch.Generator().manual_seed(0)
    logps = [(-30 * torch.rand(64, generator=gen, dtype=torch.float64)).requires_grad_() for _ in range(4)]
    for beta in (0.1, 0.5, 2.0):
        x, y = instruct.dpo_loss_two_ways(*logps, beta=beta)
        # float64, summed log-probabilities of size ≤ 30: the two computations differ by round-off only
        assert_close(x, y, rtol=1e-12, atol=1e-12)
        grads_x = torch.autograd.grad(x.sum(), logps)
        grads_y = torch.autograd.grad(y.sum(), logps)
        for gx, gy in zip(grads_x, grads_y):
            assert_close(gx, gy, rtol=1e-12, atol=1e-12)
        # TRL's DPOTrainer.dpo_loss (huggingface/trl, trl/trainer/dpo_trainer.py at commit 9d58faa7), retyped:
        # logits = pi_logratios − ref_logratios; losses = −logsigmoid(β · logits)
        pc, pr, rc, rr = logps
        trl = -F.logsigmoid(beta * ((pc - pr) - (rc - rr)))
        assert_close(x, trl, rtol=1e-12, atol=1e-12)
    # far from 0: no overflow in either form
    big = instruct.dpo_loss_two_ways(torch.tensor([0.0]), torch.tensor([-5000.0]), torch.tensor([-5000.0]),
                                     torch.tensor([0.0]), beta=1.0)  # fmt: skip
    assert all(torch.isfinite(v).all() and v.item() < 1e-30 for v in big)
    worst = instruct.dpo_loss_two_ways(torch.tensor([-5000.0]), torch.tensor([0.0]), torch.tensor([0.0]),
                                       torch.tensor([-5000.0]), beta=1.0)  # fmt: skip
    for v in worst:  # margin −10 000: the loss is 10 000 (float32 holds it to ~1e-3)
        assert_close(v, torch.tensor([10000.0]), rtol=1e-6, atol=0.0)
    with pytest.raises(CourseError, match="beta must be a number > 0"):
        instruct.dpo_loss_two_ways(*logps, beta=0)
    with pytest.raises(CourseError, match=r"ref_rejected_logps must be finite float .* shape \(3,\)"):
        instruct.dpo_loss_two_ways(*logps[:3], torch.zeros(3), beta=0.1)


def test_mask_and_check_follow_another_template():
    """The spans and the check are read from the template, not written for SmolLM2's: on the stand-in's ChatML
    template (no default system turn, GPT-2's tokenizer with the markers added) the same rules hold."""
    from pt_helpers import chat

    stand_in = chat.load_chat_model("gpt2", verbose=False).tokenizer
    convs = [[user("u"), assistant("positive")], MULTI]
    batch = instruct.encode_sft(stand_in, convs)
    instruct.check_assistant_only_loss(stand_in, batch)
    end = stand_in.convert_tokens_to_ids("<|im_end|>")
    for r, conv in enumerate(convs):
        runs = labelled_runs(batch["labels"][r])
        replies = [t["content"] for t in conv if t["role"] == "assistant"]
        assert [batch["input_ids"][r, run].tolist() for run in runs] == [
            stand_in(x, add_special_tokens=False)["input_ids"] + [end] for x in replies
        ]
    bad = {k: v.clone() for k, v in batch.items()}
    bad["labels"][0, 3] = bad["input_ids"][0, 3]  # start, <|im_start|>, "user", ⏎: the user header's newline
    with pytest.raises(CourseError, match="row 0, position 3 .* lies in the user header"):
        instruct.check_assistant_only_loss(stand_in, bad)
