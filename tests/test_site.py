"""Tests of pt_helpers.course.site: course-map fields from fake executed notebooks (no kernel is started)."""

from __future__ import annotations

import json
import re

import nbformat
import pytest

from pt_helpers.course import run, site

MINILM_LINE = (
    "sentence-transformers/all-MiniLM-L6-v2 (encoder) ← package: /x/model · pretrained weights · "
    "22.7 M parameters · on cpu\n"
)
GPT2_LINE = (
    "gpt2 (causal) ← random: GPT-2 family, 4 layers × 256 dims, real GPT-2 tokenizer · RANDOMLY "
    "INITIALISED weights · 29.6 M parameters · on cpu\n"
)
GPT2_BANNER = "!" * 78 + "\n!! RANDOM WEIGHTS: no pretrained 'gpt2' could be loaded here, so this is a small,\n"
INTRO = """# {num} · {en} · {zh}

**Goals.** After this notebook you can
1. do {en};
2. check it.

**Prerequisites.** Chapter 01, a little PyTorch. **Run time.** About a minute.
"""


def _executed(path, num, en, zh, printed: list[str], papermill_duration=None):
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell(INTRO.format(num=num, en=en, zh=zh)))
    for text in printed:
        cell = nbformat.v4.new_code_cell("load_model(...)")
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
        nb.cells.append(cell)
    if papermill_duration:
        nb.metadata["papermill"] = {"duration": papermill_duration}
    nbformat.write(nb, path)
    return nbformat.read(path, as_version=4)


def test_detect_weights_pretrained_random_mixed_none(tmp_path):
    pre = _executed(tmp_path / "a.ipynb", "01", "A", "甲", [MINILM_LINE])
    rnd = _executed(tmp_path / "b.ipynb", "02", "B", "乙", [GPT2_LINE + GPT2_BANNER])
    mixed = _executed(tmp_path / "c.ipynb", "03", "C", "丙", [MINILM_LINE, GPT2_LINE + GPT2_BANNER])
    banner_only = _executed(tmp_path / "d.ipynb", "04", "D", "丁", [GPT2_BANNER])
    none = _executed(tmp_path / "e.ipynb", "05", "E", "戊", ["just numbers 0.5\n"])
    assert site.detect_weights(pre).status == "pretrained"
    assert site.detect_weights(rnd).status == "random" and site.detect_weights(rnd).random == ["gpt2"]
    w = site.detect_weights(mixed)
    assert (w.status, w.pretrained, w.random) == ("mixed", ["sentence-transformers/all-MiniLM-L6-v2"], ["gpt2"])
    assert (
        "pretrained: sentence-transformers/all-MiniLM-L6-v2" in w.describe() and "RANDOM weights: gpt2" in w.describe()
    )
    assert site.detect_weights(banner_only).status == "random"
    assert site.detect_weights(none).status == "no model"


def test_chapter_info_reads_title_goals_prerequisites(tmp_path):
    nb = _executed(tmp_path / "x.ipynb", "03", "In-context learning", "上下文学习", [])
    info = site.chapter_info(nb, "03_in_context_learning.ipynb")
    assert (info.number, info.title_en, info.title_zh) == ("03", "In-context learning", "上下文学习")
    assert "1. do In-context learning;" in info.goals and "check it" in info.goals
    assert info.prerequisites == "Chapter 01, a little PyTorch."  # stops at the inline **Run time.** label
    title, goals, prereq = site.parse_intro("# Plain title\n\nThis chapter teaches X.\n\n## Prerequisites\nnone\n")
    assert (title, goals, prereq) == ("Plain title", "This chapter teaches X.", "none")


def test_build_site_map_timings_per_device_and_glossary(tmp_path):
    executed, notebooks, html_dir = tmp_path / "executed", tmp_path / "notebooks", tmp_path / "html"
    executed.mkdir(), notebooks.mkdir()
    _executed(executed / "01_alpha.ipynb", "01", "Alpha", "阿尔法", [MINILM_LINE])
    _executed(
        executed / "02_beta.ipynb",
        "02",
        "Beta",
        "贝塔",
        [MINILM_LINE, GPT2_LINE + GPT2_BANNER],
        papermill_duration=42.0,
    )
    _executed(notebooks / "03_gamma.ipynb", "03", "Gamma", "伽马", [])  # in the course, not executed
    (notebooks / "glossary.md").write_text(
        "# Glossary · 术语表\n\n| English | 中文 |\n|---|---|\n| soft prompt | 软提示 |\n"
    )
    timings = tmp_path / "timings.json"
    run.record_timing(timings, run.RunRecord("01_alpha.ipynb", "o", 125.0, "cpu", "cpu (2 threads)"))
    run.record_timing(
        timings, run.RunRecord("01_alpha.ipynb", "o", 14.0, "cuda", "cuda (NVIDIA H100)", {"n_virtual_tokens": 50})
    )
    index = site.build_site(executed, html_dir, timings_file=timings, notebooks_dir=notebooks)
    page = index.read_text(encoding="utf-8")
    assert (html_dir / "01_alpha.html").is_file() and (html_dir / "02_beta.html").is_file()
    assert not (html_dir / "03_gamma.html").exists()
    assert "Alpha" in page and "阿尔法" in page and "href='01_alpha.html'" in page
    assert "2 min 05 s" in page and "cpu (2 threads)" in page  # CPU and GPU timings both shown
    assert "14 s" in page and "NVIDIA H100" in page and "n_virtual_tokens=50" in page
    assert "42 s" in page and "device not recorded" in page  # papermill's own duration as fallback
    assert "w-mixed" in page and "<b>stand-in</b> (random weights): gpt2" in page and "w-pretrained" in page
    assert "not executed in this build" in page and "Gamma" in page
    glossary = (html_dir / "glossary.html").read_text(encoding="utf-8")
    assert "<table" in glossary and "软提示" in glossary and "href='glossary.html'" in page
    course_map = json.loads((html_dir / "course_map.json").read_text(encoding="utf-8"))
    assert [c["weights"]["status"] if c["weights"] else None for c in course_map] == ["pretrained", "mixed", None]
    alpha_html = (html_dir / "01_alpha.html").read_text(encoding="utf-8")
    assert "pretrained weights" in alpha_html  # nbconvert rendered the outputs


def test_build_site_without_executed_notebooks_is_a_clear_error(tmp_path):
    with pytest.raises(site.SiteError, match="pt_helpers.course.run all"):
        site.build_site(
            tmp_path / "nothing", tmp_path / "html", timings_file=tmp_path / "t.json", notebooks_dir=tmp_path
        )


def _failure(executed, name, *, copy=True, evalue="planted failure", cell_index=3):
    """What pt_helpers.course.run leaves for a failed run: NN.failed.json and (usually) NN.failed.ipynb."""
    stem = name.removesuffix(".ipynb")
    failed_copy = None
    if copy:
        nb = nbformat.v4.new_notebook()
        nb.cells.append(nbformat.v4.new_markdown_cell("# 02 · Beta · 贝塔\n\n**Goals.** fail."))
        cell = nbformat.v4.new_code_cell("raise ValueError('planted failure')")
        cell.outputs = [
            nbformat.v4.new_output(
                "error",
                ename="ValueError",
                evalue=evalue,
                traceback=["Traceback (most recent call last)", "ValueError: " + evalue],
            )
        ]
        nb.cells.append(cell)
        failed_copy = executed / f"{stem}.failed.ipynb"
        nbformat.write(nb, failed_copy)
    record = {
        "notebook": name,
        "error": f"notebook {name} failed",
        "cell_index": cell_index,
        "ename": "ValueError",
        "evalue": evalue,
        "failed_at": "2026-05-01T12:34:56+00:00",
        "failed_copy": str(failed_copy) if failed_copy else None,
        "last_good": None,
        "parameters": {},
    }
    (executed / f"{stem}.failed.json").write_text(json.dumps(record))  # fmt: skip


def test_build_site_shows_a_failed_chapter_and_keeps_its_last_good_page(tmp_path):
    executed, html_dir = tmp_path / "executed", tmp_path / "html"
    executed.mkdir()
    _executed(executed / "01_alpha.ipynb", "01", "Alpha", "阿尔法", [MINILM_LINE])
    _executed(executed / "02_beta.ipynb", "02", "Beta", "贝塔", [GPT2_LINE])  # last good run of 02 …
    _failure(executed, "02_beta.ipynb")  # … and its latest run failed
    _failure(executed, "03_gamma.ipynb", evalue="<b>no</b> good run")  # failed, never succeeded
    index = site.build_site(executed, html_dir, timings_file=tmp_path / "t.json", notebooks_dir=tmp_path / "none")
    page = index.read_text(encoding="utf-8")
    rows = {r.split("class='num'>")[1][:2]: r for r in page.split("<tr")[2:]}
    assert "FAILED" not in rows["01"]
    beta = rows["02"]
    assert " class='failed'" in beta and "✗ FAILED" in beta and "2026-05-01 12:34 UTC" in beta and "cell 3" in beta
    assert "ValueError: planted failure" in beta
    assert "href='02_beta.html'" in beta and "href='02_beta.failed.html'" in beta  # old good page still linked
    assert "last good run" in beta and "(random weights): gpt2" in beta  # weights of the good run
    gamma = rows["03"]
    assert "✗ FAILED" in gamma and "href='03_gamma.html'" not in gamma and "no good run of this chapter yet" in gamma
    assert "&lt;b&gt;no&lt;/b&gt; good run" in gamma  # the error text is escaped
    assert "2 chapter(s) failed" in page
    assert "ValueError: planted failure" in (html_dir / "02_beta.failed.html").read_text(encoding="utf-8")
    assert not (html_dir / "03_gamma.html").exists() and (html_dir / "03_gamma.failed.html").is_file()
    course_map = {c["file"]: c for c in json.loads((html_dir / "course_map.json").read_text(encoding="utf-8"))}
    assert course_map["01_alpha.ipynb"]["failed"] is None and course_map["02_beta.ipynb"]["page"] == "02_beta.html"
    assert course_map["02_beta.ipynb"]["failed"]["evalue"] == "planted failure"
    assert course_map["03_gamma.ipynb"]["page"] is None and course_map["03_gamma.ipynb"]["failed"]["cell_index"] == 3

    # 02 ran fine since (pt_helpers.course.run removed its record): its failed page goes, the row is plain again
    (executed / "02_beta.failed.json").unlink()
    site.build_site(executed, html_dir, timings_file=tmp_path / "t.json", notebooks_dir=tmp_path / "none")
    assert not (html_dir / "02_beta.failed.html").exists() and (html_dir / "03_gamma.failed.html").is_file()


def test_build_site_survives_damaged_files(tmp_path):
    executed, html_dir = tmp_path / "executed", tmp_path / "html"
    executed.mkdir()
    _executed(executed / "01_alpha.ipynb", "01", "Alpha", "阿尔法", [MINILM_LINE])
    (executed / "02_beta.ipynb").write_text("{not json")  # a damaged executed copy
    (executed / "03_gamma.failed.json").write_text("[]")  # a damaged failure record
    with pytest.warns(UserWarning) as caught:
        index = site.build_site(executed, html_dir, timings_file=tmp_path / "t.json", notebooks_dir=tmp_path / "none")
    messages = " ".join(str(w.message) for w in caught)
    assert "02_beta.ipynb is unreadable" in messages and "03_gamma.failed.json is unreadable" in messages
    assert "href='01_alpha.html'" in index.read_text(encoding="utf-8")


def test_site_serves_mathjax_itself_and_loads_nothing_from_a_cdn(tmp_path):
    executed, html_dir = tmp_path / "executed", tmp_path / "html"
    executed.mkdir()
    nb = _executed(executed / "01_alpha.ipynb", "01", "Alpha", "阿尔法", [MINILM_LINE])
    nb.cells.append(nbformat.v4.new_markdown_cell("$$ P(w) = \\prod_i P(w_i \\mid w_{<i}) $$"))
    nbformat.write(nb, executed / "01_alpha.ipynb")
    index = site.build_site(executed, html_dir, timings_file=tmp_path / "t.json", notebooks_dir=tmp_path / "none")
    mathjax = html_dir / "mathjax"
    assert (mathjax / "tex-chtml.js").is_file() and (mathjax / "LICENSE").is_file()
    assert list((mathjax / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))  # the CHTML fonts
    assert (mathjax / "input" / "tex" / "extensions" / "physics.js").is_file()  # autoloaded TeX packages
    for page in (index, html_dir / "01_alpha.html"):
        text = page.read_text(encoding="utf-8")
        assert re.search(r'<script defer(="")? src="mathjax/tex-chtml.js">', text) and "window.MathJax" in text
        assert not re.findall(r"<script[^>]*src=\"https?:", text), page  # no CDN script at all
        assert "MathJax.Hub" not in text  # nbconvert's MathJax 2 configuration is gone
    stamp = (mathjax / ".version").read_text()
    (mathjax / "tex-chtml.js").write_text("// kept: same version, not copied again")
    site.build_site(executed, html_dir, timings_file=tmp_path / "t.json", notebooks_dir=tmp_path / "none")
    assert (mathjax / "tex-chtml.js").read_text().startswith("// kept") and (mathjax / ".version").read_text() == stamp


def test_site_without_the_mathjax_package_warns_and_falls_back_to_the_cdn(tmp_path, monkeypatch):
    monkeypatch.setattr(site, "mathjax_source", lambda: None)
    with pytest.warns(UserWarning, match="django-static-mathjax is not installed"):
        src = site.install_mathjax(tmp_path)
    assert src == site.MATHJAX_CDN and not (tmp_path / "mathjax").exists()


def test_course_map_shows_the_editions_time_memory_budgets_and_stale_marks(tmp_path):
    from pt_helpers.course import edition as ed

    executed, notebooks, html_dir, edition = (tmp_path / d for d in ("executed", "notebooks", "html", "edition"))
    executed.mkdir(), notebooks.mkdir()
    for num, en, zh in (("01", "Alpha", "阿尔法"), ("02", "Beta", "贝塔"), ("03", "Gamma", "伽马")):
        _executed(executed / f"{num}_{en.lower()}.ipynb", num, en, zh, [MINILM_LINE])
        _executed(notebooks / f"{num}_{en.lower()}.ipynb", num, en, zh, [])
    meta = dict(date="2026-12-07", commit="abc123", device="2-core CPU (test)", threads=2)
    measured = dict(seconds=250.0, cpu_seconds=400.0, peak_rss_mib=1434, status="completed", load_before=3.1)
    ed.store_chapter(edition, executed / "01_alpha.ipynb", notebooks / "01_alpha.ipynb", measured, meta)
    slow = dict(measured, seconds=700.0, cpu_seconds=650.0, peak_rss_mib=3500)
    ed.store_chapter(edition, executed / "02_beta.ipynb", notebooks / "02_beta.ipynb", slow, meta)
    _executed(notebooks / "02_beta.ipynb", "02", "Beta", "贝塔 (edited)", [])  # changed since the edition ran
    index = site.build_site(
        executed, html_dir, timings_file=tmp_path / "t.json", notebooks_dir=notebooks, edition_dir=edition
    )
    page = index.read_text(encoding="utf-8")
    rows = page.split("<tr")
    alpha, beta, gamma = (next(r for r in rows if f"{n}.html'" in r) for n in ("01_alpha", "02_beta", "03_gamma"))
    assert "4 min 10 s</b> · 1.4 GiB" in alpha and "stale" not in alpha and "over" not in alpha
    assert "11 min 40 s" in beta and "over 10 min, over 3 GiB" in beta and "stale: the chapter changed" in beta
    assert "not in the executed edition yet" in gamma
    assert "<details><summary>How these were measured" in page and "2-core CPU (test)" in page
    assert "01 3.1 → " in page  # each chapter's load average, in the folded note
    # the map leads with what a learner needs: chapter, what it teaches, time, real or stand-in weights
    headers = re.findall(r"<th>(.*?)</th>", page, flags=re.S)
    assert [h.split("·")[0].strip() for h in headers] == ["#", "Chapter", "What it teaches", "Time", "Weights"]
    assert page.index("<table") < page.index("<details>")  # conditions after the table, folded
    course_map = json.loads((html_dir / "course_map.json").read_text(encoding="utf-8"))
    assert course_map[0]["edition"]["peak_rss_mib"] == 1434 and course_map[1]["edition_state"] == "stale"
    assert "not in the executed edition" not in site.build_index([], {}, {}, False)


def test_pages_name_fonts_that_hold_chinese_on_the_common_systems():
    for family in ("PingFang SC", "Microsoft YaHei", "Noto Sans CJK SC", "WenQuanYi Micro Hei"):
        assert f'"{family}"' in site.CJK_FONT_STACK
    assert site.CJK_FONT_STACK in site._CSS and site.CJK_FONT_STACK in site.PAGE_FONT_CSS
    page = site.notebook_to_html(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# 中文")]), "t")
    assert site.PAGE_FONT_CSS in page  # chapter pages too, through nbconvert's font variables


def test_model_provenance_reaches_the_site_as_data_not_text(tmp_path):
    """A notebook hands each model's provenance over as data (project.publish_provenance); the site reads the
    record, so what the cell printed does not matter (here the text claims the opposite of the record)."""
    import papermill as pm

    from pt_helpers.project import PROVENANCE_MIME

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell(INTRO.format(num="01", en="A", zh="甲")),
        nbformat.v4.new_code_cell(
            "from pt_helpers.project import publish_provenance\n"
            "publish_provenance({'name': 'gpt2', 'is_pretrained': False, 'source': 'random'}, "
            f"{MINILM_LINE.replace('all-MiniLM-L6-v2', 'gpt2')!r})\n"
            "publish_provenance({'name': 'minilm', 'is_pretrained': True}, 'minilm loaded')"
        ),
    ]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "in.ipynb")
    pm.execute_notebook(str(tmp_path / "in.ipynb"), str(tmp_path / "out.ipynb"), progress_bar=False)
    executed = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    outputs = executed.cells[1].outputs
    assert [o.output_type for o in outputs] == ["display_data", "display_data"]
    assert outputs[1].data["text/plain"] == "minilm loaded" and PROVENANCE_MIME in outputs[1].data
    w = site.detect_weights(executed)
    assert (w.status, w.pretrained, w.random) == ("mixed", ["minilm"], ["gpt2"])
    assert [r["source"] for r in site.provenance_records(executed) if "source" in r] == ["random"]


def test_the_map_links_the_guide_in_both_languages(tmp_path):
    """Issue 31: the site links both languages — both READMEs rendered as pages, both linked from the map."""
    (tmp_path / "README.md").write_text("# Guide\n\n`make run`\n", encoding="utf-8")
    (tmp_path / "README.zh-CN.md").write_text("# 学习指南\n\n`make run`\n", encoding="utf-8")
    html_dir = tmp_path / "html"
    guides = site.render_guides(html_dir, mathjax_src="mathjax/tex-mml-chtml.js", root=tmp_path)
    assert [page for page, _ in guides] == ["guide.html", "guide.zh-CN.html"]
    assert "学习指南" in (html_dir / "guide.zh-CN.html").read_text(encoding="utf-8")
    page = site.build_index([], {}, {}, False, guides=guides)
    assert "href='guide.html'" in page and "href='guide.zh-CN.html'" in page and "学习指南（中文）" in page
    (tmp_path / "README.zh-CN.md").unlink()  # a guide that does not exist is not linked
    assert [page for page, _ in site.render_guides(html_dir, "mathjax/x.js", root=tmp_path)] == ["guide.html"]
