import pytest

from pt_helpers.data import AGNEWS_TRAIN_SIZE, TASKS, label_names, load_task, subsample, task_info
from pt_helpers.errors import DataFileMissingError, UnknownTaskError

OFFICIAL_SIZES = {
    ("sst2", "train"): 6920,
    ("sst2", "dev"): 872,
    ("sst2", "test"): 1821,
    ("trec", "train"): 5452,
    ("trec", "test"): 500,
    ("agnews", "train"): AGNEWS_TRAIN_SIZE,
    ("agnews", "test"): 7600 - AGNEWS_TRAIN_SIZE,
    ("cb", "train"): 250,
    ("cb", "dev"): 56,
    ("rte", "train"): 2490,
    ("rte", "dev"): 277,
}


@pytest.mark.parametrize("task,split", sorted(OFFICIAL_SIZES))
def test_every_split_has_its_official_size_and_columns(task, split):
    ds = load_task(task, split)
    assert len(ds) == OFFICIAL_SIZES[(task, split)]
    info = task_info(task)
    assert ds.features["label"].names == list(info.label_names)
    for col in info.text_columns:
        assert all(isinstance(t, str) and t.strip() for t in ds[:50][col])
    labels = set(ds["label"])
    assert labels <= set(range(len(info.label_names))) and len(labels) >= 2


def test_sst2_parsing_keeps_text_and_label():
    ds = load_task("sst2", "dev")
    assert ds[0] == {"text": "one long string of cliches .", "label": 0}
    assert label_names("sst2") == ["negative", "positive"]


def test_split_aliases():
    assert len(load_task("rte", "validation")) == len(load_task("rte", "val")) == 277


def test_agnews_split_is_fixed_and_disjoint():
    train, test = load_task("agnews", "train"), load_task("agnews", "test")
    assert set(train["text"]).isdisjoint(test["text"]) or len(set(train["text"]) & set(test["text"])) < 5
    assert load_task("agnews", "train")["text"][:20] == train["text"][:20]
    assert train[0]["text"] == f"{train[0]['title']}. {train[0]['description']}"


def test_unknown_task_lists_valid_ones():
    with pytest.raises(UnknownTaskError, match="valid tasks: agnews, cb, rte, sst2, trec"):
        load_task("imdb")


def test_unknown_split_lists_valid_ones():
    with pytest.raises(UnknownTaskError, match="valid splits: train, test"):
        load_task("trec", "dev")


def test_missing_file_names_file_and_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("PT_DATA_DIR", str(tmp_path))
    with pytest.raises(DataFileMissingError, match=r"stsa\.binary\.dev.*PT_DATA_DIR"):
        load_task("sst2", "dev")


def test_subsample_is_seeded():
    ds = load_task("sst2", "dev")
    a, b, c = subsample(ds, 10, seed=1), subsample(ds, 10, seed=1), subsample(ds, 10, seed=2)
    assert a["text"] == b["text"] and a["text"] != c["text"] and len(a) == 10
    assert subsample(ds, None) is ds
    with pytest.raises(ValueError):
        subsample(ds, 0)


def test_task_table_names_hub_equivalents():
    assert all(info.hub_name and info.citation for info in TASKS.values())


def test_every_task_has_one_label_sentence_per_label():
    """The sentence-encoder verbaliser (chapters 05, 06, 08) exists for every task, one sentence per label, distinct."""
    for name, info in TASKS.items():
        assert len(info.label_sentences) == len(info.label_names), name
        assert len(set(info.label_sentences)) == len(info.label_sentences), name
        info.check_verbalizer("encoder")  # no error


# --- one home for a task's splits (data.task_splits) ----------------------------------------------------------


def _old_notebook_splits(task, select_size, cap=None, eval_size=None):
    """What notebooks 05 / 06 / 08 computed before data.task_splits (kept here as the reference)."""
    from pt_helpers.data import load_task, subsample, task_info

    def texts_of(ds):  # notebook 08's pair join
        cols = ds.column_names
        if "text" in cols:
            return list(ds["text"])
        return [f"{p} Question: {h}" for p, h in zip(ds["premise"], ds["hypothesis"])]

    full = load_task(task, "train").shuffle(seed=0).flatten_indices()
    texts, labels = texts_of(full), list(full["label"])
    evaluation = subsample(load_task(task, task_info(task).eval_split), eval_size, seed=0)
    k = select_size
    return dict(
        train=(texts[k:][:cap], labels[k:][:cap]),
        select=(texts[:k], labels[:k]),
        eval=(texts_of(evaluation), list(evaluation["label"])),
    )


@pytest.mark.parametrize(
    "task, select_size, train_size, eval_size",
    [("sst2", 300, None, None), ("sst2", 100, None, None), ("trec", 500, 8000, None), ("cb", 32, None, 100),
     ("rte", 32, None, 100), ("agnews", 32, None, 100)],
)  # fmt: skip
def test_task_splits_are_the_notebooks_splits(task, select_size, train_size, eval_size):
    """The same examples in the same order as notebooks 05 (300 held out), 06 (select_size, train_size) and
    08 (pairs joined, eval subsampled with seed 0) computed before: their printed numbers keep their meaning."""
    from pt_helpers.data import task_splits

    new = task_splits(task, select_size, train_size, eval_size)
    old = _old_notebook_splits(task, select_size, train_size, eval_size)
    for part in ("train", "select", "eval"):
        assert new.texts_labels(part) == old[part], part


def test_task_splits_are_disjoint_seeded_and_checked():
    from pt_helpers.data import PAIR_TEXT, task_splits
    from pt_helpers.errors import TrainConfigError

    a, b = task_splits("rte", 50, 100, 20, seed=1), task_splits("rte", 50, 100, 20, seed=2)
    assert a.sizes() == {"train": 100, "select": 50, "eval": 20}
    assert not set(a.train["text"]) & set(a.select["text"])  # selection is held out of training
    assert a.select["text"] != b.select["text"] and a.eval["text"] == b.eval["text"]  # eval: one set for all seeds
    first = a.train[0]
    assert first["text"] == PAIR_TEXT.format(premise=first["premise"], hypothesis=first["hypothesis"])
    with pytest.raises(TrainConfigError, match="select_size"):
        task_splits("cb", 250)  # CB has 250 training pairs: nothing would be left to train on


def test_length_shift_splits_are_chapter_07s_draws():
    """The same sentences in the same order as notebook 07's own code before (quick sizes)."""
    import numpy as np

    from pt_helpers.data import length_shift_splits, load_task, n_words

    seed, short, long_, n_train, n_select, n_test = 0, 12, 25, 256, 64, 100
    train_short = load_task("sst2", "train").filter(lambda r: n_words(r["text"]) <= short)
    held_out = [(t, y) for split in ("dev", "test") for t, y in zip(*load_task("sst2", split)[:].values())]
    rng = np.random.default_rng(seed)

    def pick(rows, n):
        idx = rng.permutation(len(rows))[:n]
        return [rows[i][0] for i in idx], [rows[i][1] for i in idx]

    short_pool = [r for r in held_out if n_words(r[0]) <= short]
    long_pool = [r for r in held_out if n_words(r[0]) >= long_]
    old = dict(test_short=pick(short_pool, n_test), test_long=pick(long_pool, n_test))
    old["select"] = pick([r for r in short_pool if r[0] not in set(old["test_short"][0])], n_select)
    train = subsample(train_short, n_train, seed)
    old["train"] = (list(train["text"]), list(train["label"]))
    assert length_shift_splits("sst2", short, long_, n_train, n_select, n_test, seed) == old
