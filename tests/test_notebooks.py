"""Notebook hygiene and papermill re-runs. (Each notebook is also executed by `pytest --nbval-lax`.)"""

import json
import os
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _cells(path):
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def test_the_course_has_its_first_chapters():
    names = [p.name for p in NOTEBOOKS]
    assert "01_chain_rule_probability.ipynb" in names and "02_scaled_attention.ipynb" in names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_clean_and_parametrised(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = nb["cells"]
    assert cells[0]["cell_type"] == "markdown", "first cell must state goals and prerequisites"
    first = "".join(cells[0]["source"])
    assert re.match(rf"# {path.name[:2]} ", first), "title starts with '# NN ·'"
    assert "Goals" in first or "goals" in first
    code = [c for c in cells if c["cell_type"] == "code"]
    assert not any(c.get("outputs") or c.get("execution_count") for c in code), "strip outputs before committing"
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one code cell tagged 'parameters' (papermill)"
    params = "".join(tagged[0]["source"])
    assert "seed" in params and "profile" in params
    assert nb["metadata"]["kernelspec"]["name"] == "python3"


def _stdout(nb_path):
    nb = json.loads(Path(nb_path).read_text(encoding="utf-8"))
    return "".join(
        "".join(o.get("text", ""))
        for c in nb["cells"]
        if c["cell_type"] == "code"
        for o in c.get("outputs", [])
        if o.get("name") == "stdout"
    )


@pytest.mark.notebook
def test_papermill_rerun_of_01_follows_its_parameter(tmp_path):
    """Rerun notebook 01 on another text: the token count it reports must be the new text's (counted by the
    tokenizer of the notebook's default model, SmolLM2, not by another model's)."""
    import papermill as pm

    from pt_helpers.models import load_model, load_tokenizer, smollm2_cache_dir

    new_text = "Prompt tuning trains a few vectors."
    out = tmp_path / "01_rerun.ipynb"
    os.environ.setdefault("PT_RANDOM_FALLBACK", "1")
    pm.execute_notebook(
        str(NOTEBOOKS[0]),
        str(out),
        parameters={"text": new_text, "n_sentences": 5, "n_zero_shot": 10},
        kernel_name="python3",
        progress_bar=False,
        cwd=str(NOTEBOOKS[0].parent),
    )
    source = "\n".join(
        c["source"] if isinstance(c["source"], str) else "".join(c["source"]) for c in _cells(NOTEBOOKS[0])
    )
    default_model = re.search(r'^model_name = "(.*?)"', source, re.M).group(1)
    assert default_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    # the notebook's run has written the float32 cache (tokenizer included) unless PT_SMOLLM2_CACHE=0
    cache = smollm2_cache_dir()
    tok = load_tokenizer(cache) if (cache / "tokenizer.json").is_file() else load_model(default_model).tokenizer
    n_new = len(tok(new_text, add_special_tokens=False)["input_ids"])
    stdout = _stdout(out)
    assert f"{n_new} tokens after BOS" in stdout
    default_text = re.search(r'^text = "(.*)"', source, re.M)
    n_default = len(tok(default_text.group(1), add_special_tokens=False)["input_ids"])
    assert n_new != n_default and f"{n_default} tokens after BOS" not in stdout
    assert "median perplexity of 5 sentences" in stdout
