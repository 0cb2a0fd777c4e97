"""The measuring harness every benchmark case goes through (ours, the official code, the plain ViT stack).

* **Time**: :func:`time_alternating` runs the cases of one comparison round-robin (the order rotates each
  round) after a warm-up step each, and keeps the median step time per case, so a shared machine's load
  hits every case alike.
* **Memory** (:func:`memory_profile`): exact allocator accounting, not RSS. On CUDA: ``torch.cuda`` peak
  statistics. On the CPU: ``torch.profiler`` with ``profile_memory=True`` records every allocation and free
  of the CPU allocator with the running total; the profile covers a warm-up step *and* the measured step,
  so blocks freed in the measured step (last step's gradients) were allocated under the profiler and are
  accounted. The measured step's timeline is split at the optimizer's ``Optimizer.step#...`` region:
  peak during forward + backward, and peak during the optimizer step. With the steady state
  ``S = params + grads + optimizer state`` (sizes of the tensors themselves), *activations* are
  ``params + peak(fwd+bwd) - S`` where ``peak`` counts every block the profiler saw allocated since it
  started and still alive (optimizer state and gradients included). The same method measures every case.
* **Saved for backward** (:func:`saved_tensor_bytes`): bytes of the distinct tensors autograd keeps for
  the backward pass at the end of the forward (parameters excluded), by module type: the activation
  memory proper, independent of when gradients are freed.
* **Peak matmul** (:func:`matmul_flops`): FLOP/s of a square matmul at the benchmark's dtype and threads,
  the denominator of the model FLOPs utilisation.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import platform
import re
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from avf.utils.cpu import bf16_units, cpu_flags

MiB = 1024**2
GiB = 1024**3


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Runner:
    """One measurable case: ``step()`` runs one full step (for training: forward, backward, optimizer).

    ``fwd_bwd`` optionally runs forward + backward only (used by :func:`saved_tensor_bytes` callers);
    ``model`` / ``optimizer`` give the steady-state sizes; ``clips`` is the clips processed per step.
    """

    name: str
    step: Callable[[], None]
    clips: int
    device: torch.device
    model: nn.Module | None = None
    optimizer: torch.optim.Optimizer | None = None
    forward: Callable[[], Any] | None = None  # forward pass whose saved tensors are counted
    info: dict[str, Any] = field(default_factory=dict)


def tensor_bytes(tensors: Sequence[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def steady_state(model: nn.Module | None, optimizer: torch.optim.Optimizer | None) -> dict[str, int]:
    """Bytes of parameters, gradients (one per trainable parameter) and optimizer state tensors."""
    if model is None:
        return {"params": 0, "grads": 0, "optimizer": 0}
    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad] if optimizer is not None else []
    state = []
    if optimizer is not None:
        for s in optimizer.state.values():
            state.extend(v for v in s.values() if torch.is_tensor(v) and v.numel() > 1)
    return {"params": tensor_bytes(params), "grads": tensor_bytes(trainable), "optimizer": tensor_bytes(state)}


def time_alternating(
    runners: Sequence[Runner], rounds: int, warmup: int = 1, extra: Callable[[], float] | None = None
) -> tuple[dict[str, list[float]], list[float]]:
    """Seconds per step of each runner over ``rounds`` round-robin rounds (order rotated every round).

    ``extra`` (the matmul probe) runs once per round in the rotation too; its values are returned second.
    """
    for r in runners:
        for _ in range(warmup):
            r.step()
        sync(r.device)
    times: dict[str, list[float]] = {r.name: [] for r in runners}
    extras: list[float] = []
    items: list[Runner | None] = [*runners, None] if extra is not None else list(runners)
    for i in range(rounds):
        shift = i % len(items)
        for item in items[shift:] + items[:shift]:
            if item is None:
                assert extra is not None
                extras.append(extra())
                continue
            sync(item.device)
            t0 = time.perf_counter()
            item.step()
            sync(item.device)
            times[item.name].append(time.perf_counter() - t0)
    return times, extras


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


# Dense (no sparsity) tensor-core peaks from NVIDIA's datasheets, FLOP/s: (model, variant, bf16, fp16).
# The model is a whole word of torch.cuda.get_device_name() ("NVIDIA H100 PCIe" -> H100); the variant, when
# given, must be one too; the first match wins. None: the chip has no such tensor cores.
DATASHEET_PEAKS: tuple[tuple[str, str | None, float | None, float], ...] = (
    ("H200", None, 989e12, 989e12),
    ("H100", "PCIe", 756e12, 756e12),
    ("H100", "NVL", 835e12, 835e12),
    ("H100", None, 989e12, 989e12),
    ("A100", None, 312e12, 312e12),
    ("L40S", None, 362e12, 362e12),
    ("L40", None, 181e12, 181e12),
    ("L4", None, 121e12, 121e12),
    ("A10", None, 125e12, 125e12),
    ("V100", None, None, 125e12),
    ("T4", None, None, 65e12),
)


def datasheet_peak(device: torch.device, dtype: torch.dtype) -> float | None:
    """The chip's datasheet peak for ``dtype`` (bf16/fp16 tensor cores), or None where it is not known."""
    if device.type != "cuda" or dtype not in (torch.bfloat16, torch.float16):
        return None
    words = set(re.split(r"[\s\-_]+", torch.cuda.get_device_name(device)))
    for model, variant, bf16, fp16 in DATASHEET_PEAKS:
        if model in words and (variant is None or variant in words):
            return bf16 if dtype == torch.bfloat16 else fp16
    return None


def matmul_flops(device: torch.device, dtype: torch.dtype = torch.float32, n: int = 0, reps: int = 5) -> float:
    """Best FLOP/s of ``reps`` ``[n, n] @ [n, n]`` matmuls (the MFU denominator; n = 2048 on a CPU, 8192
    on a GPU)."""
    n = n or (8192 if device.type == "cuda" else 2048)
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device, dtype)
    b = torch.randn(n, n, generator=g).to(device, dtype)
    (a @ b).sum().item()
    best = math.inf
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


# ---- memory -------------------------------------------------------------------------------------


@dataclass
class MemoryResult:
    params: int
    grads: int
    optimizer: int
    peak_fwd_bwd: int  # absolute peak (params + every live block) during forward + backward
    peak_optimizer: int  # absolute peak during the optimizer step (0 when there is none)
    activations: int  # peak_fwd_bwd - (params + grads + optimizer)
    method: str

    def as_dict(self, clips: int) -> dict[str, float]:
        return {
            "params_mib": self.params / MiB,
            "grads_mib": self.grads / MiB,
            "optimizer_state_mib": self.optimizer / MiB,
            "peak_fwd_bwd_mib": self.peak_fwd_bwd / MiB,
            "peak_optimizer_step_mib": self.peak_optimizer / MiB,
            "activations_mib": self.activations / MiB,
            "activations_mib_per_clip": self.activations / MiB / clips,
            "method": self.method,  # type: ignore[dict-item]
        }


def _profile_events(
    prof: Any, device: torch.device
) -> tuple[list[tuple[int, int, int]], list[tuple[int, int]], dict[str, tuple[int, int]], list[tuple[int, int]]]:
    """From a memory profile: allocations ``(time ns, ptr, bytes; negative = free)`` on ``device``,
    optimizer-step windows, named step marks, and gradient marks ``(time ns, ptr)``."""
    from torch._C._profiler import _EventType

    allocs: list[tuple[int, int, int]] = []
    opt_windows: list[tuple[int, int]] = []
    marks: dict[str, tuple[int, int]] = {}
    grads: list[tuple[int, int]] = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        if node.tag == _EventType.Allocation:
            f = node.extra_fields
            if f.device.type == device.type:
                allocs.append((node.start_time_ns, f.ptr, f.alloc_size))
        elif node.name.startswith("Optimizer.step#"):
            opt_windows.append((node.start_time_ns, node.end_time_ns))
        elif node.name.startswith("avf_grad:"):
            grads.append((node.start_time_ns, int(node.name.split(":", 1)[1])))
        elif node.name.startswith("avf_bench_"):
            marks[node.name] = (node.start_time_ns, node.end_time_ns)
        stack.extend(node.children)
    allocs.sort()
    grads.sort()
    return allocs, sorted(opt_windows), marks, grads


def _timeline(allocs: list[tuple[int, int, int]], grad_marks: list[tuple[int, int]]) -> list[tuple[int, int, int]]:
    """``(time, live bytes, live gradient bytes)`` after every allocation event.

    Only blocks allocated under the profiler count (frees of older blocks are ignored). A block is a
    gradient when a gradient mark names its pointer while it is alive.
    """
    events = sorted([(t, 0, ptr, size) for t, ptr, size in allocs] + [(t, 1, ptr, 0) for t, ptr in grad_marks])
    open_block: dict[int, int] = {}  # ptr -> index of its allocation event
    is_grad: set[int] = set()
    for i, (_, kind, ptr, size) in enumerate(events):
        if kind == 1:
            if ptr in open_block:
                is_grad.add(open_block[ptr])
        elif size > 0:
            open_block[ptr] = i
        else:
            open_block.pop(ptr, None)
    live: dict[int, tuple[int, bool]] = {}
    total = grad = 0
    out = []
    for i, (t, kind, ptr, size) in enumerate(events):
        if kind == 1:
            continue
        if size > 0:
            if ptr in live:  # a pointer reused without a seen free
                old, was_grad = live.pop(ptr)
                total -= old
                grad -= old if was_grad else 0
            live[ptr] = (size, i in is_grad)
            total += size
            grad += size if i in is_grad else 0
        elif ptr in live:
            old, was_grad = live.pop(ptr)
            total -= old
            grad -= old if was_grad else 0
        out.append((t, total, grad))
    return out


def memory_profile(runner: Runner) -> MemoryResult:
    """Peak memory of one step of ``runner`` (see the module docstring for the method)."""
    from torch.profiler import ProfilerActivity, profile, record_function

    dev = runner.device
    runner.step()  # optimizer state exists before the profile: it sits with the parameters below
    sync(dev)
    gc.collect()
    ss = steady_state(runner.model, runner.optimizer)
    handles = []
    if runner.model is not None:

        def mark(p: torch.Tensor) -> None:
            if p.grad is not None:
                with record_function(f"avf_grad:{p.grad.untyped_storage().data_ptr()}"):
                    pass

        handles = [p.register_post_accumulate_grad_hook(mark) for p in runner.model.parameters() if p.requires_grad]
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    try:
        with profile(activities=activities, profile_memory=True) as prof:
            with record_function("avf_bench_warm"):
                runner.step()
                sync(dev)
            with record_function("avf_bench_measured"):
                runner.step()
                sync(dev)
    finally:
        for h in handles:
            h.remove()
    allocs, opt_windows, marks, grad_marks = _profile_events(prof, dev)
    start, end = marks["avf_bench_measured"]
    opt_start = min((w[0] for w in opt_windows if start <= w[0] <= end), default=None)
    timeline = _timeline(allocs, grad_marks)
    before = [(total, grad) for t, total, grad in timeline if t < start]
    base_total, base_grad = before[-1] if before else (0, 0)
    fwd_bwd = [
        (total, grad) for t, total, grad in timeline if start <= t <= end and (opt_start is None or t < opt_start)
    ]
    opt = [total for t, total, _ in timeline if opt_start is not None and opt_start <= t <= end]
    fixed = ss["params"] + ss["optimizer"]  # allocated before the profile, never freed
    peak_fb = max((total for total, _ in fwd_bwd), default=base_total)
    act = max((total - grad for total, grad in fwd_bwd), default=0) - (base_total - base_grad)
    return MemoryResult(
        ss["params"],
        ss["grads"],
        ss["optimizer"],
        fixed + peak_fb,
        fixed + max(opt) if opt else 0,
        max(act, 0),
        "torch.profiler allocator events (profile_memory=True) over a warm-up + a measured step; "
        "activations = peak during forward+backward of (live blocks - live gradients) above the step start",
    )


# ---- saved tensors by module ---------------------------------------------------------------------


def saved_tensor_bytes(model: nn.Module, forward: Callable[[], Any]) -> tuple[int, dict[str, int]]:
    """Bytes of distinct non-parameter storages autograd saves during ``forward()``, total and by the
    type of the innermost module that was running (``"<top>"`` outside any submodule)."""
    param_ptrs = {p.untyped_storage().data_ptr() for p in model.parameters()}
    stack: list[str] = []
    seen: dict[int, tuple[int, str]] = {}

    def pre(mod: nn.Module, _args: Any) -> None:
        stack.append(type(mod).__name__)

    def post(mod: nn.Module, _args: Any, _out: Any) -> None:
        stack.pop()

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        ptr = st.data_ptr()
        if ptr not in param_ptrs and ptr not in seen and st.nbytes() > 0 and t.device.type != "meta":
            seen[ptr] = (st.nbytes(), stack[-1] if stack else "<top>")
        return t

    handles = []
    for m in model.modules():
        if m is model:
            continue
        handles.append(m.register_forward_pre_hook(pre))
        handles.append(m.register_forward_hook(post, always_call=True))
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = forward()
        del out
    finally:
        for h in handles:
            h.remove()
    by_module: dict[str, int] = defaultdict(int)
    for nbytes, name in seen.values():
        by_module[name] += nbytes
    return sum(by_module.values()), dict(sorted(by_module.items(), key=lambda kv: -kv[1]))


# ---- machine ------------------------------------------------------------------------------------


# The CPU flags that decide which matmul kernels run: vector width, FMA, bf16 dot products and AMX tiles.
MATMUL_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def cpu_matmul_rates(reps: int = 5) -> dict[str, float | None]:
    """FLOP/s of a square fp32 and (on CPUs with bf16 units, else None) bf16 matmul, this process's threads."""
    cpu = torch.device("cpu")
    return {
        "fp32": matmul_flops(cpu, torch.float32, reps=reps),
        "bf16": matmul_flops(cpu, torch.bfloat16, reps=reps) if bf16_units() else None,
    }


def machine_info(device: torch.device | None = None) -> dict[str, Any]:
    """The CPU (name, matmul features, bf16 units, cores), torch (version, threads), Python, load average; the GPU
    of a CUDA ``device``."""
    flags = cpu_flags()
    info: dict[str, Any] = {
        "cpu": _cpu_name(),
        "cpu_features": [f for f in MATMUL_FLAGS if f in flags],
        "cpu_bf16_units": list(bf16_units()),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_avg": list(os.getloadavg()),
    }
    if device is not None and device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_memory_gib"] = torch.cuda.get_device_properties(device).total_memory / GiB
    return info


def cpu_line(info: dict[str, Any]) -> str:
    """The line a benchmark prints first: the CPU, cores, matmul features and bf16 units (:func:`machine_info`)."""
    features = " ".join(info["cpu_features"]) or "none of " + " ".join(MATMUL_FLAGS)
    bf16 = " ".join(info["cpu_bf16_units"]) or "none"
    return f"CPU: {info['cpu']}, {info['cores']} cores; features: {features}; bf16 matmul units: {bf16}"


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):  # noqa: SIM115
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


@contextlib.contextmanager
def load_sampler(interval: float = 1.0) -> Iterator[list[float]]:
    """Samples the 1-minute load average every ``interval`` seconds while the block runs."""
    import threading

    samples: list[float] = [os.getloadavg()[0]]
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(interval):
            samples.append(os.getloadavg()[0])

    th = threading.Thread(target=run, daemon=True)
    th.start()
    try:
        yield samples
    finally:
        stop.set()
        th.join()
