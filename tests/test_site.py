"""Tests of pt_helpers.site: course-map fields from fake executed notebooks (no kernel is started)."""
from __future__ import annotations

import json

import nbformat
import pytest

from pt_helpers import run, site

MINILM_LINE = ("sentence-transformers/all-MiniLM-L6-v2 (encoder) ← package: /x/model · pretrained weights · "
               "22.7 M parameters · on cpu\n")
GPT2_LINE = ("gpt2 (causal) ← random: GPT-2 family, 4 layers × 256 dims, real GPT-2 tokenizer · RANDOMLY "
             "INITIALISED weights · 29.6 M parameters · on cpu\n")
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
    assert "pretrained: sentence-transformers/all-MiniLM-L6-v2" in w.describe() and "RANDOM weights: gpt2" in w.describe()
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
    _executed(executed / "02_beta.ipynb", "02", "Beta", "贝塔", [MINILM_LINE, GPT2_LINE + GPT2_BANNER],
              papermill_duration=42.0)
    _executed(notebooks / "03_gamma.ipynb", "03", "Gamma", "伽马", [])  # in the course, not executed
    (notebooks / "glossary.md").write_text("# Glossary · 术语表\n\n| English | 中文 |\n|---|---|\n| soft prompt | 软提示 |\n")
    timings = tmp_path / "timings.json"
    run.record_timing(timings, run.RunRecord("01_alpha.ipynb", "o", 125.0, "cpu", "cpu (2 threads)"))
    run.record_timing(timings, run.RunRecord("01_alpha.ipynb", "o", 14.0, "cuda", "cuda (NVIDIA H100)",
                                             {"n_virtual_tokens": 50}))
    index = site.build_site(executed, html_dir, timings_file=timings, notebooks_dir=notebooks)
    page = index.read_text(encoding="utf-8")
    assert (html_dir / "01_alpha.html").is_file() and (html_dir / "02_beta.html").is_file()
    assert not (html_dir / "03_gamma.html").exists()
    assert "Alpha" in page and "阿尔法" in page and "href='01_alpha.html'" in page
    assert "2 min 05 s" in page and "cpu (2 threads)" in page           # CPU and GPU timings both shown
    assert "14 s" in page and "NVIDIA H100" in page and "n_virtual_tokens=50" in page
    assert "42 s" in page and "device not recorded" in page             # papermill's own duration as fallback
    assert "w-mixed" in page and "RANDOM weights: gpt2" in page and "w-pretrained" in page
    assert "not executed in this build" in page and "Gamma" in page
    glossary = (html_dir / "glossary.html").read_text(encoding="utf-8")
    assert "<table" in glossary and "软提示" in glossary and "href='glossary.html'" in page
    course_map = json.loads((html_dir / "course_map.json").read_text(encoding="utf-8"))
    assert [c["weights"]["status"] if c["weights"] else None for c in course_map] == ["pretrained", "mixed", None]
    alpha_html = (html_dir / "01_alpha.html").read_text(encoding="utf-8")
    assert "pretrained weights" in alpha_html  # nbconvert rendered the outputs


def test_build_site_without_executed_notebooks_is_a_clear_error(tmp_path):
    with pytest.raises(site.SiteError, match="pt_helpers.run all"):
        site.build_site(tmp_path / "nothing", tmp_path / "html", timings_file=tmp_path / "t.json",
                        notebooks_dir=tmp_path)
