"""pt_helpers — the helper package of *Prompt Tuning from First Principles*.

One idea per module, imported by the notebooks in the order the course teaches them:

    device → data → models → lm → attention → icl → prompts → soft_prompt → prefix → results

No module imports a later one.
"""

__version__ = "0.1.0"
