"""The course's data sets: real SST-2, TREC, AG News, CB and RTE, read offline with `datasets`.

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
from datasets import ClassLabel, Dataset, Features, Value

from .errors import DataFileMissingError, UnknownTaskError

DATA_ENV_VAR = "PT_DATA_DIR"
AGNEWS_TRAIN_SIZE = 1600  # rows of AG News test.csv set aside (seeded) as our "train" split
AGNEWS_SPLIT_SEED = 0

# Local files of a few MB: datasets' per-operation progress bars would only clutter notebook output.
datasets.disable_progress_bars()

_SPLIT_ALIASES = {"validation": "dev", "val": "dev", "dev": "dev", "train": "train", "test": "test"}


@dataclass(frozen=True)
class TaskInfo:
    """What the course knows about one task: its files, splits, columns and label names."""

    name: str
    description: str
    label_names: tuple[str, ...]
    text_columns: tuple[str, ...]
    splits: dict[str, str] = field(default_factory=dict)  # split name -> file, relative to the data dir
    hub_name: str = ""  # the same task on the Hugging Face hub, for readers with internet
    citation: str = ""


TASKS: dict[str, TaskInfo] = {
    "sst2": TaskInfo(
        "sst2", "SST-2 binary sentiment of movie-review sentences",
        ("negative", "positive"), ("text",),
        {"train": "sst2/stsa.binary.train", "dev": "sst2/stsa.binary.dev", "test": "sst2/stsa.binary.test"},
        "stanfordnlp/sst2", "Socher et al. 2013, EMNLP"),
    "trec": TaskInfo(
        "trec", "TREC question classification, 6 coarse classes",
        ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"), ("text",),
        {"train": "trec/train.txt", "test": "trec/test.txt"},
        "CogComp/trec", "Voorhees & Tice 2000, SIGIR"),
    "agnews": TaskInfo(
        "agnews", "AG News topic classification, 4 classes (train = a seeded part of the test file)",
        ("World", "Sports", "Business", "Sci/Tech"), ("text",),
        {"train": "agnews/test.csv", "test": "agnews/test.csv"},
        "fancyzhx/ag_news", "Zhang, Zhao & LeCun 2015, NeurIPS"),
    "cb": TaskInfo(
        "cb", "CommitmentBank 3-way entailment (SuperGLUE)",
        ("entailment", "contradiction", "neutral"), ("premise", "hypothesis"),
        {"train": "cb/train.jsonl", "dev": "cb/val.jsonl"},
        "aps/super_glue (cb)", "de Marneffe et al. 2019"),
    "rte": TaskInfo(
        "rte", "RTE 2-way entailment (SuperGLUE)",
        ("entailment", "not_entailment"), ("premise", "hypothesis"),
        {"train": "rte/train.jsonl", "dev": "rte/val.jsonl"},
        "aps/super_glue (rte)", "Dagan et al. 2005; Wang et al. 2019"),
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
            + (" (dev is also called 'val' or 'validation')" if "dev" in info.splits else ""))
    return canon


def _file(info: TaskInfo, split: str) -> Path:
    path = data_dir() / info.splits[split]
    if not path.is_file():
        raise DataFileMissingError(
            f"data file for {info.name}/{split} not found: {path}. The course ships it in data/; "
            f"set {DATA_ENV_VAR} to the folder that holds '{info.splits[split]}' "
            f"(currently {DATA_ENV_VAR}={os.environ.get(DATA_ENV_VAR, '<unset>')}).")
    return path


def _features(info: TaskInfo, extra: dict | None = None) -> Features:
    cols = {c: Value("string") for c in info.text_columns}
    cols.update(extra or {})
    cols["label"] = ClassLabel(names=list(info.label_names))
    return Features(cols)


def _read_prefixed_lines(info: TaskInfo, path: Path) -> Dataset:
    """SST-2 (``"1 sentence"``) and TREC (``"NUM:dist question"``) are text files, one example a line."""
    raw = datasets.load_dataset("text", data_files=str(path), split="train")
    raw = raw.filter(lambda r: r["text"].strip() != "")
    if info.name == "sst2":
        def parse(row):
            label, text = row["text"].split(" ", 1)
            return {"text": text.strip(), "label": int(label)}
        extra = None
    else:  # trec
        def parse(row):
            tag, text = row["text"].split(" ", 1)
            coarse, fine = tag.split(":", 1)
            return {"text": text.strip(), "label": info.label_names.index(coarse), "fine_label": fine}
        extra = {"fine_label": Value("string")}
    return raw.map(parse, remove_columns=raw.column_names, features=_features(info, extra))


def _read_agnews(info: TaskInfo, path: Path, split: str) -> Dataset:
    raw = datasets.load_dataset("csv", data_files=str(path), split="train")
    ds = raw.map(
        lambda r: {"title": r["Title"].strip(), "description": r["Description"].strip(),
                   "text": f"{r['Title'].strip()}. {r['Description'].strip()}",
                   "label": int(r["Class Index"]) - 1},
        remove_columns=raw.column_names,
        features=_features(info, {"title": Value("string"), "description": Value("string")}))
    order = ds.shuffle(seed=AGNEWS_SPLIT_SEED).flatten_indices()
    idx = range(AGNEWS_TRAIN_SIZE) if split == "train" else range(AGNEWS_TRAIN_SIZE, len(order))
    return order.select(idx).flatten_indices()


def _read_jsonl(info: TaskInfo, path: Path) -> Dataset:
    raw = datasets.load_dataset("json", data_files=str(path), split="train")
    return raw.map(
        lambda r: {"premise": r["premise"], "hypothesis": r["hypothesis"],
                   "label": info.label_names.index(r["label"])},
        remove_columns=raw.column_names, features=_features(info))


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
