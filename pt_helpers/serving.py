"""One frozen model, many tasks: mixed-task batches, prompt ensembles, prompt transfer, prompt readings.

Taught in chapter 08. Because prompt tuning never changes the model, one copy of the frozen weights can serve
every task at once (Lester, Al-Rfou & Constant 2021, §2 and Fig. 2): each row of a batch reads its own task's
prompt. Here that is one more adapter of the course's protocol, ``MixedPrompts``: its
``virtual_embeddings(B)`` stacks, row by row, the prompt of the task that row belongs to, and the one engine
``adapters.PromptedModel`` runs it (encoders: concatenated before ``[CLS]``; causal LMs: the K prompts run once
as a batch-K cache and each row attends to its own task's cached prompt, ``share_prompt_cache=False``
concatenates per row as PEFT does).

    MixedPrompts(adapters)                       per-row prompts; ``rows`` says which row reads which
    MultiTaskServer({task: PromptClassifier})    ``logits``/``predict`` on a mixed batch of (text, task)
    tensor_bytes, adapter_bytes, model_bytes     what is stored per task: a prompt vs a copy of the model
    time_serving(server, texts, tasks)           examples per second, mixed vs one task per batch
    ensemble_logits(server, texts), vote         Lester et al. §6: k prompts of one task in one batch
    prompt_from(adapter)                         a soft prompt initialised from another prompt's P (SPoT)
    reading(weight, model, tokenizer), reading_match, pull_toward_text   what a prompt "says" (waywardness)
    truncated_encoder(model, n_layers)           the encoder cut to its first layers (depth experiment)
    live_scale_curve(names, data, ...)           a soft prompt on real causal LMs of growing size (GPU + hub)
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .adapters import PromptAdapter, PromptedModel, PromptedOutput
from .classifiers import PromptClassifier, autocast_for
from .errors import CourseError, ModelNotFoundError, PromptError, PromptShapeError
from .frozen import cache_layers, input_embeddings
from .soft_prompt import SoftPrompt


class MixedPrompts(PromptAdapter):
    """K input-layer prompts of the same length; row b of a batch reads prompt ``rows[b]``.

    Not registered (it is a serving arrangement, not a saved format): save each task's own adapter.
    """

    method = "mixed"

    def __init__(self, adapters: Sequence[PromptAdapter]):
        super().__init__()
        adapters = list(adapters)
        if not adapters:
            raise PromptError("MixedPrompts needs at least one prompt adapter")
        for a in adapters:
            if not isinstance(a, PromptAdapter) or a.virtual_embeddings(1) is None:
                raise PromptError(
                    f"{type(a).__name__} is not an input-layer prompt: a mixed batch gives each row its own "
                    "input vectors (soft prompt, P-tuning); deep prompts live in a shared key/value cache"
                )
        shapes = {tuple(a.virtual_embeddings(1).shape[1:]) for a in adapters}
        if len(shapes) != 1:
            raise PromptShapeError(
                f"the prompts have different shapes (n, d) {sorted(shapes)}: one mixed batch needs prompts of the "
                "same length; train them with the same n_virtual_tokens"
            )
        self.prompts = nn.ModuleList(adapters)
        self.rows: torch.Tensor | None = None
        self.cached: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # K prompts' keys/values (serving)

    @property
    def n_virtual_tokens(self) -> int:
        return self.prompts[0].n_virtual_tokens

    def table(self) -> torch.Tensor:
        """Every prompt: (K, n, d)."""
        return torch.cat([p.virtual_embeddings(1) for p in self.prompts])

    def virtual_embeddings(self, batch_size: int = 1) -> torch.Tensor:
        # [mixed-rows]
        if self.rows is None:
            raise PromptError("set .rows (which prompt each row reads) before running a mixed batch")
        if batch_size == 1 and len(self.rows) > 1:  # the engine asks for batch 1 only to learn the adapter's form
            return self.table()[self.rows[:1]]
        if batch_size != len(self.rows):
            raise PromptShapeError(f"the batch has {batch_size} rows but {len(self.rows)} prompt choices were set")
        return self.table()[self.rows]  # (B, n, d): row b reads prompt rows[b]
        # [/mixed-rows]

    def virtual_key_values(self) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        """While ``cached`` holds the K prompts' keys/values (``MultiTaskServer`` computes them once per window),
        each row's own prompt's, gathered: per layer (B, n_kv_heads, n, head_dim). Otherwise None: an
        input-layer prompt, run by ``distinct_prompts``."""
        if self.cached is None:
            return None
        if self.rows is None:
            raise PromptError("set .rows (which prompt each row reads) before running a mixed batch")
        return [(k.index_select(0, self.rows), v.index_select(0, self.rows)) for k, v in self.cached]

    def distinct_prompts(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The K prompts (K, n, d) and the row index: a causal LM runs each prompt once and every row reads its own
        prompt's cached keys/values (``adapters.PromptedModel.prompt_cache``)."""
        if self.rows is None:
            raise PromptError("set .rows (which prompt each row reads) before running a mixed batch")
        return self.table(), self.rows

    def check_fits(self, model) -> None:
        for p in self.prompts:
            p.check_fits(model)


class MultiTaskServer:
    """Serve several tasks' classifiers, which share ONE frozen model, in mixed batches.

    ``classifiers``: task → ``PromptClassifier`` (``classifiers.classifier_for``), each with its own
    input-layer prompt and head, all built on the same model object and tokenizer.
    """

    def __init__(
        self,
        classifiers: Mapping[str, PromptClassifier],
        *,
        share_prompt_cache: bool = True,
        sort_by_length: bool = True,
    ):
        if not classifiers:
            raise CourseError("MultiTaskServer needs at least one task: {task: classifier}")
        self.classifiers = dict(classifiers)
        self.tasks = list(self.classifiers)
        first = next(iter(self.classifiers.values()))
        for task, clf in self.classifiers.items():
            if not isinstance(clf, PromptClassifier) or clf.adapter is None:
                raise CourseError(f"task {task!r}: give a PromptClassifier with a trained prompt (classifier_for)")
            if clf.model is not first.model:
                raise CourseError(
                    f"task {task!r} uses another model object: the point of serving prompts is ONE frozen model; "
                    "build every classifier on the same loaded model"
                )
            if type(clf.head) is not type(first.head) or clf.max_length != first.max_length:
                raise CourseError(f"task {task!r}: every classifier needs the same kind of head and max_length")
        self.tokenizer = first.tokenizer
        self.max_length = first.max_length
        self.mixed = MixedPrompts([c.adapter for c in self.classifiers.values()])
        # A causal LM runs the K prompts once as a batch-K cache and each row attends to its own task's prompt
        # (K·n + B·T positions; concatenating the prompt to every row, as PEFT does, costs B·(n + T)). An encoder
        # has no such cache — its prompt reads the text both ways — so there each row carries its prompt.
        self.prompted = PromptedModel(first.model, self.mixed, share_prompt_cache=share_prompt_cache)
        self.padding_side = first.head.padding_side
        self.sort_by_length = sort_by_length

    def _task_ids(self, tasks: Sequence[str]) -> torch.Tensor:
        unknown = sorted(set(tasks) - set(self.tasks))
        if unknown:
            raise CourseError(f"unknown task(s) {unknown}; this server has {self.tasks}")
        return torch.tensor([self.tasks.index(t) for t in tasks])

    def tokenize(self, texts: Sequence[str], tasks: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """One padded batch; each row formatted by its own task's head (template)."""
        formatted = [self.classifiers[t].head.format(x) for x, t in zip(texts, tasks)]
        side = self.tokenizer.padding_side
        self.tokenizer.padding_side = self.padding_side
        try:
            enc = self.tokenizer(
                formatted, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
            )
        finally:
            self.tokenizer.padding_side = side
        device = self.prompted.device
        return enc["input_ids"].to(device), enc["attention_mask"].to(device)

    @torch.no_grad()
    def logits(self, texts: Sequence[str], tasks: Sequence[str]) -> list[torch.Tensor]:
        """Class logits of each row, (C_task,) each: one mixed batch of any tasks in any order.

        A causal LM runs the K task prompts once (a batch-K key/value cache) and every row reads its own task's.
        With ``sort_by_length`` the rows are then cut, by length and not by task, into as many sub-batches as
        there are tasks in the batch (``length_chunks``: the least padding), so no row pads to a much longer one.
        """
        if isinstance(texts, str) or len(texts) != len(tasks):
            raise CourseError("give a list of texts and a list of tasks of the same length")
        rows = self._task_ids(tasks)
        groups = [list(range(len(texts)))]
        if self.sort_by_length and len(texts) > 1:
            lengths = [len(ids) for ids in self._encode(texts, tasks)]
            groups = length_chunks(lengths, len(set(tasks)))
        result: list[torch.Tensor | None] = [None] * len(texts)
        try:
            if self.prompted.is_causal and self.prompted.share_prompt_cache:
                # [prompt-cache-once]
                # the K prompts' keys/values, computed once for all sub-batches
                self.mixed.rows = torch.arange(len(self.tasks), device=self.prompted.device)
                with autocast_for(self.prompted.device):
                    cache, _ = self.prompted.prompt_cache(len(self.tasks))
                self.mixed.cached = cache_layers(cache)
                # [/prompt-cache-once]
            for group in groups:
                sub = [texts[i] for i in group], [tasks[i] for i in group]
                for i, row in zip(group, self._one_pass(*sub, rows[group])):
                    result[i] = row
        finally:
            self.mixed.rows, self.mixed.cached = None, None
        return result

    def _encode(self, texts: Sequence[str], tasks: Sequence[str]) -> list[list[int]]:
        formatted = [self.classifiers[t].head.format(x) for x, t in zip(texts, tasks)]
        return self.tokenizer(formatted, truncation=True, max_length=self.max_length)["input_ids"]

    def _one_pass(self, texts: Sequence[str], tasks: Sequence[str], rows: torch.Tensor) -> list[torch.Tensor]:
        """One forward pass of the frozen model over these rows (each reading its own task's prompt)."""
        ids, mask = self.tokenize(texts, tasks)
        self.mixed.rows = rows.to(ids.device)
        pool = any(getattr(c.head, "pool_prompt", False) for c in self.classifiers.values())
        # heads that read only the last k positions (label words: 1) let the LM head run there alone, as each
        # task's own classifier does; at GPT-2's vocabulary the head is about a third of a position's work
        keeps = {getattr(c.head, "logits_to_keep", 0) for c in self.classifiers.values()}
        keep = keeps.pop() if len(keeps) == 1 and self.prompted.is_causal else 0
        with autocast_for(self.prompted.device):
            out = self.prompted(ids, mask, return_prompt_states=pool, logits_to_keep=keep)
        n = self.mixed.n_virtual_tokens
        result: list[torch.Tensor | None] = [None] * len(texts)
        # [mixed-heads]
        for k, task in enumerate(self.tasks):  # each task's rows go through that task's own head
            idx = (rows == k).nonzero().flatten()
            if not len(idx):
                continue
            head, sub = self.classifiers[task].head, idx.to(ids.device)
            hidden, m = (out.hidden[sub], out.attention_mask[sub]) if out.hidden is not None else (None, None)
            if pool and not head.pool_prompt:  # this head pools the real tokens only
                hidden, m = hidden[:, n:], m[:, n:]
            part = PromptedOutput(
                logits=None if out.logits is None else out.logits[sub], hidden=hidden, attention_mask=m
            )
            for i, row in zip(idx.tolist(), head(part).float().cpu()):
                result[i] = row
        # [/mixed-heads]
        return result

    def predict(self, texts: Sequence[str], tasks: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Predicted class id of each row (N,), batches of ``batch_size`` mixed rows."""
        preds = []
        for i in range(0, len(texts), batch_size):
            preds += [int(r.argmax()) for r in self.logits(texts[i : i + batch_size], tasks[i : i + batch_size])]
        return np.array(preds, dtype=int)

    def predict_alone(self, texts: Sequence[str], tasks: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """The same predictions served task by task (each task's classifier on its own rows)."""
        out = np.zeros(len(texts), dtype=int)
        for task in self.tasks:
            idx = [i for i, t in enumerate(tasks) if t == task]
            if idx:
                out[idx] = self.classifiers[task].predict([texts[i] for i in idx], batch_size)
        return out


def length_chunks(lengths: Sequence[int], k: int) -> list[list[int]]:
    """Cut rows into at most ``k`` batches with the fewest padded slots Σ |batch| · longest(batch).

    Rows sorted by length, then the best cut into contiguous runs (dynamic programming, O(k·B²)); an optimal
    grouping always exists among such runs (swap a long row of a short batch with a short row of a long one:
    the slots never grow). Each batch lists row indices in their original order.
    """
    if k < 1:
        raise CourseError(f"k must be ≥ 1 batches, got {k}")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    L = [lengths[i] for i in order]
    B, k = len(L), min(k, len(L))
    inf = float("inf")
    # best[j][b]: fewest slots for the b shortest rows in j batches; cut[j][b]: where the last batch starts
    best = [[inf] * (B + 1) for _ in range(k + 1)]
    cut = [[0] * (B + 1) for _ in range(k + 1)]
    best[0][0] = 0
    for j in range(1, k + 1):
        for b in range(1, B + 1):
            for a in range(j - 1, b):
                slots = best[j - 1][a] + (b - a) * L[b - 1]  # rows a..b-1 padded to the longest, L[b-1]
                if slots < best[j][b]:
                    best[j][b], cut[j][b] = slots, a
    j = min(range(1, k + 1), key=lambda j: best[j][B])
    groups, b = [], B
    while b > 0:
        a = cut[j][b]
        groups.append(sorted(order[a:b]))
        b, j = a, j - 1
    return groups[::-1]


def tensor_bytes(tensors: Mapping[str, torch.Tensor] | Sequence[torch.Tensor]) -> int:
    """Bytes of the tensors' values (numel × element size): what a file of them stores, headers aside."""
    values = tensors.values() if isinstance(tensors, Mapping) else tensors
    return int(sum(t.numel() * t.element_size() for t in values))


def adapter_bytes(adapter: PromptAdapter) -> int:
    """Bytes a checkpoint of ``adapter`` keeps per task (its ``saved_tensors``, float32)."""
    return tensor_bytes(adapter.saved_tensors())


def model_bytes(model: nn.Module) -> int:
    """Bytes of a fine-tuned copy of ``model``: every parameter (shared tensors once) and buffer."""
    seen, params = set(), []
    for p in list(model.parameters()) + list(model.buffers()):
        if id(p) not in seen:
            seen.add(id(p))
            params.append(p)
    return tensor_bytes(params)


def time_serving(
    server: MultiTaskServer, texts: Sequence[str], tasks: Sequence[str], batch_size: int = 32, repeats: int = 1
) -> dict:
    """Examples per second (best of ``repeats``): mixed batches vs serving each task in its own batches."""
    best = {"mixed": float("inf"), "per_task": float("inf")}
    for _ in range(repeats):
        t = time.perf_counter()
        server.predict(texts, tasks, batch_size)
        best["mixed"] = min(best["mixed"], time.perf_counter() - t)
        t = time.perf_counter()
        server.predict_alone(texts, tasks, batch_size)
        best["per_task"] = min(best["per_task"], time.perf_counter() - t)
    return {f"{k}_examples_per_s": len(texts) / v for k, v in best.items()} | {"n": len(texts)}


@torch.no_grad()
def ensemble_logits(server: MultiTaskServer, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
    """(N, k, C) logits of k prompts of ONE task (the server's k members), each text scored by all k in
    one batch (Lester et al. 2021, §6: the model is stored once, the batch holds k copies of each input)."""
    k, members = len(server.tasks), server.tasks
    per_chunk = max(1, batch_size // k)
    out = []
    for i in range(0, len(texts), per_chunk):
        chunk = texts[i : i + per_chunk]
        rep_texts = [t for t in chunk for _ in range(k)]
        out.append(torch.stack(server.logits(rep_texts, members * len(chunk))).view(len(chunk), k, -1))
    return torch.cat(out)


def vote(logits: torch.Tensor) -> np.ndarray:
    """Majority vote of the k members (N, k, C) → (N,); ties go to the class with the larger summed
    probability (Lester et al. 2021, §6 ensemble by majority voting)."""
    votes = F.one_hot(logits.argmax(-1), logits.shape[-1]).sum(1).float()  # (N, C)
    tie_break = logits.softmax(-1).sum(1) / (logits.shape[1] + 1)  # < 1: decides only among equal votes
    return (votes + tie_break).argmax(-1).numpy()


def prompt_from(adapter: PromptAdapter) -> SoftPrompt:
    """A new trainable soft prompt starting from ``adapter``'s P (SPoT: a source task's prompt as the
    initialisation of a target task's prompt, Vu et al. 2022, §2)."""
    with torch.no_grad():
        p = adapter.virtual_embeddings(1)
    if p is None:
        raise PromptError("prompt_from needs an input-layer prompt (soft prompt or P-tuning)")
    prompt = SoftPrompt(p.shape[1], p.shape[2], p[0].detach().float().cpu())
    prompt.init = f"transfer:{adapter.method}"
    return prompt.to(p.device)


def target_token_ids(tokenizer, text: str, n_virtual_tokens: int) -> list[int]:
    """The ids of ``text``'s tokens, repeated/cut to n: the reading a prompt is pulled toward."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise PromptError(f"the target text {text!r} has no tokens; give a non-empty sentence")
    return (ids * (n_virtual_tokens // len(ids) + 1))[:n_virtual_tokens]


@torch.no_grad()
def reading(weight: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """The nearest vocabulary token (cosine) of each virtual token: (n, d) → (n,) ids (Lester et al. §7)."""
    emb = F.normalize(input_embeddings(model).detach().float(), dim=-1)
    return (F.normalize(weight.detach().float().to(emb.device), dim=-1) @ emb.T).argmax(-1).cpu()


def reading_match(weight: torch.Tensor, model: nn.Module, target_ids: Sequence[int]) -> float:
    """Fraction of virtual tokens whose nearest token is the target token at that position."""
    return float((reading(weight, model) == torch.tensor(list(target_ids))).float().mean())


def pull_toward_text(
    adapter: PromptAdapter, model: nn.Module, target_ids: Sequence[int], gamma: float
) -> Callable[[], torch.Tensor]:
    """An extra loss for ``training.fit``: γ · mean_i (1 − cos(P_i, e(target_i))).

    Khashabi et al. (2022, §3) train a prompt for a task while pulling its projection toward an arbitrary
    text; with a large enough γ the prompt *reads* as that text yet still solves the task (waywardness).
    """
    if not gamma >= 0:
        raise PromptError(f"gamma must be ≥ 0, got {gamma!r}")
    target = input_embeddings(model)[torch.tensor(list(target_ids))].detach().float()  # (n, d)

    def loss() -> torch.Tensor:
        p = adapter.virtual_embeddings(1)[0].float()
        return gamma * (1 - F.cosine_similarity(p, target.to(p.device), dim=-1)).mean()

    return loss


def truncated_encoder(model: nn.Module, n_layers: int) -> nn.Module:
    """A copy of a BERT-style encoder keeping only its first ``n_layers`` transformer layers."""
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise CourseError(
            f"{type(model).__name__} has no encoder.layer list: truncated_encoder cuts BERT-style encoders "
            "(such as all-MiniLM-L6-v2)"
        )
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or not 1 <= n_layers <= len(layers):
        raise CourseError(f"n_layers must be an integer in 1..{len(layers)}, got {n_layers!r}")
    cut = copy.deepcopy(model)
    cut.encoder.layer = nn.ModuleList(list(cut.encoder.layer)[:n_layers])
    cut.config.num_hidden_layers = n_layers
    return cut


def live_scale_curve(
    names: Sequence[str],
    data: Mapping[str, tuple[Sequence[str], Sequence[int]]],
    *,
    task: str = "sst2",
    n_virtual_tokens: int = 20,
    max_steps: int = 300,
    seed: int = 0,
    device=None,
) -> list[dict]:
    """Train the same soft prompt (label words, Adafactor lr 0.3 as Lester et al. §3) on each REAL causal LM
    in ``names`` and score it on ``data["eval"]``: one row per model that loads. A model whose pretrained
    weights cannot be found is skipped with a printed reason — never replaced by a random stand-in."""
    from .classifiers import classifier_for
    from .models import load_model
    from .soft_prompt import make_prompt
    from .stats import accuracy_interval
    from .training import TrainSettings, fit

    rows = []
    for name in names:
        try:
            model, tok = load_model(name, "causal", device=device, allow_random=False)
        except ModelNotFoundError as exc:
            print(f"{name}: skipped ({exc})")
            continue
        clf = classifier_for(
            model, tok, task, make_prompt(model, tok, n_virtual_tokens, "vocab", seed=seed, vocab_task=task)
        )
        run = TrainSettings(max_steps=max_steps, lr=0.3, optimizer="adafactor", seed=seed, progress=False)
        fit(clf, data["train"], data["select"], run)
        correct = clf.predict(list(data["eval"][0])) == np.asarray(list(data["eval"][1]))
        rows.append(
            dict(
                model=name,
                parameters=sum(p.numel() for p in model.parameters()),
                accuracy=str(accuracy_interval(correct)),
            )
        )
        del clf, model
    return rows
