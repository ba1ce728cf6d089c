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


def _dump_dom(url: str, profile, extra: list[str] | None = None) -> str:
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
        *(extra or []),
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


# ---------------------------------------------------------------------------------------------------------
# Chinese renders as glyphs (not empty boxes), and the course map fits a 1,366 px laptop screen
# ---------------------------------------------------------------------------------------------------------

TITLE_ZH = "大语言模型原理与工程实践：提示微调"


def _cjk_fonts() -> list[str]:
    """Font families fontconfig knows that cover Chinese (``fc-list :lang=zh``); [] without fontconfig."""
    fc_list = shutil.which("fc-list")
    if fc_list is None:
        return []
    done = subprocess.run([fc_list, ":lang=zh", "family"], capture_output=True, text=True, timeout=60)
    return sorted({line.split(",")[0] for line in done.stdout.splitlines() if line.strip()})


CJK_FONTS = _cjk_fonts() if BROWSER else []

# Draws each character of the page's first Chinese heading text with the font the page computed for it, on a
# canvas, and compares the pixels: a missing glyph is drawn as the same empty box (tofu) for every character,
# so two different characters drawn identically mean boxes. Also measures the page and its table at the
# window's width. The result goes into <pre id="probe"> for --dump-dom.
PROBE = """
<script>
window.addEventListener("load", () => {
  const el = [...document.querySelectorAll("h1, h1 *, h2, title")].find(e => /[\\u4e00-\\u9fff]/.test(e.textContent)
      && e.tagName !== "TITLE");
  const font = getComputedStyle(el).font;
  const chars = [...new Set([...el.textContent].filter(c => /[\\u4e00-\\u9fff]/.test(c)))].slice(0, 12);
  const draw = c => { const cv = document.createElement("canvas"); cv.width = 64; cv.height = 64;
    const ctx = cv.getContext("2d"); ctx.font = font.replace(/\\d+(\\.\\d+)?px/, "48px");
    ctx.fillText(c, 4, 52); return cv.toDataURL(); };
  const images = chars.map(draw);
  const table = document.querySelector("table");
  const out = {font: getComputedStyle(el).fontFamily, chars: chars.join(""),
    distinct: new Set(images).size, blank: images.filter(i => i === draw(" ")).length,
    pageWidth: document.documentElement.scrollWidth, windowWidth: window.innerWidth,
    tableRight: table ? table.getBoundingClientRect().right : 0};
  const pre = document.createElement("pre"); pre.id = "probe"; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def _probe(page, tmp_path, width=1366):
    """Open ``page`` (a copy with PROBE added) at ``width`` px in headless Chromium; the probe's findings."""
    import json

    probe_page = page.with_name(page.stem + ".probe.html")
    probe_page.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = _dump_dom(probe_page.as_uri(), tmp_path / f"profile-{page.stem}", [f"--window-size={width},800"])
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom, flags=re.S)
    assert found, "the probe script did not run"
    return json.loads(html.unescape(found[1]))


@pytest.mark.skipif(BROWSER is None, reason="no chromium binary found (apt-get install chromium)")
@pytest.mark.skipif(not CJK_FONTS, reason="no font covering Chinese installed (apt-get install fonts-noto-cjk)")
def test_chinese_is_drawn_as_glyphs_and_the_map_fits_a_laptop_screen(tmp_path):
    executed, notebooks, html_dir = tmp_path / "executed", tmp_path / "notebooks", tmp_path / "html"
    executed.mkdir(), notebooks.mkdir()
    long_words = "HuggingFaceTB/SmolLM2-135M-Instruct_and_a_very_long_unbroken_model_folder_name " * 3
    for i in range(1, 4):
        nb = nbformat.v4.new_notebook()
        nb.cells.append(
            nbformat.v4.new_markdown_cell(
                f"# 0{i} · Chain rule · 链式法则与困惑度\n\n**Goals.** {long_words}\n\n**Prerequisites.** {long_words}"
            )
        )
        nbformat.write(nb, executed / f"0{i}_chain_rule.ipynb")
    site.build_site(executed, html_dir, timings_file=tmp_path / "t.json", notebooks_dir=notebooks)
    for page in (html_dir / "index.html", html_dir / "01_chain_rule.html"):
        found = _probe(page, tmp_path)
        assert len(found["chars"]) >= 4, found
        # boxes: every character drawn the same; a real font draws each differently
        assert found["distinct"] == len(found["chars"]) and found["blank"] == 0, (page.name, found, CJK_FONTS)
    index = _probe(html_dir / "index.html", tmp_path)
    assert TITLE_ZH.startswith(index["chars"][:4]) or index["chars"] in TITLE_ZH
    assert "PingFang SC" in index["font"] and "Noto Sans CJK SC" in index["font"]  # the stack, as computed
    assert index["pageWidth"] <= index["windowWidth"] == 1366, index  # no horizontal scrolling …
    assert 0 < index["tableRight"] <= 1366, index  # … and the whole table, Weights column included, on screen
