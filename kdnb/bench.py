"""Speed benchmark: the conventional KD loop against kdnb's, side by side in one process (perf-notes §8).

For each (student, teacher) pair every variant trains the same models (same initial weights), the same Hinton
loss (α 0.9, T 4) and the same SGD (0.1, momentum 0.9, wd 5e-4); the throughput is student images per second,
the median over repeats of a block of steps after a warm-up. Variants:

- ``conventional`` (§8 C0): ``benchmarks/conventional.py``, PIL DataLoader, eager fp32, two ``.item()`` a step.
- ``kdnb`` (G0): the step of ``kdnb.train.train_run`` (DeviceData batches, ``Method.loss``, SGD, metrics kept
  on the device), fp32. ``_cl``: channels_last; ``_bf16``: bf16 autocast (a hashed numerics switch, §7.6).
- ``..._compile`` (G2): ``RunConfig.compile`` as train.py does it (student and teacher compiled in place, default
  mode). ``..._compile_ro`` (G3): ``reduce-overhead`` mode (CUDA graphs) and the optimizer step compiled too,
  which train.py does not do yet. Compile time is reported separately.
- ``fused<N>`` (G4): ``kdnb.fused``, N seeds per step under vmap, bf16 on CUDA; images summed over members.

Run ``kdnb bench [--json]`` or ``python -m kdnb.bench --help`` for the options the device script uses.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import functools
import importlib.util
import json
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdnb.models import canonical_name

DEFAULT_PAIRS = ("resnet8:resnet26", "wrn16_2:wrn40_2")
CPU_VARIANTS = ("conventional", "kdnb", "kdnb_cl", "kdnb_bf16_cl")
CUDA_VARIANTS = ("conventional", "kdnb", "kdnb_bf16_cl", "kdnb_bf16_cl_compile_ro", "kdnb_bf16_cl_compile",
                 "fused1", "fused5", "fused10")
EPOCHS, TRAIN_IMAGES, TEST_IMAGES = 200, 50_000, 10_000

# perf-notes §1: MFLOP per image, forward / forward+backward
FWD = {"resnet8": 25.0, "resnet14": 53.3, "resnet20": 81.6, "resnet26": 109.9,
       "wrn10_2": 89.0, "wrn16_2": 202.2, "wrn28_2": 428.7, "wrn40_2": 655.2}
FWDBWD = {"resnet8": 74.1, "resnet14": 159.1, "resnet20": 244.0, "resnet26": 328.9,
          "wrn10_2": 266.0, "wrn16_2": 605.8, "wrn28_2": 1285.2, "wrn40_2": 1964.7}
TEACHER = {"resnet": "resnet26", "wrn": "wrn40_2"}
# perf-notes §2: cost of a run relative to a Hinton run; the baseline is the student's fwd+bwd alone
METHOD_COST = {"hinton": 1.0, "at": 1.0, "sp": 1.0, "rkd_d": 1.0, "rkd_a": 1.0, "rkd_da": 1.0, "one": 1.02,
               "dml": 1.26, "fitnet": 1.32, "fsp": 1.48, "bss": 2.56, "baseline": None}


# a variant: (one training step, student images per step, one eval pass returning eval img/s)
Setup = tuple[Callable[[], None], int, Callable[[], float]]


def _family(name: str) -> str:
    return "wrn" if name.startswith("wrn") else "resnet"


def _kd_flops(student: str, teacher: str | None = None) -> float | None:
    teacher = teacher or TEACHER[_family(student)]
    return FWDBWD[student] + FWD[teacher] if student in FWDBWD and teacher in FWD else None


def paper_grid() -> list[tuple[str, str, int]]:
    """(student, method, training images) of the 1,415 runs of perf-notes §2 (the paper's grid)."""
    from kdnb.data import imbalance_counts

    methods = [m for m in METHOD_COST]  # 12 variants
    runs = [(s, m, TRAIN_IMAGES) for _ in range(2) for s in FWD for m in methods for _ in range(5)]
    runs += [("wrn16_2", m, TRAIN_IMAGES) for _ in range(3) for m in methods for _ in range(5)]  # label noise
    runs += [("wrn40_2", "baseline", TRAIN_IMAGES)] * 15
    for gamma in (0.2, 0.6, 1, 2):  # class imbalance
        n = sum(imbalance_counts(gamma))
        runs += [("wrn16_2", m, n) for m in methods for _ in range(5)] + [("wrn40_2", "baseline", n)] * 5
    return runs


def grid_seconds(rates: dict[str, tuple[str, float, float]]) -> float | None:
    """Projected seconds of the paper grid from one measured pair per family: ``rates[family] = (student,
    train img/s, eval img/s)``. Assumption: within a family, time per image scales with FLOPs (§1) and the
    method costs of §2; 200 epochs of the run's training set plus the 10k test set per epoch."""
    if set(rates) != {"resnet", "wrn"}:
        return None
    total = 0.0
    for student, method, n in paper_grid():
        ref, ips, eps = rates[_family(student)]
        cost = METHOD_COST[method] or FWDBWD[student] / _kd_flops(student)
        train = n * cost * _kd_flops(student) / _kd_flops(ref) / ips
        total += EPOCHS * (train + TEST_IMAGES * FWD[student] / FWD[ref] / eps)
    return total


def run_seconds(train_ips: float, eval_ips: float) -> float:
    """One 200-epoch run: 50k training images and the 10k test set per epoch."""
    return EPOCHS * (TRAIN_IMAGES / train_ips + TEST_IMAGES / eval_ips)


# ---------------------------------------------------------------------------------------------------------------
# Set-up


@functools.cache
def _conventional() -> Any:
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "conventional.py"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: the benchmark runs from a source checkout (pip install -e .)")
    spec = importlib.util.spec_from_file_location("kdnb_conventional", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _arrays(train_images: int | None, data: str = "auto") -> tuple[dict[str, np.ndarray], str]:
    """CIFAR-10 from the data root (the small file is enough), else (or with ``data="random"``) random images;
    the training set tiled to ``train_images``."""
    from kdnb.data import DataNotFound, data_root, load_arrays

    sibling = Path(__file__).resolve().parents[2] / "shared" / "data"  # the layout of the development machines
    roots = [] if data == "random" else [data_root()] + ([sibling] if sibling.is_dir() else [])
    for root in roots:
        try:
            arr, name = load_arrays("cifar10", root, download=False, small_ok=True), "cifar10"
            break
        except DataNotFound:
            continue
    else:
        rng = np.random.RandomState(0)
        name = "random"
        arr = {"x_train": rng.randint(0, 256, (10_000, 32, 32, 3), dtype=np.uint8),
               "y_train": rng.randint(0, 10, 10_000), "x_test": rng.randint(0, 256, (2_000, 32, 32, 3), np.uint8),
               "y_test": rng.randint(0, 10, 2_000)}
    x, y = np.array(arr["x_train"]), np.array(arr["y_train"], dtype=np.int64)  # copies: the cache is read-only
    if train_images:
        idx = np.arange(train_images) % len(y)  # a 50k epoch as in CIFAR-10 (the small file is 10k)
        x, y = x[idx], y[idx]
    return {"x_train": x, "y_train": y, "x_test": np.array(arr["x_test"]),
            "y_test": np.array(arr["y_test"], dtype=np.int64)}, name


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _endless(make: Callable[[], Iterator], batch_size: int) -> Iterator:
    """Full batches only, epoch after epoch (compiled graphs keep one shape)."""
    while True:
        for b in make():
            if b[1].shape[-1] == batch_size:
                yield b


class Pair:
    """Everything the variants of one pair share: data, initial weights, the teacher."""

    def __init__(self, spec: str, device: torch.device, arrays: dict[str, np.ndarray], batch_size: int = 128,
                 eval_images: int | None = None):
        from kdnb.data import DeviceData, Split
        from kdnb.models import build

        student, _, teacher = spec.replace("<-", ":").partition(":")
        self.student = canonical_name(student)
        self.teacher = canonical_name(teacher) if teacher else TEACHER[_family(self.student)]
        self.name = f"{self.student}<-{self.teacher}"
        self.device, self.arrays, self.batch_size = device, arrays, batch_size
        torch.manual_seed(0)
        self.init = build(self.student).state_dict()
        torch.manual_seed(1)  # random weights: speed does not depend on them
        self.teacher_model = build(self.teacher).to(device).eval().requires_grad_(False)
        self.train = DeviceData(Split(arrays["x_train"], arrays["y_train"]), device)
        n = eval_images or len(arrays["y_test"])
        self.test = DeviceData(Split(arrays["x_test"][:n], arrays["y_test"][:n]), device, augment=False)

    def new_student(self, seed: int | None = None) -> torch.nn.Module:
        from kdnb.models import build

        if seed is not None:  # another member of a fused group
            torch.manual_seed(seed)
        m = build(self.student)
        if seed is None:
            m.load_state_dict(self.init)
        return m.to(self.device)


def _compile(fn: Callable, mode: str | None) -> Callable:
    return torch.compile(fn, mode=None if mode == "default" else mode)


def _setup_conventional(p: Pair, workers: int) -> Setup:
    conv = _conventional()
    student = p.new_student()
    opt = conv.sgd(student)
    loader = conv.make_loader(p.arrays["x_train"], p.arrays["y_train"], p.batch_size, workers)
    it = conv.endless(loader)

    def step() -> None:
        with torch.profiler.record_function("data"):
            x, y = next(it)
        conv.hinton_step(student, p.teacher_model, opt, x, y, p.device)

    def eval_pass() -> float:  # RepDistiller: test batch = batch/2, workers/2
        n = len(p.test)
        loader = conv.make_loader(p.arrays["x_test"][:n], p.arrays["y_test"][:n], p.batch_size // 2, workers // 2,
                                  False)
        t0 = time.perf_counter()
        conv.evaluate(student, loader, p.device)
        return len(p.test) / (time.perf_counter() - t0)

    return step, p.batch_size, eval_pass


def _setup_kdnb(p: Pair, precision: str, channels_last: bool, compile_mode: str | None) -> Setup:
    """The step of ``kdnb.train.train_run`` on a Hinton method built from a RunConfig, as that loop builds it."""
    from kdnb.config import RunConfig
    from kdnb.methods import METHODS
    from kdnb.train import derive_seed, evaluate, train_step

    cfg = RunConfig.from_dict({"method": "hinton", "student": p.student, "teacher": p.teacher,
                               "batch_size": p.batch_size, "precision": precision,
                               "channels_last": channels_last, "compile": compile_mode is not None})
    teacher = copy.deepcopy(p.teacher_model) if compile_mode else p.teacher_model  # compiled in place below
    method = METHODS["hinton"](cfg, teacher).to(p.device)
    method.models["student"] = p.new_student()
    if cfg.channels_last:
        method.models.to(memory_format=torch.channels_last)
    if compile_mode:  # as train.py: in place, student(s) and teacher
        for m in [*method.models.values(), teacher]:
            m.compile(mode=None if compile_mode == "default" else compile_mode)
    gen = torch.Generator(p.device).manual_seed(derive_seed(cfg.seed, "data"))
    autocast = (lambda: torch.autocast(p.device.type, dtype=torch.bfloat16)) if precision == "bf16" \
        else contextlib.nullcontext
    stage = method.stages()[0]
    opts = [torch.optim.SGD(g, lr=stage.lr, momentum=stage.momentum, weight_decay=stage.weight_decay)
            for g in method.param_groups(stage)]
    if compile_mode == "reduce-overhead":  # beyond train.py: the optimizer step compiled too (§7.4)
        for opt in opts:
            opt.step = _compile(opt.step, None)
    eval_model = method.models["student"]
    if compile_mode:  # the projection's eval pass runs eager (2-3 % of a run): no eval-mode compile in the budget
        eval_model = p.new_student().to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    method.train()
    loss_sum = torch.zeros((), device=p.device)
    correct = torch.zeros((), dtype=torch.long, device=p.device)
    it = _endless(lambda: p.train.batches(stage.batch_size, gen), p.batch_size)

    def step() -> None:  # the step of kdnb/train.py itself
        with torch.profiler.record_function("data"):
            x, y = next(it)
        train_step(method, opts, x, y, stage, 0, autocast, cfg.channels_last, loss_sum, correct)

    def eval_pass() -> float:
        t0 = time.perf_counter()
        evaluate({"student": eval_model}, p.test, cfg.eval_batch_size, autocast)
        return len(p.test) / (time.perf_counter() - t0)

    return step, p.batch_size, eval_pass


def _setup_fused(p: Pair, n: int, precision: str, compile_mode: str | None) -> Setup:
    from kdnb import fused
    from kdnb.train import derive_seed, evaluate

    dtype = torch.bfloat16 if precision == "bf16" else None  # students by hand, the teacher under autocast
    students = fused.FusedStudents([p.new_student()] + [p.new_student(seed) for seed in range(1, n)], dtype)
    opt = fused.sgd(students)
    gens = [torch.Generator(p.device).manual_seed(derive_seed(i, "data")) for i in range(n)]
    it = _endless(lambda: fused.member_batches(p.train, gens, p.batch_size), p.batch_size)
    autocast = (lambda: torch.autocast(p.device.type, dtype=torch.bfloat16)) if precision == "bf16" \
        else contextlib.nullcontext
    loss_fn = _compile(fused.fused_loss, compile_mode) if compile_mode else fused.fused_loss
    if compile_mode:
        opt.step = _compile(opt.step, None)
    correct = torch.zeros(n, dtype=torch.long, device=p.device)

    def step() -> None:
        nonlocal correct
        with torch.profiler.record_function("data"):
            xs, ys = next(it)
        with autocast():
            loss, logits = loss_fn(students, p.teacher_model, xs, ys, "hinton")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        correct += (logits.detach().argmax(-1) == ys).sum(1)

    member = students.member(0, p.new_student())

    def eval_pass() -> float:  # members are evaluated one after another
        t0 = time.perf_counter()
        evaluate({"student": member}, p.test, 1000, autocast)
        return len(p.test) / (time.perf_counter() - t0)

    return step, n * p.batch_size, eval_pass


def setup(p: Pair, variant: str, workers: int) -> Setup:
    """(step closure, student images per step, eval pass returning eval img/s) of a variant."""
    if variant == "conventional":
        return _setup_conventional(p, workers)
    mode = "reduce-overhead" if variant.endswith("_compile_ro") else "default" if variant.endswith("_compile") \
        else None
    precision = "bf16" if "_bf16" in variant else "fp32"
    if variant.startswith("fused"):
        n = int(variant[5:].split("_")[0])
        return _setup_fused(p, n, "bf16" if p.device.type == "cuda" else "fp32", mode)
    if variant.startswith("kdnb"):
        return _setup_kdnb(p, precision, "_cl" in variant, mode)
    raise ValueError(f"unknown variant {variant!r}")


# ---------------------------------------------------------------------------------------------------------------
# Measurement


def _mem_mark(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _mem_growth(device: torch.device, mark: float) -> float:
    """CUDA: peak allocated beyond what was allocated before; CPU: growth of the process's RSS high-water mark."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20 - mark
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - mark


class Live:
    """A variant set up and warmed up, ready for timed blocks."""

    def __init__(self, p: Pair, variant: str, warmup: int, workers: int):
        self.p, self.variant, self.rates, self.util = p, variant, [], []
        mark = _mem_mark(p.device)
        t0 = time.perf_counter()
        self.step, self.images, self.eval_pass = setup(p, variant, workers)
        self.setup_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        self.step()
        _sync(p.device)
        self.first_s = time.perf_counter() - t0
        for _ in range(warmup - 1):
            self.step()
        _sync(p.device)
        self.warm_s, self.warmup = time.perf_counter() - t0, warmup
        self.mem_mb = _mem_growth(p.device, mark)

    def block(self, steps: int) -> float:
        _sync(self.p.device)
        w, c = time.perf_counter(), time.process_time()
        for _ in range(steps):
            self.step()
        _sync(self.p.device)
        w, c = time.perf_counter() - w, time.process_time() - c
        self.rates.append(steps * self.images / w)
        self.util.append(c / w)
        return self.rates[-1]

    def result(self, eval_passes: int) -> dict[str, Any]:
        ips = statistics.median(self.rates)
        eval_ips = 0.0
        for _ in range(eval_passes):  # the last pass counts (the first one may set up kernels)
            eval_ips = self.eval_pass()
        out = {"images_per_s": ips, "step_ms": 1e3 * self.images / ips, "repeats_images_per_s": self.rates,
               "max_images_per_s": max(self.rates),
               "process_cpu_per_wall": statistics.median(self.util), "images_per_step": self.images,
               "setup_s": self.setup_s, "first_step_s": self.first_s, "peak_mem_mb": self.mem_mb,
               "eval_images_per_s": eval_ips, "run_s": run_seconds(ips, eval_ips)}
        if "compile" in self.variant:  # warm-up time beyond what its steps cost at steady state
            out["compile_s"] = max(0.0, self.warm_s - self.warmup * self.images / ips)
        return out


def _error(err: Exception) -> dict[str, str]:
    msg = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return {"error": f"{type(err).__name__}: {msg}"[:300]}


def measure_pair(p: Pair, variants: list[str], steps: int, repeats: int, warmup: int, workers: int,
                 eval_passes: int = 1, barrier: Callable[[], None] | None = None,
                 log: Callable[[str], None] | None = None,
                 progress: Callable[[dict[str, dict[str, Any]]], None] | None = None) -> dict[str, dict[str, Any]]:
    """Every variant set up and warmed up, then ``repeats`` rounds in which each variant times a block of
    ``steps`` steps in turn: a change of machine load hits all variants alike, and the per-round ratios to the
    conventional loop are paired measurements. ``progress`` gets the partial results after every set-up and
    round (so a killed run leaves what it measured)."""
    live: dict[str, Live] = {}
    out: dict[str, dict[str, Any]] = {}

    def partial() -> None:
        if progress:
            progress({v: out.get(v) or ({"partial": True, "setup_s": live[v].setup_s, "warm_s": live[v].warm_s,
                                         "repeats_images_per_s": live[v].rates} if v in live else {"pending": True})
                      for v in variants})

    for v in variants:
        try:
            live[v] = Live(p, v, warmup, workers)
        except Exception as err:  # one failed variant (a compile error, say) must not lose the others
            out[v] = _error(err)
            if log:
                log(f"{p.name:20s} {v:26s} {out[v]['error']}")
        partial()
    if barrier:
        barrier()
    for r in range(repeats):
        for v in list(live):
            try:
                rate = live[v].block(steps)
                if log:
                    log(f"{p.name:20s} {v:26s} round {r + 1}: {rate:9.0f} img/s")
            except Exception as err:
                out[v] = _error(err)
                del live[v]
        partial()
    for v in variants:
        if v in live:
            try:
                out[v] = live[v].result(eval_passes)
            except Exception as err:
                out[v] = _error(err)
    ref = live.get("conventional")
    for v, lv in live.items():
        if ref is not None and "images_per_s" in out[v]:
            out[v]["speedup_paired"] = statistics.median(a / b for a, b in zip(lv.rates, ref.rates, strict=True))
    return {v: out[v] for v in variants}


def _summary(pair: dict[str, Any]) -> None:
    """Headline numbers of a pair: the fastest fp32 kdnb variant (same numerics as the reference), the fastest
    of any kind (bf16, compiled, fused), each against the conventional loop."""
    v = {k: r for k, r in pair["variants"].items() if "images_per_s" in r}
    ref = v.get("conventional")
    fp32 = {k: r for k, r in v.items() if k.startswith("kdnb") and "_bf16" not in k}
    anyk = {k: r for k, r in v.items() if k != "conventional"}
    for prefix, group in (("kdnb", fp32), ("best", anyk)):
        if not group:
            continue
        k = max(group, key=lambda k: group[k]["images_per_s"])
        pair[f"{prefix}_variant"], pair[f"{prefix}_images_per_s"] = k, group[k]["images_per_s"]
        if ref:  # the median of the per-round ratios (paired), else the ratio of the medians
            key = "speedup" if prefix == "kdnb" else "best_speedup"
            pair[key] = group[k].get("speedup_paired", group[k]["images_per_s"] / ref["images_per_s"])
    if ref:
        pair["reference_variant"], pair["reference_images_per_s"] = "conventional", ref["images_per_s"]


def _grid(result: dict[str, Any]) -> None:
    """Paper-grid hours for the reference, the fp32 headline and the best variant (needs one pair per family)."""
    assumption = " ".join(grid_seconds.__doc__.split("Assumption: ")[1].split())
    grid: dict[str, Any] = {"runs": len(paper_grid()), "assumption": assumption}
    for key, vkey in (("reference", "reference_variant"), ("kdnb", "kdnb_variant"), ("best", "best_variant")):
        rates = {}
        for pr in result["pairs"].values():
            k = pr.get(vkey)
            if k:
                r = pr["variants"][k]
                rates[_family(pr["student"])] = (pr["student"], r["images_per_s"], r["eval_images_per_s"])
        s = grid_seconds(rates)
        grid[f"{key}_hours"] = None if s is None else s / 3600
    result["paper_grid"] = grid


def environment(device: torch.device) -> dict[str, Any]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return {"device": str(device), "device_name": name, "torch": torch.__version__, "cuda": torch.version.cuda,
            "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "load_before": os.getloadavg()}


def _cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"CPU: {os.cpu_count()}-core {line.split(':', 1)[1].strip()}"
    return f"CPU: {os.cpu_count()}-core {platform.processor()}"


def run(device: str = "auto", steps: int | None = None, pairs: list[str] | None = None,
        variants: list[str] | None = None, repeats: int | None = None, warmup: int | None = None,
        workers: int | None = None,
        train_images: int | None = None, out: str | None = None, log: Callable[[str], None] | None = None,
        barrier: Callable[[], None] | None = None, data: str = "auto") -> dict[str, Any]:
    """Measure every variant on every pair; the result as one dict (written to ``out`` after each variant)."""
    from kdnb.train import resolve_device

    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True  # RepDistiller sets it too; both loops get it
    fixed_steps = steps
    repeats = repeats or (3 if cuda else 5)  # CPU: more, shorter rounds; other tenants' bursts hit single blocks
    warmup = warmup or (20 if cuda else 1)
    workers = (min(8, os.cpu_count() or 1) if cuda else 0) if workers is None else workers
    variants = list(variants or (CUDA_VARIANTS if cuda else CPU_VARIANTS))
    arrays, data_name = _arrays(train_images if train_images is not None else (TRAIN_IMAGES if cuda else None), data)
    result = {**environment(dev), "steps": steps or ("100" if cuda else "3 (ResNet pair), 1 (WRN pair)"),
              "repeats": repeats, "warmup": warmup, "batch_size": 128,
              "workers": workers, "data": data_name, "train_images": len(arrays["y_train"]), "pairs": {}}
    for spec in pairs or DEFAULT_PAIRS:
        p = Pair(spec, dev, arrays, eval_images=None if cuda else 1000)
        pr = result["pairs"][p.name] = {"student": p.student, "teacher": p.teacher,
                                        "kd_mflop_per_image": _kd_flops(p.student, p.teacher), "variants": {}}
        # CPU default: blocks of well under a second, so that the whole bench stays near a minute on 2 cores
        kd = _kd_flops(p.student, p.teacher) or 1000.0
        pr["steps"] = fixed_steps or (100 if cuda else max(1, round(3 * _kd_flops("resnet8") / kd)))
        def progress(partial: dict[str, dict[str, Any]], pr: dict[str, Any] = pr) -> None:
            pr["variants"] = partial
            if out:
                _write(out, result)

        pr["variants"] = measure_pair(p, variants, pr["steps"], repeats, warmup, workers, 2 if cuda else 1, barrier,
                                      log, progress)
        _summary(pr)
        if out:
            _write(out, result)
        if cuda:
            torch._dynamo.reset()
            torch.cuda.empty_cache()
    result["load_after"] = os.getloadavg()
    _grid(result)
    if out:
        _write(out, result)
    return result


def _write(path: str, result: dict[str, Any]) -> None:
    tmp = f"{path}.tmp"
    Path(tmp).write_text(json.dumps(result, indent=1, default=float))
    os.replace(tmp, path)


def _fmt(x: float | None, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def table(result: dict[str, Any]) -> str:
    """The human-readable report."""
    lines = [f"kdnb bench on {result['device_name']} ({result['device']}), torch {result['torch']}, "
             f"{result['threads']} threads, {result['date']}, load {result['load_before'][0]:.2f}",
             f"{result['steps']} steps x {result['repeats']} rounds after {result['warmup']} warm-up, batch 128, "
             f"data {result['data']}, conventional workers {result['workers']}"]
    mem = "peak MB" if result["device"].startswith("cuda") else "RSS +MB"
    for name, pr in result["pairs"].items():
        ref = pr.get("reference_images_per_s")
        lines += ["", f"{name} ({_fmt(pr['kd_mflop_per_image'], '.0f')} MFLOP/img)",
                  f"  {'variant':26s} {'img/s':>9s} {'speedup':>8s} {'compile s':>9s} {mem:>8s} {'run min':>8s}"]
        for v, r in pr["variants"].items():
            if "error" in r:
                lines.append(f"  {v:26s} failed: {r['error']}")
                continue
            if "images_per_s" not in r:
                lines.append(f"  {v:26s} incomplete: {len(r.get('repeats_images_per_s', []))} rounds")
                continue
            sp = r.get("speedup_paired", r["images_per_s"] / ref if ref else None)
            lines.append(f"  {v:26s} {r['images_per_s']:9.0f} {_fmt(sp, '7.2f')}x {_fmt(r.get('compile_s'), '9.1f')} "
                         f"{r['peak_mem_mb']:8.0f} {r['run_s'] / 60:8.1f}")
        if "speedup" in pr:
            lines.append(f"  fp32 kdnb ({pr['kdnb_variant']}): {pr['speedup']:.2f}x; "
                         f"best ({pr['best_variant']}): {pr['best_speedup']:.2f}x")
    g = result.get("paper_grid", {})
    if g.get("reference_hours") is not None:
        lines += ["", f"paper grid ({g['runs']} runs): conventional {g['reference_hours']:.0f} h, "
                      f"kdnb fp32 {g['kdnb_hours']:.0f} h, best {g['best_hours']:.0f} h",
                  f"  assumption: {' '.join(g['assumption'].split())}"]
    lines.append("run min: one 200-epoch run (50k images + 10k test per epoch); fused: amortised per member run")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# Profile (perf-notes §8: top kernels and launches per step of the best variant)

# op or kernel name fragments per category; data loading and the optimizer step are found by their
# record_function ranges ("data", "Optimizer.step") and counted inclusively
CATEGORIES = (("conv", ("conv", "xmma", "gemm", "winograd", "cudnn", "sm80_", "sm90_")),
              ("batch_norm", ("batch_norm", "bn_fw", "bn_bw", "batchnorm")),
              ("loss", ("softmax", "nll", "kl_div", "cross_entropy", "logsumexp")),
              ("optimizer", ("multi_tensor", "foreach", "sgd")),
              ("elementwise", ("relu", "clamp", "threshold", "add", "mul", "div", "sub", "elementwise", "copy",
                               "fill", "where", "cat", "index", "gather", "triton_", "reduce", "sum", "mean")))


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


def profile(pair: str, variant: str, device: str = "auto", steps: int = 10, workers: int | None = None,
            top: int = 25) -> dict[str, Any]:
    """Profile ``steps`` steps of one variant after warm-up. CPU: wall time per step split into data loading,
    optimizer step, and the other aten ops by kind (self time), the rest being Python, autograd and dispatch;
    CUDA: device time per step by kernel kind, kernels and host launch calls per step. Plus the top ops."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as tprofile

    from kdnb.train import resolve_device

    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    arrays, _ = _arrays(TRAIN_IMAGES if cuda else None)
    p = Pair(pair, dev, arrays)
    step, images, _ = setup(p, variant, workers if workers is not None else (8 if cuda else 0))
    for _ in range(25 if cuda else 2):
        step()
    _sync(dev)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with tprofile(activities=acts) as prof:
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(dev)
        wall = time.perf_counter() - t0
    ka = prof.key_averages()
    attr = "self_device_time_total" if cuda else "self_cpu_time_total"
    rows = sorted(ka, key=lambda e: getattr(e, attr), reverse=True)
    total = sum(getattr(e, attr) for e in ka) or 1.0
    cats: dict[str, float] = {}
    events = prof.events()
    if cuda:
        for e in events:
            if e.device_type == torch.autograd.DeviceType.CUDA:
                cats[_category(e.name)] = cats.get(_category(e.name), 0.0) + e.self_device_time_total
    else:
        for e in events:
            if e.name in ("data",) or e.name.startswith("Optimizer.step#"):
                k = _range(e.cpu_parent) is None and ("data" if e.name == "data" else "optimizer")
                if k:
                    cats[k] = cats.get(k, 0.0) + e.cpu_time_total
            elif e.name.startswith("aten::") and _range(e) is None:
                cats[_category(e.name)] = cats.get(_category(e.name), 0.0) + e.self_cpu_time_total
        cats["python/autograd/dispatch (rest of wall)"] = wall * 1e6 - sum(cats.values())
    out = {"pair": p.name, "variant": variant, "device": environment(dev)["device_name"], "steps": steps,
           "images_per_step": images, "wall_ms_per_step": 1e3 * wall / steps,
           "categories_ms_per_step": {k: v / 1e3 / steps for k, v in sorted(cats.items(), key=lambda kv: -kv[1])},
           "top": [{"name": e.key, "calls_per_step": e.count / steps, "ms_per_step": getattr(e, attr) / 1e3 / steps,
                    "share": getattr(e, attr) / total} for e in rows[:top]]}
    if cuda:
        kernels = [e for e in events if e.device_type == torch.autograd.DeviceType.CUDA]
        launches = sum(e.count for e in ka if e.key in ("cudaLaunchKernel", "cudaLaunchKernelExC",
                                                        "cuLaunchKernel", "cudaGraphLaunch"))
        out.update(kernels_per_step=len(kernels) / steps, host_launch_calls_per_step=launches / steps,
                   device_ms_per_step=sum(e.self_device_time_total for e in kernels) / 1e3 / steps)
    else:
        out["aten_ops_per_step"] = sum(e.count for e in ka if e.key.startswith("aten::")) / steps
    out["table"] = ka.table(sort_by=attr, row_limit=top)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Entry points


def _file_barrier(folder: str, procs: int, timeout: float = 300.0) -> Callable[[], None]:
    """All ``procs`` processes start timing together (perf-notes §8 G4p: concurrent processes)."""
    def wait() -> None:
        Path(folder).mkdir(parents=True, exist_ok=True)
        Path(folder, f"{os.getpid()}.{time.monotonic_ns()}").touch()
        end = time.monotonic() + timeout
        while len(list(Path(folder).iterdir())) % procs and time.monotonic() < end:
            time.sleep(0.05)
    return wait


def main(json_out: bool = False, device: str = "auto", steps: int | None = None, pairs: list[str] | None = None,
         **options: Any) -> int:
    """``kdnb bench``: print the table, or with ``json_out`` one JSON object. Returns the exit status."""
    log = None if json_out else (lambda s: print(s, file=sys.stderr, flush=True))
    try:
        result = run(device, steps, pairs, log=log, **options)
    except ValueError as err:
        print(f"kdnb: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result, default=float) if json_out else table(result))
    failed = any("error" in r for pr in result["pairs"].values() for r in pr["variants"].values())
    return 1 if failed else 0


def _cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kdnb.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--pairs", nargs="+", help="student:teacher, e.g. resnet8:resnet26 (teacher optional)")
    ap.add_argument("--variants", nargs="+", help=f"CPU default {' '.join(CPU_VARIANTS)}; "
                                                   f"CUDA default {' '.join(CUDA_VARIANTS)}")
    ap.add_argument("--repeats", type=int, help="rounds (default: CUDA 3, CPU 5)")
    ap.add_argument("--warmup", type=int)
    ap.add_argument("--workers", type=int, help="DataLoader workers of the conventional loop")
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--train-images", type=int)
    ap.add_argument("--out", help="write the JSON here after every variant (partial results survive)")
    ap.add_argument("--barrier", help="folder for a start barrier shared by --procs concurrent processes")
    ap.add_argument("--procs", type=int, default=1)
    ap.add_argument("--profile", metavar="VARIANT", help="profile one variant of the first pair instead")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.profile:
        r = profile((a.pairs or DEFAULT_PAIRS)[0], a.profile, a.device, a.steps or 10, a.workers)
        print(r.pop("table"))
        print(json.dumps(r, indent=1))
        if a.out:
            _write(a.out, r)
        return 0
    barrier = _file_barrier(a.barrier, a.procs) if a.barrier else None
    return main(a.json, a.device, a.steps, a.pairs, variants=a.variants, repeats=a.repeats, warmup=a.warmup,
                workers=a.workers, train_images=a.train_images, out=a.out, barrier=barrier)


if __name__ == "__main__":
    sys.exit(_cli())
