"""Device choice, seeds and the quick/full profile switch (every chapter's setup cell)."""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

PROFILES = ("auto", "quick", "full")


def get_device(prefer: str | None = None) -> torch.device:
    """Return ``cuda`` when a GPU is present (or ``prefer`` names a device), else ``cpu``."""
    if prefer is not None:
        if str(prefer).startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(f"device {prefer!r} was asked for, but torch sees no CUDA GPU; use 'cpu'.")
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); return a torch Generator seeded the same way.

    After this call two runs of the same code on the same machine give the same numbers.
    """
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    return torch.Generator().manual_seed(seed)


def resolve_profile(profile: str = "auto") -> str:
    """``"auto"`` → ``"full"`` on a CUDA machine, ``"quick"`` on CPU; other values pass through."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    if profile == "auto":
        return "full" if torch.cuda.is_available() else "quick"
    return profile


def profile_settings(
    profile: str,
    quick: Mapping[str, Any],
    full: Mapping[str, Any] | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    given: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A chapter's settings for one run, in four layers, later ones winning (nanoGPT's config idiom).

    Used by the settings cell of chapters 01–08; it teaches nothing of its own.

    1. ``quick``: every setting with its quick-profile (CPU) value — the keys it names are the only keys;
    2. ``full``: what the full profile changes, ONE dict of overrides of ``quick`` (applied when ``profile``
       resolves to ``"full"``, see :func:`resolve_profile`);
    3. ``overrides``: the notebook's ``overrides`` parameter (``-p overrides '{"max_steps": 2}'``);
    4. ``given``: the notebook's own parameters for these settings (``n_test: int | None = None``); each one
       whose value is not None is a value the reader typed, so it wins always — a profile never replaces it.

    A key of ``full``, ``overrides`` or ``given`` that ``quick`` does not name raises
    :class:`~pt_helpers.errors.ParameterError` naming the known keys (and the current name of a renamed one,
    ``project.RENAMED_SETTINGS``: ``steps`` → ``max_steps``). Returns a new plain dict.
    """
    from .errors import ParameterError
    from .project import RENAMED_SETTINGS

    __tracebackhide__ = True  # IPython shows the message, not this function's frames
    profile = resolve_profile(profile)
    known = sorted(quick)
    for where, layer in (("the full profile", full), ("overrides", overrides), ("the given parameters", given)):
        unknown = sorted(set(layer or {}) - set(quick))
        if unknown:
            renamed = [f"{k} → {RENAMED_SETTINGS[k]}" for k in unknown if RENAMED_SETTINGS.get(k) in quick]
            hint = f" (renamed: {', '.join(renamed)})" if renamed else ""
            raise ParameterError(f"{where}: unknown setting(s) {unknown}{hint}; this notebook's settings are {known}.")
    settings = dict(quick)
    if profile == "full":
        settings.update(full or {})
    settings.update(overrides or {})
    settings.update({k: v for k, v in (given or {}).items() if v is not None})
    return settings


def describe_device(device: torch.device | None = None) -> str:
    """A one-line description of the device, for notebook headers and benchmark tables."""
    device = device or get_device()
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads, torch {torch.__version__})"


def release_memory() -> int | None:
    """Hand memory that PyTorch has freed back to the operating system; returns the process's resident MiB
    afterwards (None where /proc is absent). Taught in chapter 05, section 3.

    A freed CPU tensor's memory goes back to the C allocator (glibc malloc), which keeps it for reuse: after a
    big forward and backward pass the process stays about as large as at its peak (measured on 2026-12-01 at
    GPT-2's size, after notebook 05's timing passes: 2,252 MiB resident, 1,039 MiB after ``malloc_trim(0)``).
    ``malloc_trim(0)`` returns that pool to the system, so the next section starts small. On CUDA,
    ``torch.cuda.empty_cache`` does the same for the GPU's cache.
    """
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        try:
            ctypes.CDLL(libc_name).malloc_trim(0)  # glibc only; other C libraries have no such call
        except (OSError, AttributeError):
            pass
    return resident_mib()


def resident_mib() -> int | None:
    """This process's resident memory in MiB (``VmRSS`` of ``/proc/self/status``); None where there is no
    such file (not Linux)."""
    import re

    try:
        with open("/proc/self/status") as f:
            status = f.read()
    except OSError:
        return None
    found = re.search(r"VmRSS:\s+(\d+)", status)
    return int(found.group(1)) // 1024 if found else None
