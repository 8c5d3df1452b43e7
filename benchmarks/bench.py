"""Speed benchmark: the conventional KD loop against kdnb's, side by side in one process (perf-notes §8).

For each (student, teacher) pair every variant trains the same models (same initial weights), the same Hinton
loss (α 0.9, T 4) and the same SGD (0.1, momentum 0.9, wd 5e-4); the throughput is student images per second,
the median over repeats of a block of steps after a warm-up. Evaluation passes are timed in rounds too. Variants:

- ``conventional`` (§8 C0): ``benchmarks/conventional.py``, PIL DataLoader, eager fp32, two ``.item()`` a step.
- ``kdnb`` (G0): ``kdnb.train``'s own set-up (``build_method``) and step (``train_step``: DeviceData batches,
  the method's step, metrics kept on the device), fp32. ``_cl``: channels_last; ``_bf16``: bf16 autocast
  (a hashed numerics switch, §7.6). ``kdnb_cl`` is what the paper profile trains: fp32, channels_last, TF32 off.
- ``..._compile`` (G2): ``RunConfig.compile`` as train.py does it (student and teacher compiled in place, default
  mode). ``..._compile_ro`` (G3): ``compile: reduce-overhead``, train.py's CUDA-graph capture (one graph per
  input shape; the optimizer step stays eager). Compile time is reported separately, and two real epochs are
  timed after the warm-up (``epochs_s``): every batch, the last smaller one included, then evaluation in eval
  mode, each of which is compiled (and captured) anew once.
- ``..._cache`` (§7.8): train.py's teacher-logit cache: the teacher's logits on all 162 views of every training
  image made once per pair at the first such variant's set-up (in its ``setup_s``), then looked up per batch
  instead of a teacher forward.

TF32 is process-global: each variant's set-up, warm-up, timed blocks and eval passes run under its own flags
(``tf32_flags``), restored after, so no variant is timed under another's.
- ``fused<N>`` (G4): ``benchmarks/fused.py``, N seeds per step under vmap, bf16 on CUDA; images summed over members.

Run ``kdnb bench [--json]``, or ``python -m benchmarks.bench --help`` (``python -m kdnb.bench``) for the options
the device script uses. The report says whether the CPU computes bf16 natively (without, bf16 is emulated).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
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

from benchmarks import conventional, fused
from kdnb.config import RunConfig
from kdnb.data import DataNotFound, DeviceData, Split, data_root, imbalance_counts, load_arrays
from kdnb.methods import autocast
from kdnb.models import build, canonical_name, family
from kdnb.store import atomic_write_bytes, cpu_name, native_bf16
from kdnb.train import Metrics, build_method, evaluate, layout, resolve_device, train_step, view_logits

DEFAULT_PAIRS = ("resnet8:resnet26", "wrn16_2:wrn40_2")
CPU_VARIANTS = ("conventional", "kdnb", "kdnb_cl", "kdnb_bf16_cl")
CUDA_VARIANTS = ("conventional", "kdnb", "kdnb_cl", "kdnb_cl_cache", "kdnb_cl_compile_ro", "kdnb_cl_cache_compile_ro",
                 "kdnb_bf16_cl", "kdnb_bf16_cl_compile_ro", "kdnb_bf16_cl_compile", "fused1", "fused5", "fused10")
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

# a variant: (one training step, student images per step, one eval pass returning eval img/s, one real epoch
# with its evaluation or None)
Setup = tuple[Callable[[], None], int, Callable[[], float], Callable[[], None] | None]


def tf32_flags(variant: str) -> tuple[bool, bool]:
    """(cuDNN convolutions, matmuls) in TF32 for a variant: the conventional loop as torch leaves them (on, off);
    kdnb as ``train.build_method`` sets them, on exactly where the precision is not fp32 (bf16, fused)."""
    if variant == "conventional":
        return True, False
    low = "_bf16" in variant or variant.startswith("fused")
    return low, low


@contextlib.contextmanager
def tf32(variant: str) -> Iterator[None]:
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32_flags(variant)
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _kd_flops(student: str, teacher: str | None = None) -> float | None:
    teacher = teacher or TEACHER[family(student)]
    return FWDBWD[student] + FWD[teacher] if student in FWDBWD and teacher in FWD else None


def paper_grid() -> list[tuple[str, str, int]]:
    """(student, method, training images) of the 1,415 runs of perf-notes §2 (the paper's grid)."""
    methods = list(METHOD_COST)  # 12 variants
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
        ref, ips, eps = rates[family(student)]
        cost = METHOD_COST[method] or FWDBWD[student] / _kd_flops(student)
        train = n * cost * _kd_flops(student) / _kd_flops(ref) / ips
        total += EPOCHS * (train + TEST_IMAGES * FWD[student] / FWD[ref] / eps)
    return total


def run_seconds(train_ips: float, eval_ips: float) -> float:
    """One 200-epoch run: 50k training images and the 10k test set per epoch."""
    return EPOCHS * (TRAIN_IMAGES / train_ips + TEST_IMAGES / eval_ips)


# ---------------------------------------------------------------------------------------------------------------
# Set-up


def _arrays(train_images: int | None, data: str = "auto") -> tuple[dict[str, np.ndarray], str]:
    """CIFAR-10 from the data root (the small file is enough), else (or with ``data="random"``) random images;
    the training set tiled to ``train_images``."""
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
    """Everything the variants of one pair share: data, initial weights, the teacher's weights."""

    def __init__(self, spec: str, device: torch.device, arrays: dict[str, np.ndarray], batch_size: int = 128,
                 eval_images: int | None = None):
        student, _, teacher = spec.replace("<-", ":").partition(":")
        self.student = canonical_name(student)
        self.teacher = canonical_name(teacher) if teacher else TEACHER[family(self.student)]
        self.name = f"{self.student}<-{self.teacher}"
        self.device, self.arrays, self.batch_size = device, arrays, batch_size
        torch.manual_seed(0)
        self.init = build(self.student).state_dict()
        torch.manual_seed(1)  # random weights: speed does not depend on them
        self.teacher_model = build(self.teacher).to(device).eval().requires_grad_(False)
        self.train = DeviceData(Split(arrays["x_train"], arrays["y_train"]), device)
        n = eval_images or len(arrays["y_test"])
        self.test = DeviceData(Split(arrays["x_test"][:n], arrays["y_test"][:n]), device, augment=False)
        self.tables: dict[str, torch.Tensor] = {}  # teacher-logit caches by precision, shared by the variants

    def new_student(self, seed: int | None = None) -> torch.nn.Module:
        if seed is not None:  # another member of a fused group
            torch.manual_seed(seed)
        m = build(self.student)
        if seed is None:
            m.load_state_dict(self.init)
        return m.to(self.device)

    def timed(self, evaluate_once: Callable[[], Any]) -> Callable[[], float]:
        """An eval pass returning test img/s."""
        def eval_pass() -> float:
            t0 = time.perf_counter()
            evaluate_once()
            _sync(self.device)
            return len(self.test) / (time.perf_counter() - t0)
        return eval_pass


def _compile(fn: Callable, mode: str | None) -> Callable:
    return torch.compile(fn, mode=None if mode == "default" else mode)


def _setup_conventional(p: Pair, workers: int) -> Setup:
    student = p.new_student()
    opt = conventional.sgd(student)
    it = conventional.endless(conventional.make_loader(p.arrays["x_train"], p.arrays["y_train"], p.batch_size,
                                                       workers))

    def step() -> None:
        with torch.profiler.record_function("data"):
            x, y = next(it)
        conventional.hinton_step(student, p.teacher_model, opt, x, y, p.device)

    n = len(p.test)  # RepDistiller: test batch = batch/2, workers/2
    loader = conventional.make_loader(p.arrays["x_test"][:n], p.arrays["y_test"][:n], p.batch_size // 2,
                                      workers // 2, False)
    return step, p.batch_size, p.timed(lambda: conventional.evaluate(student, loader, p.device)), None


def _setup_kdnb(p: Pair, precision: str, channels_last: bool, compile_mode: str | None, cache: bool = False) -> Setup:
    """``kdnb.train``'s set-up and step on a Hinton run, its student given the pair's initial weights."""
    cfg = RunConfig.from_dict({"method": "hinton", "student": p.student, "teacher": p.teacher,
                               "batch_size": p.batch_size, "precision": precision, "channels_last": channels_last,
                               "compile": {"default": True}.get(compile_mode, compile_mode or False),
                               "teacher_cache": cache})
    # a teacher of its own: the set-up converts (and compiles) it in place
    method = build_method(cfg, copy.deepcopy(p.teacher_model), p.device)
    method.models["student"].load_state_dict(p.init)
    if cache and precision not in p.tables:  # made once per pair and precision, as the store keeps it for a study
        p.tables[precision] = view_logits(method, p.train, cfg.eval_batch(p.device.type)).flatten(0, 1)
    table = p.tables.get(precision) if cache else None
    stage = method.stages()[0]
    opts = method.optimizers(stage)
    eval_model = method.models["student"]
    if compile_mode:  # the projection's eval pass runs eager (2-3 % of a run): no eval-mode compile in the budget
        eval_model = p.new_student().to(memory_format=layout(cfg))
    method.train()
    metrics = Metrics(p.device)
    gen = torch.Generator(p.device).manual_seed(cfg.seed_for("data"))
    it = _endless(lambda: p.train.batches(stage.batch_size, gen, views=cache), p.batch_size)

    def step() -> None:
        with torch.profiler.record_function("data"):
            x, y, *views = next(it)
        train_step(method, stage, 0, opts, x, y, metrics, table[views[0]] if views else None)

    def evaluate_once() -> None:
        evaluate({"student": eval_model}, p.test, cfg.eval_batch(p.device.type), method.autocast, layout(cfg))

    def epoch() -> None:  # as train.py runs one: every batch, the last smaller one too, then the trained model in eval
        for x, y, *views in p.train.batches(stage.batch_size, gen, views=cache):
            train_step(method, stage, 0, opts, x, y, metrics, table[views[0]] if views else None)
        evaluate(method.eval_models(), p.test, cfg.eval_batch(p.device.type), method.autocast, layout(cfg))

    return step, p.batch_size, p.timed(evaluate_once), epoch if compile_mode else None


def _setup_fused(p: Pair, n: int, precision: str, compile_mode: str | None) -> Setup:
    dtype = torch.bfloat16 if precision == "bf16" else None  # students by hand, the teacher under autocast
    students = fused.FusedStudents([p.new_student()] + [p.new_student(seed) for seed in range(1, n)], dtype)
    opt = fused.sgd(students)
    gens = [torch.Generator(p.device).manual_seed(RunConfig(seed=i).seed_for("data")) for i in range(n)]
    it = _endless(lambda: fused.member_batches(p.train, gens, p.batch_size), p.batch_size)
    loss_fn = _compile(fused.fused_loss, compile_mode) if compile_mode else fused.fused_loss
    if compile_mode:
        opt.step = _compile(opt.step, None)
    correct = torch.zeros(n, dtype=torch.long, device=p.device)
    ctx = autocast(precision, p.device.type)

    def step() -> None:
        nonlocal correct
        with torch.profiler.record_function("data"):
            xs, ys = next(it)
        correct += fused.fused_step(students, opt, p.teacher_model, xs, ys, "hinton", ctx, loss_fn)[1]

    member = students.member(0, p.new_student())  # members are evaluated one after another
    return step, n * p.batch_size, p.timed(lambda: evaluate({"student": member}, p.test, 1000, ctx)), None


def setup(p: Pair, variant: str, workers: int) -> Setup:
    """(step closure, student images per step, eval pass returning eval img/s) of a variant."""
    if variant == "conventional":
        return _setup_conventional(p, workers)
    mode = "reduce-overhead" if variant.endswith("_compile_ro") else "default" if variant.endswith("_compile") \
        else None
    if variant.startswith("fused"):
        n = int(variant[5:].split("_")[0])
        return _setup_fused(p, n, "bf16" if p.device.type == "cuda" else "fp32", mode)
    if variant.startswith("kdnb"):
        return _setup_kdnb(p, "bf16" if "_bf16" in variant else "fp32", "_cl" in variant, mode, "_cache" in variant)
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
    """A variant set up and warmed up, ready for timed blocks and eval passes."""

    def __init__(self, p: Pair, variant: str, warmup: int, workers: int):
        self.p, self.variant, self.rates, self.util, self.eval_rates = p, variant, [], [], []
        mark = _mem_mark(p.device)
        with tf32(variant):
            t0 = time.perf_counter()
            self.step, self.images, self.eval_pass, epoch = setup(p, variant, workers)
            self.setup_s = time.perf_counter() - t0
        with tf32(variant):  # again: a set-up may have set the flags itself
            t0 = time.perf_counter()
            self.step()
            _sync(p.device)
            self.first_s = time.perf_counter() - t0
            for _ in range(warmup - 1):
                self.step()
            _sync(p.device)
            self.warm_s, self.warmup = time.perf_counter() - t0, warmup
            self.epochs_s = [self._timed(epoch) for _ in range(2)] if epoch else None
        self.mem_mb = _mem_growth(p.device, mark)

    def _timed(self, fn: Callable[[], Any]) -> float:
        t0 = time.perf_counter()
        fn()
        _sync(self.p.device)
        return time.perf_counter() - t0

    def evaluate(self) -> float:
        with tf32(self.variant):
            self.eval_rates.append(self.eval_pass())
        return self.eval_rates[-1]

    def block(self, steps: int) -> float:
        with tf32(self.variant):
            return self._block(steps)

    def _block(self, steps: int) -> float:
        _sync(self.p.device)
        w, c = time.perf_counter(), time.process_time()
        for _ in range(steps):
            self.step()
        _sync(self.p.device)
        w, c = time.perf_counter() - w, time.process_time() - c
        self.rates.append(steps * self.images / w)
        self.util.append(c / w)
        return self.rates[-1]

    def result(self) -> dict[str, Any]:
        ips, eval_ips = statistics.median(self.rates), statistics.median(self.eval_rates)
        out = {"images_per_s": ips, "step_ms": 1e3 * self.images / ips, "repeats_images_per_s": self.rates,
               "max_images_per_s": max(self.rates), "process_cpu_per_wall": statistics.median(self.util),
               "images_per_step": self.images, "setup_s": self.setup_s, "first_step_s": self.first_s,
               "peak_mem_mb": self.mem_mb, "eval_images_per_s": eval_ips, "repeats_eval_images_per_s": self.eval_rates,
               "run_s": run_seconds(ips, eval_ips)}
        if "compile" in self.variant:  # warm-up time beyond what its steps cost at steady state
            out["compile_s"] = max(0.0, self.warm_s - self.warmup * self.images / ips)
        if self.epochs_s:  # the first compiles the last batch's shape and eval mode; the second is steady
            out["epochs_s"] = self.epochs_s
        return out


def _error(err: Exception) -> dict[str, str]:
    msg = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return {"error": f"{type(err).__name__}: {msg}"[:300]}


def _rounds(live: dict[str, Live], out: dict[str, dict], rounds: int, measure: Callable[[Live], float],
            label: str, log: Callable[[str], None] | None, after: Callable[[], None]) -> None:
    """``rounds`` rounds in which each live variant is measured once, in turn: a change of machine load hits
    all variants alike, and per-round ratios are paired measurements."""
    for r in range(rounds):
        for v in list(live):
            try:
                rate = measure(live[v])
                if log:
                    log(f"{live[v].p.name:20s} {v:26s} {label} {r + 1}: {rate:9.0f} img/s")
            except Exception as err:
                out[v] = _error(err)
                del live[v]
        after()


def _paired(rates: list[float], ref: list[float]) -> float:
    return statistics.median(a / b for a, b in zip(rates, ref, strict=True))


def measure_pair(p: Pair, variants: list[str], steps: int, repeats: int, warmup: int, workers: int,
                 eval_repeats: int = 1, barrier: Callable[[], None] | None = None,
                 log: Callable[[str], None] | None = None,
                 progress: Callable[[dict[str, dict[str, Any]]], None] | None = None) -> dict[str, dict[str, Any]]:
    """Every variant set up and warmed up; then ``repeats`` rounds of a block of ``steps`` steps each and
    ``eval_repeats`` rounds of one eval pass each. ``progress`` gets the partial results after every set-up and
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
    _rounds(live, out, repeats, lambda lv: lv.block(steps), "round", log, partial)
    _rounds(live, out, eval_repeats, Live.evaluate, "eval", log, partial)
    out.update({v: lv.result() for v, lv in live.items()})
    ref = live.get("conventional")
    for v, lv in live.items():
        if ref is not None:
            out[v]["speedup_paired"] = _paired(lv.rates, ref.rates)
            out[v]["eval_speedup_paired"] = _paired(lv.eval_rates, ref.eval_rates)
    return {v: out[v] for v in variants}


def _summary(pair: dict[str, Any]) -> None:
    """Headline numbers of a pair: the fastest fp32 kdnb variant (same numerics as the reference), the fastest
    of any kind (bf16, compiled, fused), each against the conventional loop; the kdnb variant's eval ratio."""
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
            if prefix == "kdnb":
                pair["eval_speedup"] = group[k].get("eval_speedup_paired",
                                                    group[k]["eval_images_per_s"] / ref["eval_images_per_s"])
    if ref:
        pair["reference_variant"], pair["reference_images_per_s"] = "conventional", ref["images_per_s"]


def _grid(result: dict[str, Any]) -> None:
    """Paper-grid hours for the reference, the fp32 headline and the best variant (needs one pair per family)."""
    assumption = " ".join(grid_seconds.__doc__.split("Assumption: ")[1].split())
    grid: dict[str, Any] = {"runs": len(paper_grid()), "assumption": assumption}
    for key, vkey in (("reference", "reference_variant"), ("kdnb", "kdnb_variant"), ("best", "best_variant")):
        rates = {}
        for pr in result["pairs"].values():
            if k := pr.get(vkey):
                r = pr["variants"][k]
                rates[family(pr["student"])] = (pr["student"], r["images_per_s"], r["eval_images_per_s"])
        s = grid_seconds(rates)
        grid[f"{key}_hours"] = None if s is None else s / 3600
    result["paper_grid"] = grid


def environment(device: torch.device) -> dict[str, Any]:
    cuda = device.type == "cuda"
    return {"device": str(device), "device_name": torch.cuda.get_device_name(device) if cuda else
            f"CPU: {os.cpu_count()}-core {cpu_name()}", "native_bf16": native_bf16(),  # the CPU's
            "torch": torch.__version__, "cuda": torch.version.cuda, "threads": torch.get_num_threads(),
            "cpus": os.cpu_count(), "python": sys.version.split()[0],
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "load_before": os.getloadavg()}


def run(device: str = "auto", steps: int | None = None, pairs: list[str] | None = None,
        variants: list[str] | None = None, repeats: int | None = None, warmup: int | None = None,
        workers: int | None = None, train_images: int | None = None, out: str | None = None,
        log: Callable[[str], None] | None = None, barrier: Callable[[], None] | None = None, data: str = "auto",
        eval_repeats: int | None = None) -> dict[str, Any]:
    """Measure every variant on every pair; the result as one dict (written to ``out`` after each variant)."""
    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True  # RepDistiller sets it too; both loops get it
    repeats = repeats or (3 if cuda else 5)  # CPU: more, shorter rounds; other tenants' bursts hit single blocks
    warmup = warmup or (20 if cuda else 1)
    workers = (min(8, os.cpu_count() or 1) if cuda else 0) if workers is None else workers
    arrays, data_name = _arrays(train_images if train_images is not None else (TRAIN_IMAGES if cuda else None), data)
    result = {**environment(dev), "steps": steps or ("100" if cuda else "3 (ResNet pair), 1 (WRN pair)"),
              "repeats": repeats, "eval_repeats": eval_repeats or 3, "warmup": warmup, "batch_size": 128,
              "workers": workers, "data": data_name, "train_images": len(arrays["y_train"]), "pairs": {}}
    for spec in pairs or DEFAULT_PAIRS:
        p = Pair(spec, dev, arrays, eval_images=None if cuda else 1000)
        kd = _kd_flops(p.student, p.teacher)
        pr = result["pairs"][p.name] = {"student": p.student, "teacher": p.teacher, "kd_mflop_per_image": kd,
                                        "variants": {}}
        # CPU default: blocks of well under a second, so that the whole bench stays near a minute on 2 cores
        pr["steps"] = steps or (100 if cuda else max(1, round(3 * _kd_flops("resnet8") / (kd or 1000.0))))

        def progress(partial: dict[str, dict[str, Any]], pr: dict[str, Any] = pr) -> None:
            pr["variants"] = partial
            if out:
                _write(out, result)

        pr["variants"] = measure_pair(p, list(variants or (CUDA_VARIANTS if cuda else CPU_VARIANTS)), pr["steps"],
                                      repeats, warmup, workers, result["eval_repeats"], barrier, log, progress)
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
    atomic_write_bytes(Path(path), json.dumps(result, indent=1, default=float).encode())


def _fmt(x: float | None, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def _variant_line(v: str, r: dict[str, Any], ref: float | None) -> str:
    if "error" in r:
        return f"  {v:26s} failed: {r['error']}"
    if "images_per_s" not in r:
        return f"  {v:26s} incomplete: {len(r.get('repeats_images_per_s', []))} rounds"
    sp = r.get("speedup_paired", r["images_per_s"] / ref if ref else None)
    return (f"  {v:26s} {r['images_per_s']:9.0f} {_fmt(sp, '7.2f')}x {r['eval_images_per_s']:9.0f} "
            f"{_fmt(r.get('eval_speedup_paired'), '7.2f')}x {_fmt(r.get('compile_s'), '9.1f')} {r['peak_mem_mb']:8.0f} "
            f"{r['run_s'] / 60:8.1f}")


def table(result: dict[str, Any]) -> str:
    """The human-readable report."""
    bf16 = "yes" if result.get("native_bf16") else "no (bf16 runs emulated there, several times slower than fp32)"
    lines = [f"kdnb bench on {result['device_name']} ({result['device']}), torch {result['torch']}, "
             f"{result['threads']} threads, {result['date']}, load {result['load_before'][0]:.2f}",
             f"CPU native bf16 (AMX or AVX-512 BF16): {bf16}",
             f"{result['steps']} steps x {result['repeats']} rounds after {result['warmup']} warm-up, "
             f"{result.get('eval_repeats', 1)} eval rounds, batch 128, data {result['data']}, "
             f"conventional workers {result['workers']}"]
    mem = "peak MB" if result["device"].startswith("cuda") else "RSS +MB"
    for name, pr in result["pairs"].items():
        lines += ["", f"{name} ({_fmt(pr['kd_mflop_per_image'], '.0f')} MFLOP/img)",
                  f"  {'variant':26s} {'img/s':>9s} {'speedup':>8s} {'eval/s':>9s} {'eval x':>8s} {'compile s':>9s} "
                  f"{mem:>8s} {'run min':>8s}"]
        lines += [_variant_line(v, r, pr.get("reference_images_per_s")) for v, r in pr["variants"].items()]
        if "speedup" in pr:
            lines.append(f"  fp32 kdnb ({pr['kdnb_variant']}): {pr['speedup']:.2f}x, evaluation "
                         f"{_fmt(pr.get('eval_speedup'), '.2f')}x; "
                         f"best ({pr['best_variant']}): {pr['best_speedup']:.2f}x")
    g = result.get("paper_grid", {})
    if g.get("reference_hours") is not None:
        lines += ["", f"paper grid ({g['runs']} runs): conventional {g['reference_hours']:.0f} h, "
                      f"kdnb fp32 {g['kdnb_hours']:.0f} h, best {g['best_hours']:.0f} h",
                  f"  assumption: {' '.join(g['assumption'].split())}"]
    lines.append("speedup, eval x: paired ratios to the conventional loop; run min: one 200-epoch run (50k images + "
                 "10k test per epoch); fused: amortised per member run")
    return "\n".join(lines)


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


def parser() -> argparse.ArgumentParser:
    """The options of ``python -m kdnb.bench`` (``kernel_profile.cli`` adds ``--profile VARIANT``)."""
    ap = argparse.ArgumentParser(prog="python -m kdnb.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int)
    ap.add_argument("--pairs", nargs="+", help="student:teacher, e.g. resnet8:resnet26 (teacher optional)")
    ap.add_argument("--variants", nargs="+", help=f"CPU default {' '.join(CPU_VARIANTS)}; "
                                                   f"CUDA default {' '.join(CUDA_VARIANTS)}")
    ap.add_argument("--repeats", type=int, help="rounds (default: CUDA 3, CPU 5)")
    ap.add_argument("--eval-repeats", type=int, help="eval rounds (default 3)")
    ap.add_argument("--warmup", type=int)
    ap.add_argument("--workers", type=int, help="DataLoader workers of the conventional loop")
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--train-images", type=int)
    ap.add_argument("--out", help="write the JSON here after every variant (partial results survive)")
    ap.add_argument("--barrier", help="folder for a start barrier shared by --procs concurrent processes")
    ap.add_argument("--procs", type=int, default=1)
    return ap


def cli(argv: list[str] | None = None) -> int:
    a = parser().parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    barrier = _file_barrier(a.barrier, a.procs) if a.barrier else None
    return main(a.json, a.device, a.steps, a.pairs, variants=a.variants, repeats=a.repeats, warmup=a.warmup,
                workers=a.workers, train_images=a.train_images, out=a.out, barrier=barrier,
                eval_repeats=a.eval_repeats)


if __name__ == "__main__":
    sys.exit(cli())
