"""What every benchmark script shares: the model, the machine's description, interleaved timing, memory, records.

Not a script (the leading underscore keeps ``tests/test_benchmarks.py`` and ``python -m benchmarks`` from
running it). Scripts import it as ``_common`` (their own folder is first on ``sys.path``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402

from pt_helpers.device import describe_device, release_memory  # noqa: E402
from pt_helpers.project import atomic_write_json  # noqa: E402

# The course's recorded runs are committed (the README table and notebooks 03 and 05's figures read them);
# `make bench` on your machine merges its records into the same files, one per (device, threads, setting).
RECORDS_DIR = Path(__file__).resolve().parent / "records"
PACKAGES = ("torch", "transformers", "peft", "lm_eval", "llama_cpp_python")


def out_path(given: str | None, name: str) -> Path:
    """``--out`` if given, else ``benchmarks/records/<name>.json``."""
    return Path(given) if given else RECORDS_DIR / f"{name}.json"


def set_threads(threads: int | None) -> None:
    """torch's intra-op threads (``OMP_NUM_THREADS`` should say the same; ``python -m benchmarks`` sets both)."""
    if threads:
        torch.set_num_threads(threads)


def versions() -> dict[str, str | None]:
    """Installed versions of the packages a comparison depends on (None when absent)."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def load_average() -> list[float] | None:
    """The 1-, 5- and 15-minute load averages (other jobs' work inflates wall times), or None."""
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def environment(device: torch.device) -> dict:
    """Device, date, versions, CPU count, threads and load: the header of every record."""
    return dict(
        device=describe_device(device),
        device_type=device.type,
        date=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        host=platform.node(),
        host_cpus=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        omp_num_threads=os.environ.get("OMP_NUM_THREADS"),
        load_average_start=load_average(),
        versions=versions(),
    )


def gpt2(n_layer: int = 12, n_embd: int = 768, n_head: int = 12, seed: int = 0) -> GPT2LMHeadModel:
    """A GPT-2 of the given size with RANDOM weights (default: GPT-2 small, 124 M parameters), eval mode.

    Speed and memory do not depend on the weights; every log-probability of it is meaningless as language.
    """
    torch.manual_seed(seed)
    cfg = GPT2Config(n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_positions=1024, vocab_size=50257)
    return GPT2LMHeadModel(cfg).eval()


def model_label(n_layer: int, n_embd: int) -> str:
    return f"GPT-2 config, RANDOM weights, {n_layer} layers × {n_embd}"


def add_model_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The model flags every script shares: a GPT-2-shaped RANDOM model's size, or ``--model NAME`` (real)."""
    parser.add_argument("--n-layer", type=int, default=12, help="random GPT-2's layers (ignored with --model)")
    parser.add_argument("--n-embd", type=int, default=768, help="random GPT-2's width (ignored with --model)")
    parser.add_argument("--n-head", type=int, default=12, help="random GPT-2's heads (ignored with --model)")
    parser.add_argument(
        "--model",
        default=None,
        help="a real causal model instead of the random GPT-2, by name (pt_helpers.models.load_model), "
        "e.g. HuggingFaceTB/SmolLM2-135M-Instruct",
    )
    return parser


def build_model(args, device: torch.device, seed: int = 0) -> tuple[torch.nn.Module, object, str]:
    """(model in eval mode on ``device``, its tokenizer, the record's model label) for ``add_model_args``'s flags.

    The one home of this resolution for every script: ``--model NAME`` loads the real model and ITS tokenizer
    through ``pt_helpers.models.load_model`` (the label says where it came from); without it, a GPT-2-shaped
    model of ``--n-layer/--n-embd/--n-head`` with RANDOM weights and the real GPT-2 tokenizer.
    """
    from pt_helpers.models import load_model, load_tokenizer

    if getattr(args, "model", None):
        loaded = load_model(args.model, "causal")
        # the package (or the folder's name), never this machine's absolute path: records are committed
        where = loaded.info.package or Path(str(loaded.location)).name
        return loaded.model.to(device).eval(), loaded.tokenizer, f"{args.model} ({loaded.source}: {where})"
    model = gpt2(args.n_layer, args.n_embd, args.n_head, seed).to(device)
    return model, load_tokenizer(), model_label(args.n_layer, args.n_embd)


def model_variant(variant: str, args) -> str:
    """A record's ``variant`` with the real model's name added, so a row of ``--model NAME`` never replaces the
    random GPT-2's row of the same setting (``write_record`` keys on device, threads and variant)."""
    return variant + (f", model={args.model}" if getattr(args, "model", None) else "")


def hidden_size(model: torch.nn.Module) -> int:
    """The width of the model's input embeddings (GPT-2's ``n_embd``, Llama's ``hidden_size``)."""
    return model.get_input_embeddings().embedding_dim


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], object], device: torch.device) -> tuple[float, float, object]:
    """(wall seconds, process CPU seconds, result) of one call."""
    sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, time.process_time() - c0, out


def interleaved(
    sides: dict[str, Callable[[], object]],
    repeats: int,
    device: torch.device,
    warmup: bool = True,
    warmups: dict[str, Callable[[], object]] | None = None,
) -> tuple[dict[str, dict], dict[str, object]]:
    """Time every side ``repeats`` times, interleaved (a, b, c, a, b, c, …), so a shared machine's changing
    load hits all alike; after one untimed warm-up call of each (allocator, kernels, caches) if ``warmup`` —
    of ``warmups[side]`` when given (a smaller call of the same code), else of the side itself.

    Returns ({side: {wall_s, cpu_s (medians), wall_all, cpu_all}}, {side: last result}).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be ≥ 1, got {repeats}")
    if warmup:
        for name, fn in sides.items():
            (warmups or {}).get(name, fn)()
    walls = {k: [] for k in sides}
    cpus = {k: [] for k in sides}
    results: dict[str, object] = {}
    for _ in range(repeats):
        for name, fn in sides.items():
            w, c, results[name] = timed(fn, device)
            walls[name].append(w)
            cpus[name].append(c)
    stats = {
        k: dict(
            wall_s=statistics.median(walls[k]),
            cpu_s=statistics.median(cpus[k]),
            wall_all=[round(x, 4) for x in walls[k]],
            cpu_all=[round(x, 4) for x in cpus[k]],
        )
        for k in sides
    }
    return stats, results


def saved_for_backward_mib(fn: Callable[[], torch.Tensor], *modules: torch.nn.Module) -> float:
    """MiB of the distinct tensors autograd keeps for the backward pass while ``fn()`` builds its graph.

    This is a step's activation memory — what grows with the tokens a method processes — counted exactly
    and the same way on every device (CPU has no allocator peak to read). Views of one storage (an
    expanded cache) count once, as in memory; the weights and buffers of ``modules`` (saved by every linear
    layer, resident anyway) are not counted. The graph is freed afterwards.
    """
    resident = {
        (t.device.type, t.untyped_storage().data_ptr()) for m in modules for t in [*m.parameters(), *m.buffers()]
    }
    seen: dict[tuple, int] = {}

    def pack(t: torch.Tensor):
        try:
            storage = t.untyped_storage()
            ident = (t.device.type, storage.data_ptr())
            if ident not in resident:
                seen[ident] = storage.nbytes()
        except (RuntimeError, NotImplementedError):  # tensors without storage (e.g. some wrappers)
            seen[("id", id(t))] = t.numel() * t.element_size()
        # Not ``t`` itself: when ``t`` is an output of the operation saving it, the graph would then hold a
        # tensor whose grad_fn is that graph, a cycle through C++ that Python's gc cannot see, and the whole
        # graph (activations and the weights it saved) would outlive ``del loss``. That cycle leaked every
        # measured graph and model copy of a sweep (16 GB resident by its n = 100 point at GPT-2 size). A
        # detached view keeps the same storage alive, as the real graph would, without the cycle.
        return t.detach()

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = fn()
    del loss
    return sum(seen.values()) / 2**20


def cuda_peak_mib(fn: Callable[[], object], device: torch.device) -> float | None:
    """Peak CUDA memory allocated during ``fn()`` (MiB) above what was allocated before it; None on CPU."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def write_record(path: Path, record: dict, key: tuple[str, ...] = ("device_type", "torch_threads", "variant")) -> Path:
    """Keep one record per ``key`` (device, threads, the record's ``variant`` of the settings) in ``path`` (a
    JSON list): this run replaces its own, and records of other settings stay."""
    old = []
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except json.JSONDecodeError:
            old = []
    if not isinstance(old, list):
        old = []
    record["load_average_end"] = load_average()
    ident = tuple(record.get(k) for k in key)
    kept = [r for r in old if isinstance(r, dict) and tuple(r.get(k) for k in key) != ident]
    atomic_write_json(path, kept + [record])
    print(f"wrote {path}")
    return path


# The three training-step comparisons (soft prompt, prefix, P-tuning vs PEFT) share their command line and
# their row loop; each script adds its own flags and its own ``run_one``.
def step_parser(doc: str, name: str) -> argparse.ArgumentParser:
    """The flags every step comparison takes (virtual tokens, batch, repeats, device, model, --out)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[20, 100], help="virtual tokens (one row each)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="timed steps of each side, interleaved; medians")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (set OMP_NUM_THREADS the same)")
    parser.add_argument("--no-amp", action="store_true", help="fp32 on CUDA too (default: bf16 autocast)")
    add_model_args(parser)
    parser.add_argument("--out", default=None, help=f"JSON file (default: benchmarks/records/{name}.json)")
    return parser


def run_step_rows(args, rec: dict, name: str, run_one: Callable[[int], dict]) -> dict:
    """One row per n: measure, append, save the record after every row (a run stopped half-way keeps what
    it measured), print it."""
    out = out_path(args.out, name)
    for n in args.n:
        release_memory()  # the last setting's model copy and activations go back first (glibc pools them)
        r = run_one(n)
        rec["rows"].append(r)
        rec["complete"] = len(rec["rows"]) == len(args.n)
        write_record(out, rec)
        positions = f" (positions {r['position_ratio']:.2f}×)" if "position_ratio" in r else ""
        print(
            f"n={n:4d} T={r['T']} B={r['B']}: ours {r['ours_s'] * 1e3:8.1f} ms · PEFT {r['peft_s'] * 1e3:8.1f} ms"
            f" · {r['speedup']:.2f}× wall, {r['cpu_speedup']:.2f}× CPU time{positions}"
            f" · saved for backward ours {r['saved_mib_ours']:.0f} MiB, PEFT {r['saved_mib_peft']:.0f} MiB"
            f" · loss ours {r['loss_ours']:.6f} PEFT {r['loss_peft']:.6f}",
            flush=True,
        )
    print(f"load average {rec['load_average_start']}")
    return rec
