"""One identifier per concept (issue 26 item 3; notebooks/glossary.md, its "In code" column).

The retired spellings must not come back in the package, the notebooks (code and markdown) or the JSON the
course writes (results rows, saved prompts, train metrics, comparison rows, benchmark records):

* the retired identifiers of ``project.RETIRED_NAMES`` (``train_steps``, ``trained_params`` …), as whole words,
  anywhere in that text — except the three tables in ``project.py`` that name them so old files still load;
* the table label ``"shallow prompt"`` (the registry's ``"soft"`` is labelled "soft prompt");
* ``steps`` where it names the training budget (now ``max_steps``) or the steps a run took (``steps_run``):
  a keyword argument ``steps=``, a parameter ``steps``, an attribute ``.steps``, a key ``"steps"`` (in code,
  in a comment or in prose, e.g. ``overrides = {"steps": 4}``), and a notebook parameter ``steps``. A loop
  variable ``step``, a local ``steps`` dict, prose about "steps" and ``torch.linspace(..., steps=…)`` pass;
* ``text=`` as the initialising text of a prompt (now ``init_text=``): a keyword or parameter ``text`` of the
  prompt builders, or of a ``dict(...)`` of init arguments beside ``label_words``.

The scope is the whole package and every notebook, also the files other people are changing: a retired
spelling anywhere is a failure.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from pt_helpers import project
from pt_helpers.project import RETIRED_NAMES

ROOT = Path(__file__).resolve().parents[1]
RETIRED_WORDS = re.compile(r"\b(" + "|".join(map(re.escape, RETIRED_NAMES)) + r")\b")
SHALLOW_LABEL = re.compile(r"shallow prompt", re.IGNORECASE)
# a dict / JSON / YAML key, also inside a comment, a string or prose: "steps": ..., \"steps\": ..., {steps: ...}
STEPS_KEY = re.compile(r"""["']steps\\?["']\s*:|[{,]\s*steps\s*:""")
# the functions that build a prompt from an initialising text (their keyword for it is init_text)
PROMPT_BUILDERS = {
    "make_prompt",
    "add_soft_prompt",
    "init_prompt_embedding",
    "build_soft_prompt",
    "make_prefix",
    "make_prefix_model",
    "build_deep_prompt",
    "make_p_tuning",
    "build_p_tuning",
    "factory",
}
MAGIC = re.compile(r"^(\s*)[%!].*$", re.M)
LINSPACE = {"linspace", "logspace"}  # torch / numpy: their own ``steps`` keyword is no budget
# project.py names the retired spellings once, in these tables, so that old files are read under the new names
TABLES = {"RETIRED_NAMES", "RENAMED_SETTINGS", "RENAMED_RESULTS"}


def _callee(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def steps_and_text_uses(tree: ast.AST, parameters: bool = False) -> list[tuple[int, str]]:
    """(line, what) for every retired use of ``steps`` and of the init keyword ``text`` in a parsed module;
    ``parameters``: the tree is a notebook's parameters cell (an assignment to ``steps`` is a parameter)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            words = {k.arg for k in node.keywords}
            for k in node.keywords:
                if k.arg == "steps" and _callee(node) not in LINSPACE:
                    found.append((k.value.lineno, f"keyword steps= in a call to {_callee(node) or 'a function'}"))
                if k.arg == "text" and (
                    _callee(node) in PROMPT_BUILDERS or (_callee(node) == "dict" and "label_words" in words)
                ):
                    found.append((k.value.lineno, f"init keyword text= in {_callee(node)}(...) (now init_text=)"))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            args = node.args
            for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
                if a.arg == "steps":
                    found.append((a.lineno, "parameter steps"))
                if a.arg == "text" and getattr(node, "name", "") in PROMPT_BUILDERS:
                    found.append((a.lineno, f"parameter text of {node.name} (now init_text)"))
        elif isinstance(node, ast.Attribute) and node.attr == "steps":
            found.append((node.lineno, "attribute .steps"))
        elif isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and node.slice.value == "steps":
            found.append((node.lineno, 'key ["steps"]'))
        elif isinstance(node, ast.Dict):
            found += [
                (k.lineno, 'dict key "steps"') for k in node.keys if isinstance(k, ast.Constant) and k.value == "steps"
            ]
        elif parameters and isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == "steps" for t in targets):
                found.append((node.lineno, "notebook parameter steps (now max_steps)"))
    return found


def text_problems(text: str, exempt_lines: frozenset[int] = frozenset()) -> list[tuple[int, str]]:
    """(line, what) for every retired identifier, "shallow prompt" label and "steps" key in raw text."""
    found = []
    for n, line in enumerate(text.splitlines(), 1):
        if n in exempt_lines:
            continue
        found += [
            (n, f"retired name {m.group(1)} (now {RETIRED_NAMES[m.group(1)]})") for m in RETIRED_WORDS.finditer(line)
        ]
        found += [(n, 'label "shallow prompt" (now "soft prompt")') for _ in SHALLOW_LABEL.finditer(line)]
        found += [(n, 'key "steps" (max_steps / steps_run)') for _ in STEPS_KEY.finditer(line)]
    return found


def _table_lines(tree: ast.AST) -> frozenset[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id in TABLES for t in node.targets):
            lines |= set(range(node.lineno, node.end_lineno + 1))
    return frozenset(lines)


def python_problems(path: Path) -> list[str]:
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    exempt = _table_lines(tree) if path == Path(project.__file__).resolve() else frozenset()
    found = text_problems(source, exempt) + [(n, w) for n, w in steps_and_text_uses(tree) if n not in exempt]
    return [f"{path.relative_to(ROOT)}:{n}: {what}" for n, what in sorted(set(found))]


def notebook_problems(path: Path) -> list[str]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    out = []
    for i, cell in enumerate(cells):
        source = "".join(cell["source"])
        found = text_problems(source)
        if cell["cell_type"] == "code":
            python = MAGIC.sub(r"\1pass", source)  # an IPython magic (%matplotlib …) is no Python: same line count
            found += steps_and_text_uses(ast.parse(python), parameters="parameters" in cell["metadata"].get("tags", []))
        out += [f"{path.relative_to(ROOT)} cell {i} line {n}: {what}" for n, what in sorted(set(found))]
    return out


PYTHON_FILES = sorted(p for d in ("pt_helpers", "benchmarks") for p in (ROOT / d).rglob("*.py"))
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", PYTHON_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_retired_spelling_in_the_package_and_benchmarks(path):
    problems = python_problems(path)
    assert not problems, "retired spellings (see notebooks/glossary.md):\n" + "\n".join(problems)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_retired_spelling_in_the_notebooks(path):
    problems = notebook_problems(path)
    assert not problems, "retired spellings (see notebooks/glossary.md):\n" + "\n".join(problems)


def test_the_scan_catches_each_retired_form_and_passes_the_legitimate_ones():
    """The rules above, on small snippets: every retired form is found, nothing legitimate is."""
    bad = {
        "run(train_steps=3)": "retired name",
        "make_row('05', trained_params=0)": "retired name",
        "quick = dict(steps=100)": "keyword steps=",
        "def f(n, steps): pass": "parameter steps",
        "print(result.steps)": "attribute .steps",
        "x = first['steps']": 'key ["steps"]',
        "row = {'steps': 2}": 'dict key "steps"',
        'overrides = {}  # e.g. {"steps": 4}': 'key "steps"',
        'EXAMPLE = "\'{\\"steps\\": 10}\'"': 'key "steps"',  # the text: EXAMPLE = "'{\"steps\": 10}'"
        "doc = 'YAML: {steps: 10}'": 'key "steps"',
        "make_prompt(m, t, 4, 'text', text='a review')": "init keyword text=",
        "prompt_init = dict(text='a review', label_words=['bad', 'good'])": "init keyword text=",
        "sweeps = {'shallow prompt': (1e-2,)}": "shallow prompt",
    }
    for snippet, what in bad.items():
        found = text_problems(snippet) + steps_and_text_uses(ast.parse(snippet))
        assert any(what in w for _, w in found), (snippet, found)
    assert steps_and_text_uses(ast.parse("steps: int | None = None"), parameters=True)
    good = [
        "for step in range(settings.max_steps): pass",
        "steps = {k: step(k) for k in losses}",  # a local dict of step functions (benchmarks)
        "torch.linspace(0, 1, steps=5)",
        "fit(clf, tr, sel, TrainSettings(max_steps=3)).steps_run",
        "tokenizer(text=['a'], return_tensors='pt')",  # a tokenizer's own keyword
        "subprocess.run(cmd, capture_output=True, text=True)",
        "print('a few steps of a shallow soft prompt')",
        "first['best_step'], first['steps_run']",
    ]
    for snippet in good:
        assert not text_problems(snippet) + steps_and_text_uses(ast.parse(snippet)), snippet


def test_what_the_json_writers_write_uses_current_names(random_bert, tmp_path):
    """The keys actually written: a results row, a saved prompt's config of every adapter, a fit result."""
    from dataclasses import fields

    from pt_helpers.checkpoint import read_config, save_prompt
    from pt_helpers.p_tuning import make_p_tuning
    from pt_helpers.prefix import make_prefix
    from pt_helpers.results import COLUMNS, make_row
    from pt_helpers.soft_prompt import make_prompt
    from pt_helpers.training import FitResult

    def keys(obj) -> set[str]:
        if isinstance(obj, dict):
            return set(obj) | {k for v in obj.values() for k in keys(v)}
        return set()

    retired = set(RETIRED_NAMES) | {"steps"}
    row = make_row("05", "soft prompt", "sst2", "m", True, "accuracy", 0.5, n_trainable=10)
    assert not retired & (set(COLUMNS) | set(row)) and row["n_trainable"] == 10
    assert not retired & {f.name for f in fields(FitResult)}
    model, tok = random_bert
    adapters = {
        "soft": make_prompt(model, tok, 2, "vocab"),
        "deep": make_prefix(model, tok, 2, init="random", reparameterize=True, mlp_hidden=8),
        "p_tuning": make_p_tuning(model, tok, 2, encoder_type="lstm"),
    }
    for name, adapter in adapters.items():
        folder = save_prompt(adapter, tmp_path / name, model, tok)
        written = json.loads((folder / "adapter_config.json").read_text())
        assert not retired & keys(written), (name, sorted(retired & keys(written)))
        assert keys(read_config(folder)) == keys(written)
