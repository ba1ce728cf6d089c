"""The course's static site: executed notebooks as HTML (nbconvert), the course map, the glossary.

    python -m pt_helpers.course.site build/executed build/html
    # usually: python -m pt_helpers.course.run all --html build/html

The course map (``index.html``) has one row per chapter, read from the notebooks themselves:

* title (English · 中文) and what it teaches / its prerequisites — from the first markdown cell;
* run time and device — *measured* by :mod:`pt_helpers.course.run` and stored per device type in
  ``build/timings.json`` (so a CPU build and a GPU build both show), never typed by hand;
* where its numbers came from — read as data from the executed notebook's outputs: each model loaded
  hands over a provenance record (``project.publish_provenance``: name, pretrained or not, source …),
  so a chapter is *pretrained*, *random*, *mixed* (which model was which is listed) or *no model*.

* the quick profile's measured time and peak memory on the default models at 2 threads — from the executed
  edition's record ``edition/edition.json`` (:mod:`pt_helpers.course.edition`, ``make edition``), with the
  10-minute and 3 GiB budgets checked and a chapter whose source changed since marked *stale*; a chapter not in
  the edition says so;
* whether its last run failed — :mod:`pt_helpers.course.run` leaves ``NN_name.failed.json`` beside the executed
  copies when a run fails: the map then marks the chapter FAILED with the error and the failing cell,
  links the failed run's page (``NN_name.failed.html``, with the traceback) and keeps linking the last
  good page, which that failed run did not replace.

Notebook pages are rendered by nbconvert's ``HTMLExporter`` (the ``lab`` template); the glossary
(``notebooks/glossary.md``) is rendered by the same exporter as a one-cell markdown notebook.

The site works offline: math is typeset by MathJax 3 copied from the ``django-static-mathjax`` package
(a plain copy of MathJax's browser files; Django itself is not needed) into ``HTML_DIR/mathjax/`` and
loaded by relative path; nothing is fetched from a CDN unless that package is missing (then a warning says so).
"""

from __future__ import annotations

import argparse
import html
import importlib.metadata
import json
import os
import re
import shutil
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import nbformat

from ..errors import CourseError, SiteError
from ..project import (
    EXECUTED_DIR,
    NOTEBOOK_PATTERN,
    NOTEBOOKS_DIR,
    PROJECT_ROOT,
    PROVENANCE_MIME,
    TIMINGS_FILE,
    atomic_write_json,
    atomic_write_text,
    format_seconds,
    load_timings,
)

GLOSSARY_NAME = "glossary.md"
HTML_DIR = PROJECT_ROOT / "build" / "html"  # the default site folder, whatever the working directory
FAILED_RECORD_SUFFIX = ".failed.json"  # written by pt_helpers.course.run beside the executed copies
MATHJAX_PACKAGE = "django-static-mathjax"  # MathJax 3's browser files, as a wheel (no Django needed)
MATHJAX_DIR = "mathjax"  # under the site folder
MATHJAX_SCRIPT = "tex-chtml.js"
MATHJAX_CDN = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"  # only when the package is missing
# what tex-chtml.js loads at run time: TeX extensions on demand (\require, autoload), the CHTML fonts, and
# the menu's accessibility tools (explorer, speech)
_MATHJAX_PARTS = ("tex-chtml.js", "input/tex/extensions", "output/chtml/fonts/woff-v2", "ui", "a11y", "sre")

# `LoadedModel.describe()`:  "<name> (<kind>) ← <source>: <location> · <pretrained|RANDOMLY INITIALISED> weights · …"
_DESCRIBE_RE = re.compile(
    r"^(?P<name>\S+) \((?P<kind>causal|encoder|masked)\) ← (?P<source>\w+): .*?· "
    r"(?P<weights>pretrained|RANDOMLY INITIALISED) weights",
    re.MULTILINE,
)
# `LoadedModel.banner()`:  "!! RANDOM WEIGHTS: no pretrained '<name>' could be loaded here, …"
_BANNER_RE = re.compile(r"RANDOM WEIGHTS: no pretrained '(?P<name>[^']+)'")

_LABEL_KEYWORDS = {
    "goals": re.compile(r"goal|learn|you will|objective|teach|outcome|目标|学习|收获", re.I),
    "prerequisites": re.compile(r"prereq|requires|before you start|先修|前置|预备|前提", re.I),
    "runtime": re.compile(r"run ?time|running time|how long|运行时间|耗时|时长", re.I),
}
_HEADING_RE = re.compile(r"^\s{0,3}#{1,6}\s+(?P<label>.*)$")
# a bold label: "**Goals.**", "**Prerequisites:**", "**Run time**:" or a line that is only "**Goals · 目标**"
_BOLD_LABEL_RE = re.compile(
    r"^\s*(?P<bullet>[-*+]\s+)?\*\*(?P<label>[^*]{1,60}?[.:：]\s*)\*\*"
    r"|^\s*(?P<bullet2>[-*+]\s+)?\*\*(?P<label2>[^*]{1,60})\*\*\s*[.:：]?\s*$"
    r"|^\s*(?P<bullet3>[-*+]\s+)?\*\*(?P<label3>[^*]{1,60})\*\*\s*[.:：]"
)
_COLON_LABEL_RE = re.compile(r"^\s*(?P<label>[A-Za-z\u4e00-\u9fff][\w \u4e00-\u9fff·/()\-]{0,30})[:：](\s|$)")
_INLINE_LABEL_RE = re.compile(r"(?<=\S)[ \t]+(\*\*[^*\n]{1,60}?[.:：]\s*\*\*|\*\*[^*\n]{1,60}\*\*[.:：])")


@dataclass
class WeightsInfo:
    """Where a chapter's numbers came from: which models loaded with pretrained or random weights."""

    status: str  # "pretrained" | "random" | "mixed" | "no model"
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

    file: str  # "03_in_context_learning.ipynb"
    number: str  # "03"
    title: str  # full title line, e.g. "In-context learning · 上下文学习"
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


def provenance_records(nb: nbformat.NotebookNode) -> list[dict]:
    """The model-provenance records (``project.PROVENANCE_MIME`` data) an executed notebook's cells output."""
    records = []
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        for out in cell.get("outputs", []):
            data = out.get("data", {}) if out.get("output_type") in ("display_data", "execute_result") else {}
            record = data.get(PROVENANCE_MIME)
            if isinstance(record, str):  # nbformat may keep JSON data as its text
                record = json.loads(record)
            if isinstance(record, dict) and "name" in record and "is_pretrained" in record:
                records.append(record)
    return records


def detect_weights(nb: nbformat.NotebookNode) -> WeightsInfo:
    """Classify an *executed* notebook by the provenance records its ``load_model`` calls output (data).

    An executed copy made before ``load_model`` published records (no record at all) is read the old way,
    from the printed ``describe()`` line and banner; drop that fallback once every copy is re-executed.
    """
    state: dict[str, bool] = {}  # model name -> pretrained? (random wins if both seen)
    records = provenance_records(nb)
    for r in records:
        state[str(r["name"])] = state.get(str(r["name"]), True) and bool(r["is_pretrained"])
    if not records:
        text = _outputs_text(nb)
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
        lambda m: ("\n" + m[1]) if any(kw.search(m[1]) for kw in _LABEL_KEYWORDS.values()) else m[0], markdown
    )
    lines = markdown.splitlines()
    title = ""
    for i, line in enumerate(lines):
        m = _HEADING_RE.match(line)
        if m:
            title = m["label"].strip().strip("#").strip()
            lines = lines[i + 1 :]
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
                rest = re.sub(
                    r"^\s*(#{1,6}\s+.*|[-*+]?\s*\*\*[^*]+\*\*\s*[:：]?|[^:：]{1,41}[:：])", "", line, count=1
                ).strip(" :：—-")
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


def mathjax_source() -> tuple[Path, str] | None:
    """``(MathJax folder, package version)`` of the installed ``django-static-mathjax``; None if missing."""
    try:
        dist = importlib.metadata.distribution(MATHJAX_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None
    root = Path(str(dist.locate_file("mathjax/static/mathjax")))
    return (root, dist.version) if (root / "es5" / MATHJAX_SCRIPT).is_file() else None


def install_mathjax(html_dir: str | Path) -> str:
    """Copy MathJax into ``html_dir/mathjax/`` (once per package version); return the ``src`` for its pages.

    The ``src`` is relative (``mathjax/tex-chtml.js``), so the site typesets its math offline, from a
    file:// URL or any web server. Without the package: a warning, and the CDN URL (online only).
    """
    found = mathjax_source()
    if found is None:
        warnings.warn(
            f"{MATHJAX_PACKAGE} is not installed (`make install`, or pip install {MATHJAX_PACKAGE}): the site "
            "loads MathJax from a CDN, so offline its equations show as raw LaTeX.",
            stacklevel=2,
        )
        return MATHJAX_CDN
    root, version = found
    html_dir = Path(html_dir)
    dest = html_dir / MATHJAX_DIR
    stamp = dest / ".version"
    src = f"{MATHJAX_DIR}/{MATHJAX_SCRIPT}"
    if (dest / MATHJAX_SCRIPT).is_file() and stamp.is_file() and stamp.read_text().strip() == version:
        return src
    html_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".mathjax.", dir=html_dir))
    try:
        for part in _MATHJAX_PARTS:
            source, target = root / "es5" / part, tmp / part
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target)
            elif source.is_file():
                shutil.copy2(source, target)
        if (root / "LICENSE").is_file():
            shutil.copy2(root / "LICENSE", tmp / "LICENSE")
        (tmp / ".version").write_text(version + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)  # the folder appears whole or not at all
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return src


def mathjax_head(src: str = f"{MATHJAX_DIR}/{MATHJAX_SCRIPT}") -> str:
    r"""The ``<script>`` tags that configure and load MathJax 3 with Jupyter's delimiters.

    ``$…$`` and ``\(…\)`` inline, ``$$…$$`` and ``\[…\]`` displayed, ``\$`` a dollar sign, like the
    notebook itself; code and outputs (``<pre>``, ``<code>``) are left alone.
    """
    return (
        "<script>\n"
        "window.MathJax = {\n"
        '  tex: {inlineMath: [["$", "$"], ["\\\\(", "\\\\)"]], displayMath: [["$$", "$$"], ["\\\\[", "\\\\]"]],\n'
        '        processEscapes: true, processEnvironments: true, tags: "ams"},\n'
        '  options: {ignoreHtmlClass: "tex2jax_ignore|mathjax_ignore",\n'
        '            processHtmlClass: "tex2jax_process|mathjax_process"}\n'
        "};\n"
        "</script>\n"
        f'<script defer src="{html.escape(src)}"></script>'
    )


# nbconvert's lab page, with our MathJax in place of its CDN MathJax 2, and RequireJS (a CDN script that only
# Jupyter widgets need) only on pages that have widgets
_PAGE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}
{%- if "widgets" in nb.metadata -%}{{ super() }}{%- endif -%}
{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}
{{ resources.pt_mathjax_head }}
{{ resources.pt_font_css }}
{%- endblock html_head_js_mathjax -%}
"""


def notebook_to_html(
    nb: nbformat.NotebookNode, title: str, mathjax_src: str = f"{MATHJAX_DIR}/{MATHJAX_SCRIPT}"
) -> str:
    """One notebook (executed or markdown-only) → a standalone HTML page, via nbconvert.

    ``mathjax_src`` is where the page loads MathJax from (see :func:`install_mathjax`).
    """
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab")
    exporter.raw_template = _PAGE_TEMPLATE
    resources = {
        "metadata": {"name": title},
        "pt_mathjax_head": mathjax_head(mathjax_src),
        "pt_font_css": PAGE_FONT_CSS,
    }
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    return body


def render_markdown_page(markdown: str | Path, out: str | Path, title: str, mathjax_src: str | None = None) -> Path:
    """A markdown file → one HTML page (a one-cell markdown notebook rendered by nbconvert, like the chapters)."""
    text = Path(markdown).read_text(encoding="utf-8")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(text)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    out = Path(out)
    src = mathjax_src or install_mathjax(out.parent)
    atomic_write_text(out, notebook_to_html(nb, title, src))
    return out


def render_glossary(glossary_md: str | Path, html_dir: str | Path, mathjax_src: str | None = None) -> Path:
    """``glossary.md`` → ``glossary.html``."""
    return render_markdown_page(glossary_md, Path(html_dir) / "glossary.html", "Glossary · 术语表", mathjax_src)


# The learner's guide in both languages (issue 31: the site links both): (markdown at the project root, page, link)
GUIDES = (("README.md", "guide.html", "Guide (English)"), ("README.zh-CN.md", "guide.zh-CN.html", "学习指南（中文）"))


def render_guides(html_dir: str | Path, mathjax_src: str | None = None, root: str | Path = PROJECT_ROOT):
    """Render the guides that exist under ``root``; returns ``[(page, link text), …]`` for the course map."""
    pages = []
    for markdown, page, label in GUIDES:
        if (Path(root) / markdown).is_file():
            render_markdown_page(Path(root) / markdown, Path(html_dir) / page, label, mathjax_src)
            pages.append((page, label))
    return pages


def _read_notebook(path: Path, what: str) -> nbformat.NotebookNode | None:
    """``path`` as a notebook, or None with a warning naming the file (a damaged file must not stop the site)."""
    try:
        return nbformat.read(path, as_version=4)
    except Exception as exc:  # JSON, schema, encoding, permissions …
        warnings.warn(
            f"{what} {path} is unreadable ({type(exc).__name__}: {exc}); the site leaves it out.", stacklevel=2
        )
        return None


def load_failures(executed_dir: str | Path) -> dict[str, dict]:
    """``{notebook file name: failure record}`` from the ``NN_name.failed.json`` files of :mod:`pt_helpers.course.run`.

    Each record has ``error``, ``ename``, ``evalue``, ``cell_index``, ``failed_at``, ``failed_copy`` (the
    executed copy of the failed run, or None) and ``last_good``. An unreadable record is skipped with a warning.
    """
    folder = Path(executed_dir)
    failures: dict[str, dict] = {}
    if not folder.is_dir():
        return failures
    for path in sorted(folder.glob(f"*{FAILED_RECORD_SUFFIX}")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            if not (isinstance(record, dict) and NOTEBOOK_PATTERN.match(str(record.get("notebook", "")))):
                raise ValueError("not a failure record of pt_helpers.course.run")
        except (OSError, ValueError) as exc:
            warnings.warn(
                f"failure record {path} is unreadable ({exc}); the course map does not show it.", stacklevel=2
            )
            continue
        copy = record.get("failed_copy")
        if copy and not Path(copy).is_file() and (folder / Path(copy).name).is_file():
            record["failed_copy"] = str(folder / Path(copy).name)  # the build folder was moved
        failures[record["notebook"]] = record
    return failures


def _runtime_cell(file_name: str, timings: dict, nb: nbformat.NotebookNode | None) -> str:
    entries = timings.get(file_name, {})
    lines = []
    for device_type in sorted(entries):
        e = entries[device_type]
        params = e.get("parameters") or {}
        note = (" with " + ", ".join(f"{k}={v!r}" for k, v in params.items())) if params else ""
        lines.append(
            f"<b>{html.escape(device_type.upper())}</b>: {format_seconds(e['seconds'])} "
            f"<span class='dim'>({html.escape(e.get('device', ''))}{html.escape(note)}, "
            f"{html.escape(e.get('finished', '')[:10])})</span>"
        )
    if not lines and nb is not None:  # executed outside pt_helpers.course.run: papermill's own measurement
        duration = nb.metadata.get("papermill", {}).get("duration")
        if duration:
            lines.append(f"{format_seconds(duration)} <span class='dim'>(papermill; device not recorded)</span>")
    return "<br>".join(lines) or "<span class='dim'>not run in this build</span>"


def _edition_cell(file_name: str, edition: dict, states: dict[str, str]) -> str:
    """Time and peak memory of the chapter's quick profile in the executed edition, budgets and staleness."""
    from .edition import budget_checks

    entry = (edition.get("chapters") or {}).get(file_name)
    if entry is None:
        return "<span class='dim'>not in the executed edition yet</span>"
    if entry.get("status") != "completed":
        return f"<span class='failed'>edition run: {html.escape(str(entry.get('status')))}</span>"
    check = budget_checks({"chapters": {file_name: entry}})[file_name]
    over = [w for w, ok in (("over 10 min", check["time"]), ("over 3 GiB", check["memory"])) if ok is False]
    if check["time"] is False and check["time_cpu"]:  # a loaded machine's wall time; the CPU time is within
        over[0] = f"over 10 min wall under load; CPU {format_seconds(entry['cpu_seconds'])}"
    text = f"<b>{format_seconds(entry['seconds'])}</b> · {entry['peak_rss_mib'] / 1024:.1f} GiB"
    if over:
        text += f" <span class='failed'>({', '.join(over)})</span>"
    if states.get(file_name) == "stale":
        text += " <span class='stale'>stale: the chapter changed since</span>"
    return text


# Fonts that hold Chinese glyphs on the common systems (macOS, Windows, Linux desktops, Android), after the
# Latin system fonts: a page that names none of them shows 大语言模型 as empty boxes where the browser's default
# font has no CJK glyphs.
CJK_FONT_STACK = (
    'system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"PingFang SC","Hiragino Sans GB",'
    '"Microsoft YaHei","Noto Sans CJK SC","Noto Sans SC","Source Han Sans SC","WenQuanYi Micro Hei",sans-serif'
)
_CSS = (
    """
body{font-family:FONTS;max-width:1240px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;width:100%;table-layout:fixed}th,td{border-bottom:1px solid #ddd;padding:.5em .4em;
vertical-align:top;text-align:left;overflow-wrap:anywhere}th{background:#f4f4f4}td p{margin:.2em 0}
td ul,td ol{margin:.2em 0;padding-left:1.2em}col.num{width:2.6em}col.chapter{width:22%}col.time{width:15%}
col.weights{width:17%}
.dim{color:#777;font-size:.85em}.zh{color:#555}.w-pretrained{color:#16620f}.w-random{color:#a40000}
.w-mixed{color:#8a5a00}.num{font-weight:bold;font-size:1.3em}.stale{color:#8a5a00;font-size:.85em;display:block}
tr.failed{background:#fff3f3}div.failed,p.failed,span.failed{color:#a40000;font-size:.9em;margin-top:.4em}
div.failed code{white-space:pre-wrap;word-break:break-word}details{margin:.6em 0}summary{cursor:pointer}
"""
).replace("FONTS", CJK_FONT_STACK)
# chapter pages (nbconvert's lab template) take their fonts from these variables
PAGE_FONT_CSS = (
    f"<style>:root{{--jp-content-font-family:{CJK_FONT_STACK};--jp-ui-font-family:{CJK_FONT_STACK}}}</style>"
)


def _failure_cell(failure: dict, has_good_page: bool) -> str:
    """The FAILED note under a chapter's title: when, which cell, the error, links to the failed run."""
    when = str(failure.get("failed_at") or "")[:16].replace("T", " ")
    cell = failure.get("cell_index")
    error = f"{failure.get('ename') or 'Error'}: {failure.get('evalue') or ''}".strip().rstrip(":")
    lines = [
        f"<b>✗ FAILED</b> in the last run{' (' + html.escape(when) + ' UTC)' if when else ''}"
        + (f", in cell {int(cell)}" if isinstance(cell, int) else ""),
        f"<code>{html.escape(error[:400])}</code>",
    ]
    if failure.get("page"):
        lines.append(f"<a href='{html.escape(failure['page'])}'>the failed run, with its traceback</a>")
    lines.append(
        "the chapter link shows the last good run, which the failed run did not replace"
        if has_good_page
        else "no good run of this chapter yet"
    )
    return "<div class='failed'>" + "<br>".join(lines) + "</div>"


def _weights_short(weights: WeightsInfo) -> str:
    """The map's weights column: real or stand-in, and which models."""
    if weights.status == "no model":
        return "no model (pure computation)"
    parts = []
    if weights.pretrained:
        parts.append("<b>real</b>: " + html.escape(", ".join(weights.pretrained)))
    if weights.random:
        parts.append("<b>stand-in</b> (random weights): " + html.escape(", ".join(weights.random)))
    return "<br>".join(parts)


def build_index(
    chapters: list[tuple[ChapterInfo, WeightsInfo | None, bool]],
    timings: dict,
    executed: dict[str, nbformat.NotebookNode],
    has_glossary: bool,
    *,
    failures: dict[str, dict] | None = None,
    mathjax_src: str = f"{MATHJAX_DIR}/{MATHJAX_SCRIPT}",
    edition: dict | None = None,
    edition_states: dict[str, str] | None = None,
    guides: Sequence[tuple[str, str]] = (),
) -> str:
    """The course map page (HTML): one row per chapter — chapter, what it teaches, time, real or stand-in weights.

    ``failures`` maps a notebook file name to its failure record (see :func:`load_failures`), with the
    file name of its rendered failed run under ``"page"``. ``edition``: the executed edition's record
    (:func:`pt_helpers.course.edition.load_edition`: each chapter's measured quick profile), ``edition_states``
    its chapters' states (:func:`pt_helpers.course.edition.edition_status`: current, stale, …). How the times
    were measured is folded into a ``<details>`` note under the table.
    """
    failures, edition, states = failures or {}, edition or {}, edition_states or {}
    rows = []
    for info, weights, has_page in chapters:
        title = (
            f"{html.escape(info.title_en)}<br><span class='zh'>{html.escape(info.title_zh)}</span>"
            if info.title_zh
            else html.escape(info.title)
        )
        link = f"<a href='{html.escape(Path(info.file).stem)}.html'>{title}</a>" if has_page else title
        failure = failures.get(info.file)
        if weights is not None:
            w = f"<span class='w-{weights.status.split()[0]}'>{_weights_short(weights)}</span>"
        elif failure is not None:
            w = "<span class='dim'>no successful run to read it from</span>"
        else:
            w = "<span class='dim'>not executed in this build</span>"
        prereq = (
            f"<div class='dim'>Prerequisites · 先修: {_markdown_html(info.prerequisites)}</div>"
            if info.prerequisites
            else ""
        )
        row_class = " class='failed'" if failure else ""
        rows.append(
            f"<tr{row_class}><td class='num'>{info.number}</td><td>{link}<br>"
            f"<span class='dim'>{html.escape(info.file)}</span>{prereq}"
            f"{_failure_cell(failure, has_page) if failure else ''}</td>"
            f"<td>{_markdown_html(info.goals)}</td>"
            f"<td>{_edition_cell(info.file, edition, states)}"
            f"<div class='dim'>this build: {_runtime_cell(info.file, timings, executed.get(info.file))}</div></td>"
            f"<td>{w}</td></tr>"
        )
    glossary = (
        "<p>📖 <a href='glossary.html'>Glossary · 术语表</a> — the course's key terms in English and Chinese.</p>"
        if has_glossary
        else ""
    )
    if guides:
        links = " · ".join(f"<a href='{html.escape(page)}'>{html.escape(label)}</a>" for page, label in guides)
        glossary = f"<p>📘 {links} — install, run, rerun, offline use.</p>" + glossary
    failed_note = (
        f"<p class='failed'><b>{len(failures)} chapter(s) failed in their last run</b> — marked below; rerun one "
        "with <code>python -m pt_helpers.course.run NN</code>.</p>"
        if failures
        else ""
    )
    built = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Prompt Tuning from First Principles · 大语言模型原理与工程实践：提示微调 — course map</title>
<style>{_CSS}</style>
{mathjax_head(mathjax_src)}</head><body>
<h1>Prompt Tuning from First Principles<br><span class="zh" lang="zh-CN">大语言模型原理与工程实践：提示微调</span></h1>
<h2>Course map · 课程地图</h2>
{glossary}
{failed_note}
<table><colgroup><col class="num"><col class="chapter"><col class="teaches"><col class="time"><col class="weights">
</colgroup><thead><tr><th>#</th><th>Chapter · 章节</th><th>What it teaches · 学习目标</th>
<th>Time · 时间<br><span class="dim">quick profile, 2 threads · peak memory</span></th>
<th>Weights · 权重<br><span class="dim">real or stand-in</span></th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
{_measurement_note(edition, built)}
</body></html>
"""


def _measurement_note(edition: dict, built: str) -> str:
    """How the times were measured, folded: a reader opens it when they compare their own times."""
    parts = [
        "“Time” is the chapter's quick profile as measured in the executed edition (<code>edition/</code>, rebuilt "
        "by <code>make edition</code>): wall time and the peak resident memory of the notebook's kernel, on the "
        "course's default models. The budget is ≤ 10 min and ≤ 3 GiB per chapter on a 2-core CPU; a chapter "
        "marked <i>stale</i> changed after its edition run."
    ]
    if edition:
        fields = [
            f"{k}: {html.escape(str(edition[k]))}"
            for k in ("date", "commit", "device", "threads", "versions", "load_note")
            if k in edition
        ]
        loads = [
            f"{name[:2]} {e.get('load_before')} → {e.get('load_after')}"
            for name, e in (edition.get("chapters") or {}).items()
            if "load_before" in e
        ]
        parts.append("Edition run — " + "; ".join(fields) + ".")
        if loads:
            parts.append("1-minute load average before → after each chapter: " + ", ".join(loads) + ".")
    parts.append(
        "“this build” is the run time <code>python -m pt_helpers.course.run</code> measured for the pages of this "
        "site, per device type (<code>build/timings.json</code>). “Weights” is read from each executed notebook's "
        "own output: numbers from stand-in (random) weights show mechanics only and are meaningless as results. "
        f"Built {built}."
    )
    body = "".join(f"<p class='dim'>{p}</p>" for p in parts)
    return f"<details><summary>How these were measured · 测量条件</summary>{body}</details>"


def _notebook_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.ipynb") if NOTEBOOK_PATTERN.match(p.name)) if folder.is_dir() else []


def build_site(
    executed_dir: str | Path = EXECUTED_DIR,
    html_dir: str | Path = HTML_DIR,
    *,
    timings_file: str | Path = TIMINGS_FILE,
    notebooks_dir: str | Path = NOTEBOOKS_DIR,
    glossary: str | Path | None = None,
    edition_dir: str | Path | None = None,
) -> Path:
    """Render every executed ``NN_*.ipynb`` to HTML, the glossary, and ``index.html``; return its path.

    Chapters that exist in ``notebooks_dir`` but were not executed are listed as such on the map; chapters
    whose last run failed (a ``NN_name.failed.json`` from :mod:`pt_helpers.course.run`) are marked FAILED, with
    their failed run rendered as ``NN_name.failed.html`` and their last good page, if any, still linked.
    Every file is written atomically, so an interrupted build leaves the previous pages whole.
    """
    executed_dir, html_dir, notebooks_dir = Path(executed_dir), Path(html_dir), Path(notebooks_dir)
    failures = load_failures(executed_dir)
    executed = {p.name: nb for p in _notebook_files(executed_dir) if (nb := _read_notebook(p, "executed notebook"))}
    source_files = {p.name: p for p in _notebook_files(notebooks_dir)}
    if not executed and not failures:
        raise SiteError(f"no executed notebooks in {executed_dir}: run `python -m pt_helpers.course.run all` first.")
    html_dir.mkdir(parents=True, exist_ok=True)
    mathjax_src = install_mathjax(html_dir)
    timings = load_timings(timings_file)
    from .edition import EDITION_DIR, edition_status, load_edition

    edition_dir = Path(edition_dir) if edition_dir is not None else EDITION_DIR
    edition = load_edition(edition_dir)
    edition_states = edition_status(edition_dir, notebooks_dir) if edition else {}
    chapters = []
    for name in sorted(set(executed) | set(source_files) | set(failures)):
        failure = failures.get(name)
        failed_nb = None
        if failure is not None and failure.get("failed_copy") and Path(failure["failed_copy"]).is_file():
            failed_nb = _read_notebook(Path(failure["failed_copy"]), "executed copy of a failed run")
        nb = executed.get(name)
        if nb is None and name in source_files:
            nb = _read_notebook(source_files[name], "notebook")
        nb = nb or failed_nb or nbformat.v4.new_notebook()
        info = chapter_info(nb, name)
        weights = detect_weights(nb) if name in executed else None
        if name in executed:
            atomic_write_text(
                html_dir / f"{Path(name).stem}.html", notebook_to_html(nb, f"{info.number} · {info.title}", mathjax_src)
            )
        if failed_nb is not None:
            page = f"{Path(name).stem}.failed.html"
            title = f"{info.number} · {info.title} — FAILED run"
            atomic_write_text(html_dir / page, notebook_to_html(failed_nb, title, mathjax_src))
            failure["page"] = page
        chapters.append((info, weights, name in executed))
    for stale in html_dir.glob("*.failed.html"):  # a chapter that ran fine since: its failed page goes
        if stale.name.removesuffix(".failed.html") + ".ipynb" not in failures:
            stale.unlink(missing_ok=True)
    glossary_path = Path(glossary) if glossary else notebooks_dir / GLOSSARY_NAME
    if glossary_path.is_file():
        render_glossary(glossary_path, html_dir, mathjax_src)
    guides = render_guides(html_dir, mathjax_src)
    index = html_dir / "index.html"
    atomic_write_text(
        index,
        build_index(
            chapters,
            timings,
            executed,
            glossary_path.is_file(),
            failures=failures,
            mathjax_src=mathjax_src,
            edition=edition,
            edition_states=edition_states,
            guides=guides,
        ),
    )
    course_map = []
    for info, weights, has_page in chapters:
        failure = failures.get(info.file)
        course_map.append(
            dict(
                file=info.file,
                title=info.title,
                page=f"{Path(info.file).stem}.html" if has_page else None,
                weights=None if weights is None else weights.__dict__,
                timings=timings.get(info.file, {}),
                edition=(edition.get("chapters") or {}).get(info.file),
                edition_state=edition_states.get(info.file),
                failed=None
                if failure is None
                else {k: failure.get(k) for k in ("failed_at", "cell_index", "ename", "evalue", "page")},
            )
        )
    atomic_write_json(html_dir / "course_map.json", course_map, default=repr)
    return index


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m pt_helpers.course.site EXECUTED_DIR HTML_DIR``: (re)build the site without re-executing."""
    p = argparse.ArgumentParser(prog="python -m pt_helpers.course.site", description=__doc__.splitlines()[0])
    p.add_argument("executed_dir", nargs="?", default=str(EXECUTED_DIR))
    p.add_argument("html_dir", nargs="?", default=str(HTML_DIR))
    p.add_argument("--timings", default=str(TIMINGS_FILE))
    p.add_argument("--notebooks-dir", default=str(NOTEBOOKS_DIR))
    args = p.parse_args(argv)
    try:
        index = build_site(
            args.executed_dir, args.html_dir, timings_file=args.timings, notebooks_dir=args.notebooks_dir
        )
    except CourseError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    print(f"site: {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
