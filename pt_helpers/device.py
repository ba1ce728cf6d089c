"""Device choice, seeds and the quick/full profile switch (every chapter's setup cell).

The device is the accelerator torch reports through ``torch.accelerator`` (CUDA, Apple's MPS, Intel's XPU, …:
whatever this build of torch was compiled for and finds at run time), else the CPU; ``$PT_DEVICE`` (``cpu``,
``cuda``, ``cuda:1``, ``mps``, ``xpu``) forces one. Which identities have been checked on which device:
docs/devices.md (CPU in CI; MPS never).
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

PROFILES = ("auto", "quick", "full")
DEVICE_ENV_VAR = "PT_DEVICE"
DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")  # what $PT_DEVICE and ``prefer`` may name (with ``:index`` for cuda/xpu)
# The accelerators on which ``profile="auto"`` picks the full profile. The full settings were sized for a CUDA
# GPU, where the training loop runs in bf16 autocast (classifiers.autocast_for); on MPS and XPU the course runs
# in float32 without autocast, and no full-profile run has been made there, so "auto" stays quick on them
# (``profile="full"`` still runs it: the choice is the reader's).
FULL_PROFILE_DEVICES = ("cuda",)
# Apple's Metal has no 64-bit floats: torch refuses a float64 tensor on MPS ("the MPS framework doesn't support
# float64", pytorch/pytorch#122602, closed as a known limitation). Such arithmetic goes to the CPU instead
# (:func:`float64_on`).
NO_FLOAT64_DEVICES = ("mps",)


def accelerator() -> torch.device | None:
    """The accelerator torch can use now (``torch.accelerator``), or None on a CPU-only machine.

    ``torch.accelerator.current_accelerator(check_available=True)`` (torch ≥ 2.7) answers with the device type
    this build was compiled for, when a device of it is visible at run time. Older torch: CUDA, then MPS.
    """
    acc = getattr(torch, "accelerator", None)
    current = getattr(acc, "current_accelerator", None)
    if current is not None:
        try:
            return current(check_available=True)
        except TypeError:  # torch 2.6: no check_available, and current_accelerator() raises when there is none
            return current() if acc.is_available() else None
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    return torch.device("mps") if mps is not None and mps.is_available() else None


def _parse_device(value: str, where: str) -> torch.device:
    """``value`` as a torch.device of a known type, or a ValueError naming ``where`` and the valid values."""
    text = str(value).strip().lower()
    kind, _, index = text.partition(":")
    if kind not in DEVICE_TYPES or (index and not (index.isdigit() and kind in ("cuda", "xpu"))):
        raise ValueError(
            f"{where} = {value!r} is not a device this course knows; valid values: "
            f"{', '.join(DEVICE_TYPES)} (cuda and xpu may add a GPU index, e.g. cuda:1). "
            f"Unset {DEVICE_ENV_VAR} to let the course choose."
        )
    return torch.device(text)


def _check_available(device: torch.device, where: str) -> torch.device:
    if device.type == "cpu":
        return device
    found = accelerator()
    if found is None or found.type != device.type:
        seen = f"torch sees {found.type}" if found is not None else "torch sees no accelerator"
        raise RuntimeError(
            f"{where} asks for {str(device)!r}, but {seen} (torch {torch.__version__}); use "
            f"{(found.type if found is not None else 'cpu')!r}, or unset {DEVICE_ENV_VAR}."
        )
    return device


def get_device(prefer: str | torch.device | None = None) -> torch.device:
    """The device to run on: ``prefer`` if given, else ``$PT_DEVICE`` if set, else the accelerator torch finds
    (:func:`accelerator`: CUDA, MPS, XPU, …), else the CPU.

    A value naming no known device type, or an accelerator this machine does not have, is a clear error that
    names where the value came from and what is valid.
    """
    if prefer is not None:
        where = "the device asked for"
        device = prefer if isinstance(prefer, torch.device) else _parse_device(prefer, where)
        return _check_available(device, where)
    forced = os.environ.get(DEVICE_ENV_VAR, "").strip()
    if forced:
        return _check_available(_parse_device(forced, f"${DEVICE_ENV_VAR}"), f"${DEVICE_ENV_VAR}")
    return accelerator() or torch.device("cpu")


def float64_on(device: torch.device | str | None) -> torch.device:
    """Where float64 arithmetic for data on ``device`` can run: ``device`` itself, or the CPU on a device
    without 64-bit floats (MPS, see ``NO_FLOAT64_DEVICES``). The explicit fallback: move there, compute,
    and move the float32 result back if needed."""
    device = torch.device(device if device is not None else "cpu")
    return torch.device("cpu") if device.type in NO_FLOAT64_DEVICES else device


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


def resolve_profile(profile: str = "auto", device: torch.device | str | None = None) -> str:
    """``"auto"`` → ``"full"`` when the device (default: :func:`get_device`) is of a type in
    ``FULL_PROFILE_DEVICES`` (CUDA), else ``"quick"`` (CPU, MPS, XPU); other values pass through."""
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
    if profile == "auto":
        device = torch.device(device) if device is not None else get_device()
        return "full" if device.type in FULL_PROFILE_DEVICES else "quick"
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
    if device.type == "xpu":
        return f"xpu ({torch.xpu.get_device_name(device)})"
    if device.type == "mps":
        return f"mps (Apple GPU, torch {torch.__version__})"
    if device.type != "cpu":
        return f"{device.type} (torch {torch.__version__})"
    return f"cpu ({torch.get_num_threads()} threads, torch {torch.__version__})"


def release_memory() -> int | None:
    """Hand memory that PyTorch has freed back to the operating system; returns the process's resident MiB
    afterwards (None where /proc is absent). Taught in chapter 05, section 3.

    A freed CPU tensor's memory goes back to the C allocator (glibc malloc), which keeps it for reuse: after a
    big forward and backward pass the process stays about as large as at its peak (measured on 2026-12-01 at
    GPT-2's size, after notebook 05's timing passes: 2,252 MiB resident, 1,039 MiB after ``malloc_trim(0)``).
    ``malloc_trim(0)`` returns that pool to the system, so the next section starts small. On CUDA,
    ``torch.accelerator.empty_cache`` does the same for the accelerator's cache.
    """
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    empty_cache = getattr(
        getattr(torch, "accelerator", None), "empty_cache", None
    )  # any accelerator, where torch has it
    if accelerator() is not None:
        if empty_cache is not None:
            empty_cache()
        elif torch.cuda.is_available():
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
