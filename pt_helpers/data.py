"""The course's data sets (used from chapter 01 on): real SST-2, TREC, AG News, CB and RTE, read offline.

The files are the exact splits used by Zhao et al. (2021), "Calibrate Before Use", shipped in the
project's ``data/`` folder (see ``data/README.md``). ``PT_DATA_DIR`` points at another copy.

    >>> ds = load_task("sst2", "dev")
    >>> ds[0]["text"], ds.features["label"].names[ds[0]["label"]]
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
from datasets import ClassLabel, Dataset, Features, Value

from .errors import DataFileMissingError, DataFormatError, TrainConfigError, UnknownTaskError

DATA_ENV_VAR = "PT_DATA_DIR"
AGNEWS_TRAIN_SIZE = 1600  # rows of AG News test.csv set aside (seeded) as our "train" split
AGNEWS_SPLIT_SEED = 0

# Local files of a few MB: datasets' per-operation progress bars would only clutter notebook output.
datasets.disable_progress_bars()

_SPLIT_ALIASES = {"validation": "dev", "val": "dev", "dev": "dev", "train": "train", "test": "test"}


@dataclass(frozen=True)
class TaskInfo:
    """Everything the code knows about one task; a new task is one entry of ``TASKS``.

    Label words are stored *bare* (``"positive"``); ``scoring.as_continuation`` adds the leading space
    where a word follows a prompt. ``label_words`` / ``template``: the causal-LM classifier (chapters
    05–06); ``label_sentences``: the sentence-encoder classifier; ``init_text``: a prompt initialisation;
    ``eval_split``: where accuracy is reported; ``icl_*``: the in-context-learning format (chapter 03),
    as Zhao et al. 2021 (Table 14) wrote it for SST-2, AG News and TREC.
    """

    name: str
    description: str
    label_names: tuple[str, ...]
    text_columns: tuple[str, ...]
    splits: dict[str, str] = field(default_factory=dict)  # split name -> file, relative to the data dir
    hub_name: str = ""  # the same task on the Hugging Face hub, for readers with internet
    citation: str = ""
    label_words: tuple[str, ...] = ()
    template: str = "{text}"
    label_sentences: tuple[str, ...] = ()
    init_text: str = "Classify this text"
    eval_split: str = "dev"
    icl_input_prefix: str = ""
    icl_output_prefix: str = ""
    icl_label_words: tuple[str, ...] = ()
    icl_instruction: str = ""

    def check_verbalizer(self, kind: str) -> None:
        """A clear error when the task has no verbaliser for a classifier of ``kind`` ("causal"/"encoder")."""
        have = self.label_words if kind == "causal" else self.label_sentences
        if not have:
            with_one = sorted(t for t, i in TASKS.items() if (i.label_words if kind == "causal" else i.label_sentences))
            raise UnknownTaskError(
                f"task {self.name!r} has no {'label words' if kind == 'causal' else 'label sentences'}"
                f" for a {kind} classifier; tasks that have them: {with_one}"
            )


TASKS: dict[str, TaskInfo] = {
    "sst2": TaskInfo(
        "sst2",
        "SST-2 binary sentiment of movie-review sentences",
        ("negative", "positive"),
        ("text",),
        {"train": "sst2/stsa.binary.train", "dev": "sst2/stsa.binary.dev", "test": "sst2/stsa.binary.test"},
        "stanfordnlp/sst2",
        "Socher et al. 2013, EMNLP",
        label_words=("negative", "positive"),
        template="{text} Sentiment:",
        label_sentences=("This is a negative, terrible movie review.", "This is a positive, great movie review."),
        init_text="Classify the sentiment of this movie review",
        eval_split="dev",
        icl_input_prefix="Review: ",
        icl_output_prefix="Sentiment:",
        icl_label_words=("Negative", "Positive"),
    ),
    "trec": TaskInfo(
        "trec",
        "TREC question classification, 6 coarse classes",
        ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"),
        ("text",),
        {"train": "trec/train.txt", "test": "trec/test.txt"},
        "CogComp/trec",
        "Voorhees & Tice 2000, SIGIR",
        label_words=("acronym", "description", "entity", "person", "location", "number"),  # one GPT-2 token each
        template="{text} Answer type:",
        label_sentences=(
            "This question asks what an abbreviation or acronym stands for.",
            "This question asks for a description, a definition or a reason.",
            "This question asks about a thing, an object, an animal or a substance.",
            "This question asks about a person, a group or an organisation.",
            "This question asks about a place, a city or a country.",
            "This question asks for a number, a date, an amount or a quantity.",
        ),
        init_text="Classify what kind of answer this question asks for",
        eval_split="test",  # TREC has no dev split: its 500-question test set is used
        icl_input_prefix="Question: ",
        icl_output_prefix="Answer Type:",
        icl_label_words=("Abbreviation", "Description", "Entity", "Person", "Location", "Number"),
        icl_instruction=(
            "Classify the questions based on whether their answer type is a Number, Location, "
            "Person, Description, Entity, or Abbreviation."
        ),
    ),
    "agnews": TaskInfo(
        "agnews",
        "AG News topic classification, 4 classes (train = a seeded part of the test file)",
        ("World", "Sports", "Business", "Sci/Tech"),
        ("text",),
        {"train": "agnews/test.csv", "test": "agnews/test.csv"},
        "fancyzhx/ag_news",
        "Zhang, Zhao & LeCun 2015, NeurIPS",
        label_words=("World", "Sports", "Business", "Technology"),  # one GPT-2 token each (as the ICL words)
        template="{text} Topic:",
        label_sentences=(  # the sentence-encoder verbaliser of chapter 08
            "This is news about world politics.",
            "This is news about sports.",
            "This is news about business and the economy.",
            "This is news about science and technology.",
        ),
        eval_split="test",
        icl_input_prefix="Article: ",
        icl_output_prefix="Answer:",
        icl_label_words=("World", "Sports", "Business", "Technology"),
        icl_instruction="Classify the news articles into the categories of World, Sports, Business, and Technology.",
    ),
    "cb": TaskInfo(
        "cb",
        "CommitmentBank 3-way entailment (SuperGLUE)",
        ("entailment", "contradiction", "neutral"),
        ("premise", "hypothesis"),
        {"train": "cb/train.jsonl", "dev": "cb/val.jsonl"},
        "aps/super_glue (cb)",
        "de Marneffe et al. 2019",
        label_sentences=(  # chapter 08: a pair is embedded as one text, premise then hypothesis
            "The second statement is true given the first.",
            "The second statement is false given the first.",
            "The first statement does not say whether the second is true.",
        ),
    ),
    "rte": TaskInfo(
        "rte",
        "RTE 2-way entailment (SuperGLUE)",
        ("entailment", "not_entailment"),
        ("premise", "hypothesis"),
        {"train": "rte/train.jsonl", "dev": "rte/val.jsonl"},
        "aps/super_glue (rte)",
        "Dagan et al. 2005; Wang et al. 2019",
        label_sentences=(  # chapter 08
            "The second statement follows from the first.",
            "The second statement does not follow from the first.",
        ),
    ),
}


def data_dir() -> Path:
    """The folder holding the task files: ``$PT_DATA_DIR`` if set, else the project's ``data/``."""
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[1] / "data"


def task_info(name: str) -> TaskInfo:
    """Look a task up by name; unknown names raise an error listing the valid ones."""
    key = str(name).lower().replace("-", "")
    if key not in TASKS:
        raise UnknownTaskError(f"unknown task {name!r}; valid tasks: {', '.join(sorted(TASKS))}")
    return TASKS[key]


def _canonical_split(info: TaskInfo, split: str) -> str:
    canon = _SPLIT_ALIASES.get(str(split).lower())
    if canon not in info.splits:
        raise UnknownTaskError(
            f"task {info.name!r} has no split {split!r}; valid splits: {', '.join(info.splits)}"
            + (" (dev is also called 'val' or 'validation')" if "dev" in info.splits else "")
        )
    return canon


def _file(info: TaskInfo, split: str) -> Path:
    path = data_dir() / info.splits[split]
    if not path.is_file():
        raise DataFileMissingError(
            f"data file for {info.name}/{split} not found: {path}. The course ships it in data/; "
            f"set {DATA_ENV_VAR} to the folder that holds '{info.splits[split]}' "
            f"(currently {DATA_ENV_VAR}={os.environ.get(DATA_ENV_VAR, '<unset>')})."
        )
    return path


def _features(info: TaskInfo, extra: dict | None = None) -> Features:
    cols = {c: Value("string") for c in info.text_columns}
    cols.update(extra or {})
    cols["label"] = ClassLabel(names=list(info.label_names))
    return Features(cols)


def _bad_line(path: Path, line_no: int, expected: str, got: str) -> DataFormatError:
    return DataFormatError(
        f"{path}, line {line_no}: expected {expected}, got {got[:80]!r}. Fix or delete that line "
        f"(or point {DATA_ENV_VAR} at an intact copy of the course's data/ folder)."
    )


def _lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of every non-blank line; an unreadable or empty file is a clear error."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: a byte-order mark (Excel's "CSV UTF-8") is dropped
    except UnicodeDecodeError as exc:
        raise DataFormatError(
            f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start}); is it the right file?"
        ) from exc
    rows = [(i, line) for i, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not rows:
        raise DataFormatError(
            f"{path} is empty: the data file was truncated; restore it from the course's data/ "
            f"folder (or point {DATA_ENV_VAR} at an intact copy)."
        )
    return rows


def _label_index(info: TaskInfo, path: Path, line_no: int, raw: str, names: tuple[str, ...]) -> int:
    if raw not in names:
        raise _bad_line(path, line_no, f"a label of {info.name} ({', '.join(names)})", raw)
    return names.index(raw)


def _read_prefixed_lines(info: TaskInfo, path: Path) -> Dataset:
    """SST-2 (``"1 sentence"``) and TREC (``"NUM:dist question"``) are text files, one example a line."""
    cols: dict[str, list] = (
        {"text": [], "fine_label": [], "label": []} if info.name == "trec" else {"text": [], "label": []}
    )
    for line_no, line in _lines(path):
        head, _, text = line.partition(" ")
        if not text.strip():
            raise _bad_line(path, line_no, "a label, a space, then the text", line)
        if info.name == "sst2":
            label = _label_index(info, path, line_no, head, ("0", "1"))
        else:  # trec: COARSE:fine
            coarse, colon, fine = head.partition(":")
            if not colon or not fine:
                raise _bad_line(path, line_no, "a tag COARSE:fine (e.g. NUM:date), a space, then the question", line)
            label = _label_index(info, path, line_no, coarse, info.label_names)
            cols["fine_label"].append(fine)
        cols["text"].append(text.strip())
        cols["label"].append(label)
    extra = {"fine_label": Value("string")} if info.name == "trec" else None
    return Dataset.from_dict(cols, features=_features(info, extra))


def _read_agnews(info: TaskInfo, path: Path, split: str) -> Dataset:
    import csv
    import io

    _lines(path)  # empty-file check
    reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"), newline=""))
    need = ("Class Index", "Title", "Description")
    missing = [c for c in need if c not in (reader.fieldnames or [])]
    if missing:
        raise DataFormatError(
            f"{path}, line 1: the CSV header lacks column(s) {missing}; expected the columns "
            f"{list(need)}, found {reader.fieldnames}"
        )
    cols: dict[str, list] = {"text": [], "title": [], "description": [], "label": []}
    for row in reader:
        line_no = reader.line_num
        if any(row.get(c) is None for c in need):
            raise _bad_line(
                path, line_no, f"{len(need)} comma-separated fields", ",".join(v or "" for v in row.values())
            )
        label = _label_index(info, path, line_no, row["Class Index"].strip(), ("1", "2", "3", "4"))
        title, description = row["Title"].strip(), row["Description"].strip()
        cols["title"].append(title)
        cols["description"].append(description)
        cols["text"].append(f"{title}. {description}")
        cols["label"].append(label)
    ds = Dataset.from_dict(cols, features=_features(info, {"title": Value("string"), "description": Value("string")}))
    order = ds.shuffle(seed=AGNEWS_SPLIT_SEED).flatten_indices()
    idx = range(AGNEWS_TRAIN_SIZE) if split == "train" else range(AGNEWS_TRAIN_SIZE, len(order))
    return order.select(idx).flatten_indices()


def _read_jsonl(info: TaskInfo, path: Path) -> Dataset:
    import json

    cols: dict[str, list] = {c: [] for c in (*info.text_columns, "label")}
    for line_no, line in _lines(path):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _bad_line(path, line_no, f"one JSON object per line ({exc.msg})", line) from exc
        if not isinstance(row, dict) or any(c not in row for c in (*info.text_columns, "label")):
            raise _bad_line(path, line_no, f"a JSON object with keys {[*info.text_columns, 'label']}", line)
        for c in info.text_columns:
            cols[c].append(row[c])
        cols["label"].append(_label_index(info, path, line_no, row["label"], info.label_names))
    return Dataset.from_dict(cols, features=_features(info))


def load_task(name: str, split: str = "train") -> Dataset:
    """Load one split of a task as a ``datasets.Dataset``.

    Columns: ``text`` (or ``premise`` and ``hypothesis`` for CB/RTE) and ``label``, a ``ClassLabel``
    whose ``.names`` are the label names (``ds.features["label"].names``). TREC adds ``fine_label``;
    AG News adds ``title`` and ``description`` (``text`` = ``"title. description"``).

    AG News has only its 7,600-row test file offline: ``"train"`` is a fixed, seeded (seed 0) choice of
    1,600 of its rows and ``"test"`` the other 6,000, so the two never overlap.
    """
    info = task_info(name)
    split = _canonical_split(info, split)
    path = _file(info, split)
    if info.name in ("sst2", "trec"):
        return _read_prefixed_lines(info, path)
    if info.name == "agnews":
        return _read_agnews(info, path, split)
    return _read_jsonl(info, path)


def label_names(name: str) -> list[str]:
    """The label names of a task, in label-id order."""
    return list(task_info(name).label_names)


def subsample(ds: Dataset, n: int | None, seed: int = 0) -> Dataset:
    """A seeded random subset of ``n`` rows (all rows when ``n`` is None or ≥ len)."""
    if n is None or n >= len(ds):
        return ds
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    return ds.shuffle(seed=seed).select(range(n)).flatten_indices()


PAIR_TEXT = "{premise} Question: {hypothesis}"  # CB / RTE as ONE text (chapter 08's join, everywhere)


def texts_of(ds: Dataset) -> list[str]:
    """The input text of every row: ``text``, or a pair task's premise and hypothesis joined by ``PAIR_TEXT``."""
    if "text" in ds.column_names:
        return list(ds["text"])
    return [PAIR_TEXT.format(premise=p, hypothesis=h) for p, h in zip(ds["premise"], ds["hypothesis"])]


def with_text(ds: Dataset) -> Dataset:
    """``ds`` with a ``text`` column (a pair task's rows joined by ``PAIR_TEXT``; other tasks unchanged)."""
    return ds if "text" in ds.column_names else ds.add_column("text", texts_of(ds))


@dataclass(frozen=True)
class TaskSplits:
    """A task's three splits, each a ``Dataset`` with ``text`` and ``label``: ``train`` (trained on),
    ``select`` (held out of the training split to choose a step / lr; never the evaluation data) and
    ``eval`` (the task's evaluation split, where accuracy is reported)."""

    task: str
    train: Dataset
    select: Dataset
    eval: Dataset

    def texts_labels(self, split: str) -> tuple[list[str], list[int]]:
        """(texts, labels) of ``split`` ("train", "select" or "eval")."""
        ds = getattr(self, split)
        return list(ds["text"]), list(ds["label"])

    def sizes(self) -> dict[str, int]:
        return {k: len(getattr(self, k)) for k in ("train", "select", "eval")}


def task_splits(
    task: str, select_size: int = 300, train_size: int | None = None, eval_size: int | None = None, seed: int = 0
) -> TaskSplits:
    """THE train / selection / evaluation split of a task (chapters 05–08 and ``python -m pt_helpers.train``).

    The training split is shuffled with ``seed``; its first ``select_size`` rows are the selection split,
    the next ``train_size`` rows (None or 0: all the rest) are trained on. The evaluation split is
    ``subsample(eval split, eval_size, seed=0)`` (None or 0: all of it) — the same examples whatever the
    training seed, so runs of several seeds are scored on one set. Pair tasks (CB, RTE) get a ``text``
    column joined one way (``PAIR_TEXT``).
    """
    info = task_info(task)
    full = with_text(load_task(info.name, "train")).shuffle(seed=seed).flatten_indices()
    if isinstance(select_size, bool) or not isinstance(select_size, int) or not 0 < select_size < len(full):
        raise TrainConfigError(
            f"select_size {select_size!r} must be between 1 and {len(full) - 1} (the training split of "
            f"{info.name} has {len(full)} examples): the rest is trained on"
        )
    end = len(full) if not train_size else min(len(full), select_size + train_size)
    evaluation = subsample(with_text(load_task(info.name, info.eval_split)), eval_size or None, seed=0)
    return TaskSplits(
        info.name,
        full.select(range(select_size, end)).flatten_indices(),
        full.select(range(select_size)).flatten_indices(),
        evaluation,
    )


def n_words(text: str) -> int:
    """Words of a text, split on whitespace (chapter 07's length measure)."""
    return len(text.split())


def length_shift_splits(
    task: str, short_max_words: int, long_min_words: int, n_train: int, n_select: int, n_test: int, seed: int = 0
) -> dict[str, tuple[list[str], list[int]]]:
    """Chapter 07's distribution shift: (texts, labels) of ``train`` (``n_train`` short training sentences,
    ``subsample`` with ``seed``), ``select`` (``n_select`` short held-out sentences, never a test one),
    ``test_short`` and ``test_long`` (``n_test`` each). Short: ≤ ``short_max_words`` words; long: ≥
    ``long_min_words``. The held-out pool is every split but train (SST-2: dev then test), drawn with one
    ``numpy`` generator of ``seed`` in the order test short, test long, selection."""
    info = task_info(task)
    train_short = with_text(load_task(info.name, "train")).filter(lambda r: n_words(r["text"]) <= short_max_words)
    held_out = []
    for split in (s for s in info.splits if s != "train"):
        ds = load_task(info.name, split)
        held_out += list(zip(texts_of(ds), ds["label"]))
    rng = np.random.default_rng(seed)

    def pick(rows, n):
        idx = rng.permutation(len(rows))[:n]
        return [rows[i][0] for i in idx], [rows[i][1] for i in idx]

    short_pool = [r for r in held_out if n_words(r[0]) <= short_max_words]
    long_pool = [r for r in held_out if n_words(r[0]) >= long_min_words]
    parts = dict(test_short=pick(short_pool, n_test), test_long=pick(long_pool, n_test))
    tested = set(parts["test_short"][0])
    parts["select"] = pick([r for r in short_pool if r[0] not in tested], n_select)
    train = subsample(train_short, n_train, seed)
    parts["train"] = (list(train["text"]), list(train["label"]))
    return {k: parts[k] for k in ("train", "select", "test_short", "test_long")}
