"""Checkers for the exercises of notebook 04 (discrete prompts: templates, verbalisers, cloze, search)."""

from __future__ import annotations

import numpy as np

from ..prompts import Template, TemplateError, cloze_word_scores
from . import Feedback, close, correct, wrong


def check_1(template) -> Feedback:
    """Exercise 1: a causal-LM template for RTE with {premise}, {hypothesis} and the answer slot at the end."""
    if isinstance(template, str):
        try:
            template = Template(template)
        except TemplateError as exc:
            return wrong(f"that pattern is not a valid template: {exc}")
    if not isinstance(template, Template):
        return wrong("give a Template (or its pattern string), e.g. Template('{premise} … {hypothesis} … {mask}').")
    try:
        template.check_task("rte")
    except TemplateError as exc:
        return wrong(str(exc))
    before, after = template.split({"premise": "\x01", "hypothesis": "\x02"})
    if not template.has_mask:
        return correct("valid; the answer goes at the end. Adding an explicit {mask} makes the slot visible.")
    if after.strip():
        return wrong(
            f"there is text after {{mask}} ({after!r}): a causal LM reads left to right and cannot use it "
            "to predict the answer — move {mask} to the end."
        )
    if before.index("\x01") > before.index("\x02"):
        return correct("valid — note that you put the hypothesis before the premise; try both orders in the grid.")
    return correct("a valid RTE template: both fields once, the answer slot last.")


def check_2(answer, model, tokenizer, template: Template, example: dict, word: str) -> Feedback:
    """Exercise 2: the PET cloze score of a multi-token word, computed by hand (one [MASK] per token, parallel)."""
    try:
        value = float(answer)
    except (TypeError, ValueError):
        return wrong("give one number: the sum over the word's tokens of log P(token_j at mask j).")
    if value > 0:
        return wrong("a log-probability is never positive.")
    expected = cloze_word_scores(model, tokenizer, template, [word], [example])[0, 0].item()
    first_only = _first_token_only(model, tokenizer, template, example, word)
    # your float32 forward pass (one example, no padding) differs from the batched scorer by ~1e-5 per token;
    # allow 1e-3 plus 1e-4 of |score| (a sum over k tokens); a missing token or the mean is off by ≥ 0.1
    tol = 1e-3 + 1e-4 * abs(expected)
    if abs(value - first_only) < tol and abs(expected - first_only) > tol:
        return wrong(
            "that is the first token's log-prob only: a word of k tokens needs k [MASK] tokens, "
            "and its score sums over all of them."
        )
    n_tokens = len(tokenizer(word, add_special_tokens=False)["input_ids"])
    if abs(value * n_tokens - expected) < tol and n_tokens > 1:
        return wrong("that is the mean over tokens; the exercise asks for the sum (reduction='sum').")
    return close(value, expected, atol=tol, what="your cloze score")


def _first_token_only(model, tokenizer, template, example, word) -> float:
    import torch

    first = tokenizer(word, add_special_tokens=False)["input_ids"][0]
    enc = tokenizer(template.format(example, tokenizer.mask_token), return_tensors="pt").to(model.device)
    with torch.no_grad():
        lp = model(**enc).logits.log_softmax(-1)[0].cpu()
    pos = (enc["input_ids"][0] == tokenizer.mask_token_id).nonzero().flatten()[0].item()
    return lp[pos, first].item()


def check_3(answer, grid) -> Feedback:
    """Exercise 3: (best template, best verbaliser, spread) from a prompt-grid DataFrame."""
    if not isinstance(answer, (tuple, list)) or len(answer) != 3:
        return wrong("give a tuple (best_template_name, best_verbaliser_name, spread).")
    t, v, s = answer
    values = np.asarray(grid, dtype=float)
    best = float(np.nanmax(values))
    if t not in grid.index or v not in grid.columns:
        return wrong("the names must be a row label (template) and a column label (verbaliser) of the grid.")
    if float(grid.loc[t, v]) != best:
        return wrong(
            f"the cell ({t!r}, {v!r}) has accuracy {float(grid.loc[t, v]):.3f}, but the best cell has "
            f"{best:.3f}: use the arg-max over the whole grid (grid.stack().idxmax())."
        )
    # accuracies k/n ≤ 1: distinct spreads differ by ≥ 1/n ≥ 1e-4; 1e-6 still accepts a float32 computation
    fb = close(s, best - float(np.nanmin(values)), atol=1e-6, what="your spread")
    if not fb:
        return wrong(fb.message + " The spread is the best minus the worst cell of the grid.")
    return correct("the best cell and the best–worst spread: the wording of a prompt is a hyper-parameter.")


def expected_noise_range(n_cells: int = 21) -> float:
    """E[max − min] of ``n_cells`` independent standard normal variables, in standard deviations.

    E[R] = ∫ (1 − Φ(x)^k − (1 − Φ(x))^k) dx (the range of k draws; about 3.78 for k = 21), by numerical
    integration with scipy. With accuracies on n examples, one standard deviation is one standard error.
    """
    from scipy import integrate
    from scipy.stats import norm

    k = int(n_cells)
    value, _ = integrate.quad(lambda x: 1 - norm.cdf(x) ** k - norm.sf(x) ** k, -np.inf, np.inf)
    return float(value)


def check_4(prediction, n_cells: int = 21) -> Feedback:
    """Exercise 4 (predict, then run): the expected best − worst spread of ``n_cells`` equally good prompts,
    in standard errors of one accuracy — noise alone, before any prompt is better than another."""
    try:
        value = float(prediction)
    except (TypeError, ValueError):
        return wrong("give one number: the expected spread in units of one accuracy's standard error.")
    expected = expected_noise_range(n_cells)
    # the simulation at n = 40 is binomial, not normal: its mean range differs from the normal one by ~0.1 SE;
    # ±0.5 SE accepts a reasoned guess and rejects the "1 or 2 standard errors" intuition
    if abs(value - expected) <= 0.5:
        return correct(
            f"the range of {n_cells} noisy estimates is about {expected:.2f} standard errors by chance alone: "
            "a spread is evidence only when it beats that (spread_test) or survives a held-out split."
        )
    if value < expected:
        return wrong(
            f"too small: one or two standard errors is the noise of ONE accuracy, but the best and the worst of "
            f"{n_cells} are the two extremes of {n_cells} draws. Run the simulation and compare."
        )
    return wrong(f"too large: the extremes of {n_cells} normal draws sit about ±{expected / 2:.1f} σ from the mean.")
