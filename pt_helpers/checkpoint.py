"""One folder layout and one JSON schema for every trained prompt (soft, deep, …), written atomically.

Taught in chapter 05 (saving a soft prompt) and used by chapter 06 and ``python -m pt_helpers.train``.

    <folder>/adapter.safetensors   the adapter's tensors (``PromptAdapter.saved_tensors``), never a pickle
    <folder>/adapter_config.json   format_version, method, n_virtual_tokens, the adapter's settings, the base
                                   model (name, model_type, kind, fingerprint), the tokenizer's fingerprint,
                                   the SHA-256 of the tensors file, and whatever the caller adds

Each file is written to a temporary name and renamed into place (``project.atomic_write_bytes``); the
config goes last and names the SHA-256 of the tensors it belongs to, so ``load_prompt`` notices a
tensors file from another save (a run killed between the two renames) instead of mixing them up.
A prompt is a *folder*: ``prompts/lr0.01`` and ``prompts/lr0.03`` are two names, never one file with two
extensions.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import nn

from . import p_tuning, prefix, soft_prompt  # noqa: F401  (importing them registers the course's adapters)
from .adapters import ADAPTERS, PromptAdapter
from .errors import BaseModelMismatchError, CheckpointError, PromptShapeError
from .frozen import input_embeddings, model_kind
from .project import atomic_write_bytes, atomic_write_json, renamed_keys

FORMAT_VERSION = 2
TENSORS_FILE = "adapter.safetensors"
CONFIG_FILE = "adapter_config.json"


def model_fingerprint(model: nn.Module) -> str:
    """A short hash of the model's input-embedding matrix (every 97th row, to stay fast): two different
    checkpoints of the same architecture get different fingerprints."""
    emb = input_embeddings(model).detach().float().cpu()[::97].contiguous()
    return hashlib.sha256(emb.numpy().tobytes()).hexdigest()[:16]


def weights_sha256(model: nn.Module) -> str:
    """SHA-256 of every parameter and buffer of ``model`` (names, shapes, dtypes and bytes, in ``state_dict``
    order): equal exactly when the weights are. It reads every byte, unlike ``model_fingerprint``: for
    records that must not mistake one model for another (``comparison.RunStore``)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        # bytes through uint8, which every dtype (bfloat16 included) can be viewed as
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer) -> str:
    """A short hash of the tokenizer's vocabulary (token → id)."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    return hashlib.sha256(json.dumps(vocab).encode()).hexdigest()[:16]


def adapter_class(method: str, module: str | None = None) -> type[PromptAdapter]:
    """The adapter class registered for ``method`` (``"soft"``, ``"deep"`` …); else a clear error.

    ``module`` is where the saved prompt's adapter class was defined (``adapter_module`` of its config): an
    adapter of a later chapter (``chat``'s user-turn prompt) registers itself only once its module is
    imported, so a course module named there is imported first. Only ``pt_helpers`` modules are imported:
    a config file never makes this function run code from elsewhere.
    """
    if method not in ADAPTERS and module and module.startswith("pt_helpers."):
        import importlib

        try:
            importlib.import_module(module)
        except ImportError:
            pass  # an unknown module: the error below names the method and the known ones
    if method not in ADAPTERS:
        hint = f" (saved by {module}: import it first)" if module else ""
        raise CheckpointError(f"unknown prompt method {method!r}{hint}; known methods: {sorted(ADAPTERS)}")
    return ADAPTERS[method]


def save_prompt(
    adapter: PromptAdapter, folder: str | Path, model: nn.Module, tokenizer, *, base_model: str | None = None, **extra
) -> Path:
    """Write ``adapter`` for ``model`` into ``folder`` (created if needed); returns the folder.

    ``base_model`` names the model for humans (default: its ``name_or_path``); ``extra`` (task, seed,
    accuracy …) is stored in the config too.
    """
    from safetensors.torch import save

    if not isinstance(adapter, PromptAdapter):
        raise TypeError(f"adapter must be a PromptAdapter (SoftPrompt, PrefixEncoder …), got {type(adapter).__name__}")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise CheckpointError(f"{folder} is a file; a saved prompt is a folder. Choose another name.")
    data = save(adapter.saved_tensors())
    config = dict(
        format_version=FORMAT_VERSION,
        method=adapter.method,
        adapter_module=type(adapter).__module__,  # load_prompt imports it if the method is not yet registered
        n_virtual_tokens=adapter.n_virtual_tokens,
        adapter=adapter.saved_settings(),
        base_model=base_model or getattr(model, "name_or_path", "") or model.config.model_type,
        model_type=model.config.model_type,
        model_kind=model_kind(model),
        model_fingerprint=model_fingerprint(model),
        tokenizer_fingerprint=tokenizer_fingerprint(tokenizer),
        tensors_sha256=hashlib.sha256(data).hexdigest(),
        **extra,
    )
    atomic_write_bytes(folder / TENSORS_FILE, data)
    atomic_write_json(folder / CONFIG_FILE, config)
    return folder


def read_config(folder: str | Path) -> dict:
    """The JSON config of a saved prompt, checked for its format version. A key an earlier version wrote
    under a name since retired (``project.RETIRED_NAMES``) is read under its current name, so old saves load."""
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{path} not found: a saved prompt is a folder with {TENSORS_FILE} and {CONFIG_FILE} "
            "(write both with save_prompt)."
        )
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"{path} is not valid JSON ({exc}); the save was damaged: train again or restore the folder from a backup."
        ) from exc
    if not isinstance(config, dict) or config.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format_version {config.get('format_version') if isinstance(config, dict) else None!r}; "
            f"this course reads version {FORMAT_VERSION}. Save the prompt again with save_prompt."
        )
    config = renamed_keys(config)
    if isinstance(config.get("adapter"), dict):
        config["adapter"] = renamed_keys(config["adapter"])
    return config


def load_prompt(folder: str | Path, model: nn.Module, tokenizer, check_identity: bool = True) -> PromptAdapter:
    """Read an adapter written by ``save_prompt`` and check it belongs to ``model`` and ``tokenizer``."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    folder = Path(folder)
    config = read_config(folder)
    tensors_path = folder / TENSORS_FILE
    if not tensors_path.is_file():
        raise CheckpointError(f"{tensors_path} not found beside {CONFIG_FILE}: the save is incomplete; train again.")
    data = tensors_path.read_bytes()
    if hashlib.sha256(data).hexdigest() != config.get("tensors_sha256"):
        raise CheckpointError(
            f"{tensors_path} is not the file {CONFIG_FILE} was written with (SHA-256 differs): the "
            "save was interrupted or the files were mixed up. Train again or restore both files."
        )
    try:
        tensors = load(data)
    except (SafetensorError, ValueError) as exc:
        raise CheckpointError(f"{tensors_path} is not a readable safetensors file ({exc}).") from exc
    if check_identity:
        fp = model_fingerprint(model)
        if config.get("model_fingerprint") != fp:
            raise BaseModelMismatchError(
                f"this prompt was trained on base model {config.get('base_model')!r} (fingerprint "
                f"{config.get('model_fingerprint')}), but the model you gave has fingerprint {fp}: a prompt only "
                "means something to the exact frozen model it was trained with. Load that model, or pass "
                "check_identity=False if you know what you are doing."
            )
        tf = tokenizer_fingerprint(tokenizer)
        if config.get("tokenizer_fingerprint") != tf:
            raise BaseModelMismatchError(
                f"the prompt was saved with a different tokenizer (fingerprint "
                f"{config.get('tokenizer_fingerprint')} ≠ {tf}); load the base model's own "
                "tokenizer."
            )
    if config.get("model_kind") != model_kind(model):
        raise PromptShapeError(
            f"this prompt was trained on a {config.get('model_kind')} model "
            f"({config.get('base_model')!r}), but the model given is a {model_kind(model)} "
            f"({model.config.model_type}): load it onto the model it was trained for"
        )
    adapter = adapter_class(config["method"], config.get("adapter_module")).from_saved(
        model, tensors, config.get("adapter", {})
    )
    if adapter.n_virtual_tokens != config.get("n_virtual_tokens"):
        raise CheckpointError(
            f"{tensors_path} holds {adapter.n_virtual_tokens} virtual tokens but {CONFIG_FILE} says "
            f"{config.get('n_virtual_tokens')}: the two files do not belong together."
        )
    adapter.check_fits(model)
    return adapter.to(input_embeddings(model).device)
