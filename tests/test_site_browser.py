"""The built site typesets its math offline: a chapter page opened from disk in headless Chromium.

Chromium gets no network (every host resolves to nothing, and a dead proxy), so MathJax must come
from the site's own ``mathjax/`` folder. Skipped only when no Chromium binary is installed
(`.ci/run` installs Debian's ``chromium`` when it is missing).
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess

import nbformat
import pytest

from pt_helpers.course import site

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER = next((path for name in BROWSERS if (path := shutil.which(name))), None)

MATH_MARKDOWN = (
    "# 01 · Chain rule · 链式法则\n\n"
    "A language model factorises a sentence's probability:\n\n"
    "$$ P(w) = \\prod_i P(w_i \\mid w_{<i}) $$\n\n"
    "and a square is written inline as $x^2$."
)


def _dump_dom(url: str, profile) -> str:
    """The DOM of ``url`` after its scripts ran (virtual time: MathJax's timers run without real waiting)."""
    cmd = [
        BROWSER,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        "--host-resolver-rules=MAP * ~NOTFOUND",  # offline: no host resolves …
        "--proxy-server=http://127.0.0.1:9",  # … and any request would go to a closed port
        "--virtual-time-budget=20000",
        "--dump-dom",
        url,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def _visible_text(dom: str) -> str:
    """The page's text as a reader sees it: no scripts, styles, MathJax's hidden MathML copy, or tags."""
    dom = re.sub(r"<(script|style|mjx-assistive-mml)\b.*?</\1>", " ", dom, flags=re.S | re.I)
    return html.unescape(re.sub(r"<[^>]+>", " ", dom))


@pytest.mark.skipif(BROWSER is None, reason="no chromium binary found (apt-get install chromium)")
def test_chapter_page_typesets_math_offline_in_chromium(tmp_path):
    executed, html_dir = tmp_path / "executed", tmp_path / "html"
    executed.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell(MATH_MARKDOWN))
    cell = nbformat.v4.new_code_cell("print('cost: $5 and $6')")  # dollars in an output are not math
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="cost: $5 and $6\n")]
    nb.cells.append(cell)
    nbformat.write(nb, executed / "01_chain_rule.ipynb")
    site.build_site(executed, html_dir, timings_file=tmp_path / "t.json", notebooks_dir=tmp_path / "none")

    dom = _dump_dom((html_dir / "01_chain_rule.html").as_uri(), tmp_path / "profile")
    containers = re.findall(r"<mjx-container\b[^>]*>", dom)
    assert len(containers) == 2, "MathJax typeset nothing: is mathjax/tex-chtml.js in the site?"
    assert sum('display="true"' in c for c in containers) == 1  # $$…$$ displayed, $x^2$ inline
    assert re.search(r'<mjx-c class="mjx-c220F\b', dom)  # the product sign ∏, drawn in MathJax's own font
    text = _visible_text(dom)
    assert "$$" not in text and "\\prod" not in text and "$x^2$" not in text  # no raw LaTeX left
    assert "cost: $5 and $6" in text  # the code output is left alone
