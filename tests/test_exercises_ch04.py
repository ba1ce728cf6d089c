"""The checkers of notebook 04 accept the reference solutions and reject typical wrong answers."""

import pandas as pd
import torch

from pt_helpers.exercises import ch04
from pt_helpers.prompts import Template


def test_check_1_rte_template():
    assert ch04.check_1(Template("{premise}\nQuestion: {hypothesis} True or False?\nAnswer: {mask}"))
    assert ch04.check_1("{premise} {hypothesis} {mask}")
    assert not ch04.check_1("{text} {mask}")  # wrong fields for RTE
    assert not ch04.check_1("{premise} {mask}. {hypothesis}")  # answer slot not last
    assert not ch04.check_1("{premise} {premise} {hypothesis}")  # invalid pattern
    assert not ch04.check_1(42)


def test_check_2_cloze_by_hand(random_bert_mlm):
    model, tok = random_bert_mlm
    t, ex, word = Template("{text} It was {mask}."), {"text": "a fine film"}, "unwatchable"
    w = tok(word, add_special_tokens=False)["input_ids"]
    enc = tok(t.format(ex, " ".join([tok.mask_token] * len(w))), return_tensors="pt")
    with torch.no_grad():
        lp = model(**enc).logits.log_softmax(-1)[0]
    pos = (enc["input_ids"][0] == tok.mask_token_id).nonzero().flatten()
    reference = sum(lp[p, i].item() for p, i in zip(pos, w))
    assert ch04.check_2(reference, model, tok, t, ex, word)
    assert not ch04.check_2(lp[pos[0], w[0]].item(), model, tok, t, ex, word)  # first token only
    assert not ch04.check_2(reference / len(w), model, tok, t, ex, word)  # mean, not sum
    assert not ch04.check_2("x", model, tok, t, ex, word)
    assert not ch04.check_2(1.0, model, tok, t, ex, word)


def test_check_3_best_cell_and_spread():
    grid = pd.DataFrame([[0.5, 0.7], [0.6, 0.4]], index=["t1", "t2"], columns=["v1", "v2"])
    assert ch04.check_3(("t1", "v2", 0.3), grid)
    assert not ch04.check_3(("t2", "v1", 0.3), grid)  # not the best cell
    assert not ch04.check_3(("t1", "v2", 0.2), grid)  # wrong spread
    assert not ch04.check_3(("t1", "v9", 0.3), grid)
    assert not ch04.check_3("t1", grid)


def test_expected_noise_range_matches_simulation():
    import numpy as np

    rng = np.random.default_rng(0)
    simulated = np.ptp(rng.standard_normal((20_000, 21)), axis=1).mean()
    assert abs(ch04.expected_noise_range(21) - simulated) < 0.03  # 20,000 ranges: standard error ≈ 0.005
    assert abs(ch04.expected_noise_range(2) - 2 / np.sqrt(np.pi)) < 1e-6  # E|X − Y| = 2/√π for k = 2


def test_check_4_predicted_noise_spread():
    assert ch04.check_4(3.8)
    assert ch04.check_4(ch04.expected_noise_range(21))
    assert not ch04.check_4(1.0)  # "one standard error"
    assert not ch04.check_4(2.0)
    assert not ch04.check_4(8.0)
    assert not ch04.check_4("about four")
    assert ch04.check_4(2.0, n_cells=3)  # E[range of 3] ≈ 1.69
