"""Profile of one bench variant (perf-notes §8): top kernels and launches per step (``kdnb bench --profile V``)."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import torch
from torch.profiler import ProfilerActivity
from torch.profiler import profile as tprofile

from benchmarks.bench import DEFAULT_PAIRS, TRAIN_IMAGES, Pair, _arrays, _sync, _write, environment, parser, setup
from kdnb.train import resolve_device

# op or kernel name fragments per category; data loading and the optimizer step are found by their
# record_function ranges ("data", "Optimizer.step") and counted inclusively
CATEGORIES = (("conv", ("conv", "xmma", "gemm", "winograd", "cudnn", "sm80_", "sm90_")),
              ("batch_norm", ("batch_norm", "bn_fw", "bn_bw", "batchnorm")),
              ("loss", ("softmax", "nll", "kl_div", "cross_entropy", "logsumexp")),
              ("optimizer", ("multi_tensor", "foreach", "sgd")),
              ("elementwise", ("relu", "clamp", "threshold", "add", "mul", "div", "sub", "elementwise", "copy",
                               "fill", "where", "cat", "index", "gather", "triton_", "reduce", "sum", "mean")))
LAUNCHES = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cudaGraphLaunch")


def _category(name: str) -> str:
    n = name.lower()
    return next((c for c, keys in CATEGORIES if any(k in n for k in keys)), "other")


def _range(e) -> str | None:
    """The bench range ("data") or optimizer step an event runs in, if any."""
    while e is not None:
        if e.name == "data":
            return "data"
        if e.name.startswith("Optimizer.step"):
            return "optimizer"
        e = e.cpu_parent
    return None


def _categories(events, cuda: bool, wall: float) -> dict[str, float]:
    """Device time by kernel kind (CUDA), or wall time split into data, optimizer and aten ops by kind (CPU)."""
    cats: dict[str, float] = {}
    for e in events:
        if cuda and e.device_type == torch.autograd.DeviceType.CUDA:
            key, t = _category(e.name), e.self_device_time_total
        elif not cuda and (e.name == "data" or e.name.startswith("Optimizer.step#")) and _range(e.cpu_parent) is None:
            key, t = ("data" if e.name == "data" else "optimizer"), e.cpu_time_total
        elif not cuda and e.name.startswith("aten::") and _range(e) is None:
            key, t = _category(e.name), e.self_cpu_time_total
        else:
            continue
        cats[key] = cats.get(key, 0.0) + t
    if not cuda:
        cats["python/autograd/dispatch (rest of wall)"] = wall * 1e6 - sum(cats.values())
    return cats


def profile(pair: str, variant: str, device: str = "auto", steps: int = 10, workers: int | None = None,
            top: int = 25) -> dict[str, Any]:
    """Profile ``steps`` steps of one variant after warm-up: time per step by category (see ``_categories``),
    kernels and host launch calls per step on CUDA, aten ops per step on the CPU, and the top ops."""
    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    p = Pair(pair, dev, _arrays(TRAIN_IMAGES if cuda else None)[0])
    step, images, *_ = setup(p, variant, workers if workers is not None else (8 if cuda else 0))
    for _ in range(25 if cuda else 2):
        step()
    _sync(dev)
    with tprofile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(dev)
        wall = time.perf_counter() - t0
    ka, events = prof.key_averages(), prof.events()
    attr = "self_device_time_total" if cuda else "self_cpu_time_total"
    total = sum(getattr(e, attr) for e in ka) or 1.0
    cats = _categories(events, cuda, wall)
    out = {"pair": p.name, "variant": variant, "device": environment(dev)["device_name"], "steps": steps,
           "images_per_step": images, "wall_ms_per_step": 1e3 * wall / steps,
           "categories_ms_per_step": {k: v / 1e3 / steps for k, v in sorted(cats.items(), key=lambda kv: -kv[1])},
           "top": [{"name": e.key, "calls_per_step": e.count / steps, "ms_per_step": getattr(e, attr) / 1e3 / steps,
                    "share": getattr(e, attr) / total}
                   for e in sorted(ka, key=lambda e: getattr(e, attr), reverse=True)[:top]]}
    if cuda:
        kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
        out.update(kernels_per_step=len(kernels) / steps,
                   host_launch_calls_per_step=sum(e.count for e in ka if e.key in LAUNCHES) / steps,
                   device_ms_per_step=sum(e.self_device_time_total for e in kernels) / 1e3 / steps)
    else:
        out["aten_ops_per_step"] = sum(e.count for e in ka if e.key.startswith("aten::")) / steps
    out["table"] = ka.table(sort_by=attr, row_limit=top)
    return out


def cli(argv: list[str] | None = None) -> int:
    """``python -m kdnb.bench --profile VARIANT [bench options]``: print the profile's table and JSON."""
    ap = parser()
    ap.add_argument("--profile", metavar="VARIANT", required=True, help="the variant to profile (first pair)")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    r = profile((a.pairs or DEFAULT_PAIRS)[0], a.profile, a.device, a.steps or 10, a.workers)
    print(r.pop("table"))
    print(json.dumps(r, indent=1))
    if a.out:
        _write(a.out, r)
    return 0


if __name__ == "__main__":
    sys.exit(cli())
