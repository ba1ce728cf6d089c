"""The course's static site: executed notebooks as HTML (nbconvert), the course map, the glossary.

    python -m pt_helpers.site build/executed build/html      # usually via: python -m pt_helpers.run all --html build/html

The course map (``index.html``) has one row per chapter, read from the notebooks themselves:

* title (English · 中文) and what it teaches / its prerequisites — from the first markdown cell;
* run time and device — *measured* by :mod:`pt_helpers.run` and stored per device type in
  ``build/timings.json`` (so a CPU build and a GPU build both show), never typed by hand;
* where its numbers came from — detected in the executed notebook's outputs: ``load_model`` prints
  ``… · pretrained weights`` or ``… · RANDOMLY INITIALISED weights`` (and a ``RANDOM WEIGHTS`` banner),
  so a chapter is *pretrained*, *random*, *mixed* (which model was which is listed) or *no model*.

Notebook pages are rendered by nbconvert's ``HTMLExporter`` (the ``lab`` template); the glossary
(``notebooks/glossary.md``) is rendered by the same exporter as a one-cell markdown notebook.
"""
from __future__ import annotations

import argparse
import html
import json
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import nbformat

from .errors import CourseError
from .run import (EXECUTED_DIR, NOTEBOOK_PATTERN, NOTEBOOKS_DIR, TIMINGS_FILE, format_seconds,
                  load_timings)

GLOSSARY_NAME = "glossary.md"

# `LoadedModel.describe()`:  "<name> (<kind>) ← <source>: <location> · <pretrained|RANDOMLY INITIALISED> weights · …"
_DESCRIBE_RE = re.compile(r"^(?P<name>\S+) \((?P<kind>causal|encoder|masked)\) ← (?P<source>\w+): .*?· "
                          r"(?P<weights>pretrained|RANDOMLY INITIALISED) weights", re.MULTILINE)
# `LoadedModel.banner()`:  "!! RANDOM WEIGHTS: no pretrained '<name>' could be loaded here, …"
_BANNER_RE = re.compile(r"RANDOM WEIGHTS: no pretrained '(?P<name>[^']+)'")

_LABEL_KEYWORDS = {
    "goals": re.compile(r"goal|learn|you will|objective|teach|outcome|目标|学习|收获", re.I),
    "prerequisites": re.compile(r"prereq|requires|before you start|先修|前置|预备|前提", re.I),
    "runtime": re.compile(r"run ?time|running time|how long|运行时间|耗时|时长", re.I),
}
_HEADING_RE = re.compile(r"^\s{0,3}#{1,6}\s+(?P<label>.*)$")
# a bold label: "**Goals.**", "**Prerequisites:**", "**Run time**:" or a line that is only "**Goals · 目标**"
_BOLD_LABEL_RE = re.compile(r"^\s*(?P<bullet>[-*+]\s+)?\*\*(?P<label>[^*]{1,60}?[.:：]\s*)\*\*"
                            r"|^\s*(?P<bullet2>[-*+]\s+)?\*\*(?P<label2>[^*]{1,60})\*\*\s*[.:：]?\s*$"
                            r"|^\s*(?P<bullet3>[-*+]\s+)?\*\*(?P<label3>[^*]{1,60})\*\*\s*[.:：]")
_COLON_LABEL_RE = re.compile(r"^\s*(?P<label>[A-Za-z\u4e00-\u9fff][\w \u4e00-\u9fff·/()\-]{0,30})[:：](\s|$)")
_INLINE_LABEL_RE = re.compile(r"(?<=\S)[ \t]+(\*\*[^*\n]{1,60}?[.:：]\s*\*\*|\*\*[^*\n]{1,60}\*\*[.:：])")


class SiteError(CourseError):
    """The site cannot be built from what is on disk (no executed notebooks, unreadable files)."""


@dataclass
class WeightsInfo:
    """Where a chapter's numbers came from: which models loaded with pretrained or random weights."""

    status: str                                   # "pretrained" | "random" | "mixed" | "no model"
    pretrained: list[str] = field(default_factory=list)
    random: list[str] = field(default_factory=list)

    def describe(self) -> str:
        """One line for the course map, e.g. ``mixed — pretrained: all-MiniLM-L6-v2; RANDOM: gpt2``."""
        if self.status == "no model":
            return "no model loaded (pure computation)"
        parts = []
        if self.pretrained:
            parts.append("pretrained: " + ", ".join(self.pretrained))
        if self.random:
            parts.append("RANDOM weights: " + ", ".join(self.random))
        return f"{self.status} — " + "; ".join(parts)


@dataclass
class ChapterInfo:
    """What the course map shows about one chapter (markdown fields are raw markdown)."""

    file: str                   # "03_in_context_learning.ipynb"
    number: str                 # "03"
    title: str                  # full title line, e.g. "In-context learning · 上下文学习"
    title_en: str
    title_zh: str
    goals: str = ""
    prerequisites: str = ""


def _outputs_text(nb: nbformat.NotebookNode) -> str:
    """All text a notebook's code cells printed or returned (streams, text/plain results, errors)."""
    chunks: list[str] = []
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        for out in cell.get("outputs", []):
            kind = out.get("output_type")
            if kind == "stream":
                chunks.append(_joined(out.get("text", "")))
            elif kind in ("execute_result", "display_data"):
                chunks.append(_joined(out.get("data", {}).get("text/plain", "")))
            elif kind == "error":
                chunks.append(f"{out.get('ename', '')}: {out.get('evalue', '')}")
    return "\n".join(chunks)


def _joined(text: str | list[str]) -> str:
    return "".join(text) if isinstance(text, list) else str(text)


def detect_weights(nb: nbformat.NotebookNode) -> WeightsInfo:
    """Classify an *executed* notebook by the weights its ``load_model`` calls reported."""
    text = _outputs_text(nb)
    state: dict[str, bool] = {}               # model name -> pretrained? (random wins if both seen)
    for m in _DESCRIBE_RE.finditer(text):
        pretrained = m["weights"] == "pretrained"
        state[m["name"]] = state.get(m["name"], True) and pretrained
    for m in _BANNER_RE.finditer(text):
        state[m["name"]] = False
    pretrained = sorted(n for n, p in state.items() if p)
    random = sorted(n for n, p in state.items() if not p)
    if not state:
        status = "no model"
    elif pretrained and random:
        status = "mixed"
    else:
        status = "pretrained" if pretrained else "random"
    return WeightsInfo(status, pretrained, random)


def _label_type(line: str) -> tuple[bool, str | None]:
    """(is this line a label/heading?, which block it starts: goals/prerequisites/runtime/None)."""
    for regex in (_HEADING_RE, _BOLD_LABEL_RE, _COLON_LABEL_RE):
        m = regex.match(line)
        if m:
            groups = m.groupdict()
            label = next(groups[g] for g in ("label", "label2", "label3") if groups.get(g) is not None)
            bullet = any(groups.get(g) for g in ("bullet", "bullet2", "bullet3"))
            for kind, kw in _LABEL_KEYWORDS.items():
                if kw.search(label):
                    return True, kind
            return (regex is _HEADING_RE or (regex is _BOLD_LABEL_RE and not bullet)), None
    return False, None


def parse_intro(markdown: str) -> tuple[str, str, str]:
    """Split a chapter's first markdown cell into ``(title, goals, prerequisites)`` (markdown strings).

    The title is the first heading. Goals and prerequisites are the blocks that follow a heading, a
    bold label or a ``Label:`` whose text names them (Goals/You will learn/目标, Prerequisites/先修…).
    """
    # a label in the middle of a line ("… logarithms. **Run time.** About a minute") starts a new line
    markdown = _INLINE_LABEL_RE.sub(
        lambda m: ("\n" + m[1]) if any(kw.search(m[1]) for kw in _LABEL_KEYWORDS.values()) else m[0], markdown)
    lines = markdown.splitlines()
    title = ""
    for i, line in enumerate(lines):
        m = _HEADING_RE.match(line)
        if m:
            title = m["label"].strip().strip("#").strip()
            lines = lines[i + 1:]
            break
    blocks: dict[str, list[str]] = {"goals": [], "prerequisites": [], "runtime": []}
    current: str | None = None
    for line in lines:
        is_label, kind = _label_type(line)
        if is_label or kind:
            if kind is None:
                current = None
                continue
            if kind != current:
                current = kind
                # keep what follows the label on its own line ("**Prerequisites:** chapter 01")
                rest = re.sub(r"^\s*(#{1,6}\s+.*|[-*+]?\s*\*\*[^*]+\*\*\s*[:：]?|[^:：]{1,41}[:：])", "", line,
                              count=1).strip(" :：—-")
                if rest and not _HEADING_RE.match(line):
                    blocks[kind].append(rest)
                continue
        if current:
            blocks[current].append(line)
    goals = "\n".join(blocks["goals"]).strip()
    if not goals:  # no labelled goals: the first paragraph after the title
        paragraphs = [p.strip() for p in "\n".join(lines).split("\n\n") if p.strip()]
        goals = next((p for p in paragraphs if not _label_type(p.splitlines()[0])[0]), "")
    return title, goals, "\n".join(blocks["prerequisites"]).strip()


def chapter_info(nb: nbformat.NotebookNode, file_name: str) -> ChapterInfo:
    """Title (English · 中文), goals and prerequisites of a chapter, from its first markdown cell."""
    first_md = next((c for c in nb.cells if c.get("cell_type") == "markdown"), None)
    stem = Path(file_name).stem
    title, goals, prereq = parse_intro(_joined(first_md.source)) if first_md else ("", "", "")
    title = re.sub(r"^\d{1,2}\s*[·.:：\-–—]\s*", "", title) or stem[3:].replace("_", " ")
    en, _, zh = title.rpartition("·")
    if not re.search(r"[\u3000-\u9fff]", zh) or not en.strip():  # no Chinese part after the last "·"
        en, zh = title, ""
    return ChapterInfo(file_name, stem[:2], title, en.strip(), zh.strip(), goals, prereq)


def _markdown_html(markdown: str) -> str:
    """Markdown → HTML with nbconvert's own (mistune) renderer."""
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    return markdown2html_mistune(markdown) if markdown.strip() else ""


def notebook_to_html(nb: nbformat.NotebookNode, title: str) -> str:
    """One notebook (executed or markdown-only) → a standalone HTML page, via nbconvert."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb, resources={"metadata": {"name": title}})
    return body


def render_glossary(glossary_md: str | Path, html_dir: str | Path) -> Path:
    """``glossary.md`` → ``glossary.html`` (a one-cell markdown notebook rendered by nbconvert)."""
    text = Path(glossary_md).read_text(encoding="utf-8")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(text)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    out = Path(html_dir) / "glossary.html"
    out.write_text(notebook_to_html(nb, "Glossary · 术语表"), encoding="utf-8")
    return out


def _runtime_cell(file_name: str, timings: dict, nb: nbformat.NotebookNode | None) -> str:
    entries = timings.get(file_name, {})
    lines = []
    for device_type in sorted(entries):
        e = entries[device_type]
        params = e.get("parameters") or {}
        note = (" with " + ", ".join(f"{k}={v!r}" for k, v in params.items())) if params else ""
        lines.append(f"<b>{html.escape(device_type.upper())}</b>: {format_seconds(e['seconds'])} "
                     f"<span class='dim'>({html.escape(e.get('device', ''))}{html.escape(note)}, "
                     f"{html.escape(e.get('finished', '')[:10])})</span>")
    if not lines and nb is not None:  # executed outside pt_helpers.run: papermill's own measurement
        duration = nb.metadata.get("papermill", {}).get("duration")
        if duration:
            lines.append(f"{format_seconds(duration)} <span class='dim'>(papermill; device not recorded)</span>")
    return "<br>".join(lines) or "<span class='dim'>not run in this build</span>"


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI","Noto Sans CJK SC","PingFang SC",sans-serif;
max-width:1200px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;width:100%}th,td{border-bottom:1px solid #ddd;padding:.6em .5em;
vertical-align:top;text-align:left}th{background:#f4f4f4}td p{margin:.2em 0}td ul{margin:.2em 0;padding-left:1.2em}
.dim{color:#777;font-size:.85em}.zh{color:#555}.w-pretrained{color:#16620f}.w-random{color:#a40000}
.w-mixed{color:#8a5a00}.num{font-weight:bold;font-size:1.3em}
"""


def build_index(chapters: list[tuple[ChapterInfo, WeightsInfo | None, bool]], timings: dict,
                executed: dict[str, nbformat.NotebookNode], has_glossary: bool) -> str:
    """The course map page (HTML): one row per chapter, measured times and weight provenance."""
    rows = []
    for info, weights, has_page in chapters:
        title = (f"{html.escape(info.title_en)}<br><span class='zh'>{html.escape(info.title_zh)}</span>"
                 if info.title_zh else html.escape(info.title))
        link = f"<a href='{html.escape(Path(info.file).stem)}.html'>{title}</a>" if has_page else title
        if weights is None:
            w = "<span class='dim'>not executed in this build</span>"
        else:
            w = f"<span class='w-{weights.status.split()[0]}'>{html.escape(weights.describe())}</span>"
        rows.append(
            f"<tr><td class='num'>{info.number}</td><td>{link}<br><span class='dim'>{html.escape(info.file)}"
            f"</span></td><td>{_markdown_html(info.goals)}</td><td>{_markdown_html(info.prerequisites)}</td>"
            f"<td>{_runtime_cell(info.file, timings, executed.get(info.file))}</td><td>{w}</td></tr>")
    glossary = ("<p>📖 <a href='glossary.html'>Glossary · 术语表</a> — the course's key terms in English "
                "and Chinese.</p>" if has_glossary else "")
    built = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Prompt Tuning from First Principles · 大语言模型原理与工程实践：提示微调 — course map</title>
<style>{_CSS}</style>
<script>window.MathJax = {{tex: {{inlineMath: [["$", "$"], ["\\(", "\\)"]]}}}};</script>
<script defer src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"></script></head><body>
<h1>Prompt Tuning from First Principles<br><span class="zh">大语言模型原理与工程实践：提示微调</span></h1>
<h2>Course map · 课程地图</h2>
{glossary}
<p class="dim">Run times were measured by <code>python -m pt_helpers.run</code> on the device named
(one entry per device type, from <code>build/timings.json</code>). “Weights” is read from each executed
notebook's own output: numbers from RANDOM weights show mechanics only and are meaningless as results.
Built {built}.</p>
<table><thead><tr><th>#</th><th>Chapter · 章节</th><th>What it teaches · 学习目标</th>
<th>Prerequisites · 先修</th><th>Run time (measured) · 运行时间</th><th>Weights · 权重</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table></body></html>
"""


def build_site(executed_dir: str | Path = EXECUTED_DIR, html_dir: str | Path = "build/html", *,
               timings_file: str | Path = TIMINGS_FILE, notebooks_dir: str | Path = NOTEBOOKS_DIR,
               glossary: str | Path | None = None) -> Path:
    """Render every executed ``NN_*.ipynb`` to HTML, the glossary, and ``index.html``; return its path.

    Chapters that exist in ``notebooks_dir`` but were not executed are listed as such on the map.
    """
    executed_dir, html_dir, notebooks_dir = Path(executed_dir), Path(html_dir), Path(notebooks_dir)
    executed_files = sorted(p for p in executed_dir.glob("*.ipynb") if NOTEBOOK_PATTERN.match(p.name)) \
        if executed_dir.is_dir() else []
    source_files = sorted(p for p in notebooks_dir.glob("*.ipynb") if NOTEBOOK_PATTERN.match(p.name)) \
        if notebooks_dir.is_dir() else []
    if not executed_files:
        raise SiteError(f"no executed notebooks in {executed_dir}: run `python -m pt_helpers.run all` first.")
    html_dir.mkdir(parents=True, exist_ok=True)
    timings = load_timings(timings_file)
    executed = {p.name: nbformat.read(p, as_version=4) for p in executed_files}
    chapters = []
    for name in sorted(set(executed) | {p.name for p in source_files}):
        nb = executed.get(name) or nbformat.read(notebooks_dir / name, as_version=4)
        info = chapter_info(nb, name)
        weights = detect_weights(nb) if name in executed else None
        if name in executed:
            (html_dir / f"{Path(name).stem}.html").write_text(
                notebook_to_html(nb, f"{info.number} · {info.title}"), encoding="utf-8")
        chapters.append((info, weights, name in executed))
    glossary_path = Path(glossary) if glossary else notebooks_dir / GLOSSARY_NAME
    if glossary_path.is_file():
        render_glossary(glossary_path, html_dir)
    index = html_dir / "index.html"
    index.write_text(build_index(chapters, timings, executed, glossary_path.is_file()), encoding="utf-8")
    (html_dir / "course_map.json").write_text(json.dumps(
        [dict(file=i.file, title=i.title, weights=None if w is None else w.__dict__,
              timings=timings.get(i.file, {})) for i, w, _ in chapters], indent=1, ensure_ascii=False))
    return index


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pt_helpers.site EXECUTED_DIR HTML_DIR``: (re)build the site without re-executing."""
    p = argparse.ArgumentParser(prog="python -m pt_helpers.site", description=__doc__.splitlines()[0])
    p.add_argument("executed_dir", nargs="?", default=str(EXECUTED_DIR))
    p.add_argument("html_dir", nargs="?", default="build/html")
    p.add_argument("--timings", default=str(TIMINGS_FILE))
    p.add_argument("--notebooks-dir", default=str(NOTEBOOKS_DIR))
    args = p.parse_args(argv)
    try:
        index = build_site(args.executed_dir, args.html_dir, timings_file=args.timings,
                           notebooks_dir=args.notebooks_dir)
    except CourseError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    print(f"site: {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
