"""pt_helpers — the helper package of *Prompt Tuning from First Principles*.

One home per idea; a module imports only modules above it in this list (no import cycles):

    errors      every error class of the course (CourseError and its subclasses)
    project     project root, build paths, timings, atomic file writes
    parameters  a notebook's parameters typed by its parameters cell, checked in the notebook (every chapter)
    device      device choice, seeds, the quick/full profile switch, handing freed memory back
    data        the data sets, TaskInfo (everything the code knows about a task) and task_splits (its one split)
    frozen      freezing, attention geometry, positions and masks, the one cache expander and context check
    models      the model resolver (real weights, or bannered random stand-ins of many families)
    lm          chain-rule probabilities (chapter 01)
    scoring     label-word continuations, reductions, accuracy, mean-pooled sentence embeddings
    packed      the packed scorer: a shared prefix's cache once, each batch of inputs + labels in one sequence
    stats       intervals and paired tests for every ranked comparison (on scipy.stats)
    attention   scaled dot-product attention recomputed from a model's own weights (chapter 02)
    icl         in-context learning: prompts, the cached scorer, calibration, demonstrations (chapter 03)
    prompts     discrete prompts: templates, verbalisers, prompt search (chapter 04)
    adapters    the prompt-adapter protocol, the one engine that runs any adapter, the method registry (05–06)
    soft_prompt the soft-prompt adapter (chapter 05)
    prefix      the deep-prompt adapter: prefix tuning / P-Tuning v2 (chapter 06)
    p_tuning    the P-tuning adapter: a prompt produced by a small encoder (chapter 08)
    classifiers frozen model + adapter + head (label words or label sentences)
    checkpoint  one saved-prompt format for every adapter
    training    TrainSettings and the one training loop, fit (chapters 05–07 and the CLI)
    train       the command line: python -m pt_helpers.train
    comparison  the comparison of chapter 06: lr sweeps chosen on a selection split, seeds, paired tables, LoRA merge
    serving     one frozen model, many tasks: mixed-task batches, prompt ensembles, prompt transfer (chapter 08)
    chat        instruction-tuned models: chat templates, few-shot as a conversation, chat soft prompts (chapter 09)
    instruct    instruction tuning: FLAN-style mixture, assistant-only SFT loss, held-out zero-shot, DPO (chapter 10)
    lora        LoRA and IA³ from their equations, their merge, PEFT twins, prefix as a gated adapter (chapter 10)
    decision    the decision table: every way to adapt one LLM to one task, measured alike (chapter 10)
    doctor      the setup check, python -m pt_helpers.doctor (versions, device, weights, recorded times)
    results     the shared results table; plots, source (show package code by markers)

Course tooling that no notebook imports lives apart, in ``pt_helpers.course`` (run, site, student); it may
import any module above, and none of them imports it.
"""

__version__ = "0.2.0"
