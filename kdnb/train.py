"""The training loop: stages, SGD schedules, evaluation, checkpoints and resume, run records.

The loop is method-agnostic: a method (``kdnb.methods``) supplies its models, stages, optimisers and
step. A run goes through short phases: set-up (data, teacher, :func:`build_method`), resume (from the
checkpoint), then per stage either its reuse or its epochs, and finish (the deployed weights and the
record). Metrics stay on the device during an epoch and are read once at its end; the training state
is checkpointed atomically after every epoch and a run resumes from it, on this machine or another:
each resumed stretch is recorded as a segment (code, machine, epochs).

Fault injection, for testing the failure path: with ``KDNB_FAULT_NAN="<method>[@<epoch>]"`` in the
environment, runs of that method report a NaN loss from that epoch on (1-based; default 1), exactly
as a diverged run does. Nothing else reads it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from kdnb import NUMERICS_REVISION, ConfigError
from kdnb import store as store_mod
from kdnb.config import RunConfig
from kdnb.data import VIEWS, DeviceData, make_splits
from kdnb.methods import METHODS, Method, Stage, Terms, objectives
from kdnb.models import build
from kdnb.store import CorruptRecord, Store, atomic_torch_save, config_hash, safe_torch_load

log = logging.getLogger("kdnb")
FAULT_ENV = "KDNB_FAULT_NAN"


def _fault_epoch(method: str) -> int | None:
    """The 1-based epoch from which ``KDNB_FAULT_NAN`` makes this method's loss NaN, if it names it."""
    name, _, epoch = os.environ.get(FAULT_ENV, "").partition("@")
    return (int(epoch) if epoch else 1) if name == method else None


DEVICES = "auto, cpu, cuda, cuda:<index>"  # the devices the loop is written and tested for


def parse_device(device: str | torch.device | None = "auto") -> torch.device:
    """The device a name means: ``auto`` (CUDA where there is one, else the CPU), ``cpu``, ``cuda`` or
    ``cuda:<index>``; any other name is a ``ConfigError``. Checks the form only: a cluster's submit host may
    lack the GPUs its jobs get."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device {device!r}; valid: {DEVICES}")
    return dev


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``parse_device``, and a ``ConfigError`` for a CUDA device this machine lacks."""
    dev = parse_device(device)
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if dev.type == "cuda" and (dev.index or 0) >= count:
        raise ConfigError(f"device {str(device)!r}: this machine has {count} CUDA device{'' if count == 1 else 's'}; "
                          f"valid here: auto, cpu" + (f", cuda:0 … cuda:{count - 1}" if count else ""))
    return dev


def load_model(store: Store, run_id: str, device: torch.device) -> nn.Module:
    """The deployed network of a finished run, in eval mode with frozen parameters."""
    if (rec := store.done(run_id)) is None:
        raise FileNotFoundError(f"run {run_id} is not finished in store {store.root}")
    if not store.model_path(run_id).exists():
        raise FileNotFoundError(f"run {run_id} is finished but {store.model_path(run_id)} is absent (a records-only "
                                f"store keeps no weights): retrain it in a store with weights")
    cfg = RunConfig.from_dict(rec["config"])
    model = build(cfg.student, cfg.num_classes, shortcut=cfg.shortcut)
    model.load_state_dict(safe_torch_load(store.model_path(run_id)))
    model.to(device).eval().requires_grad_(False)
    return model


def layout(cfg: RunConfig) -> torch.memory_format:
    """The memory format of a run's models and inputs (channels_last: same math, faster convolutions)."""
    return torch.channels_last if cfg.channels_last else torch.contiguous_format


def build_method(cfg: RunConfig, teacher: nn.Module | None, device: torch.device) -> Method:
    """A run's method as training sets it up: models initialised on the CPU from the run's init seed
    (so they do not depend on the device), moved to ``device``, in the run's layout, compiled if asked."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed_for("init"))
        method = METHODS[cfg.method](cfg, teacher).to(device)
    for m in method.modules():
        m.to(memory_format=layout(cfg))
        if cfg.compile:  # in place, so state_dict keys (checkpoints, model.pt) stay those of the eager model
            m.compile(**compile_options(cfg, device))
    if device.type == "cuda":  # autotuned kernels: CUDA runs repeat to float rounding, not bit for bit (README)
        torch.backends.cudnn.benchmark = True
        # fp32 is the paper's precision: no TF32 in convolutions (on by default in cuDNN) or matmuls
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = cfg.precision != "fp32"
    return method


def compile_options(cfg: RunConfig, device: torch.device) -> dict[str, Any]:
    """torch.compile's options. "reduce-overhead" captures each network's forward and backward as CUDA graphs, one
    per input shape (dynamic=False): an epoch's last, smaller batch and the evaluation batches get graphs of their
    own, since dropping or padding them would change what a run computes (protocol § Training)."""
    if cfg.compile == "reduce-overhead" and device.type != "cuda":
        raise ConfigError(f"compile 'reduce-overhead' captures CUDA graphs: it needs a CUDA device, not {device.type}; "
                          "use compile: true")
    return {"mode": "reduce-overhead", "dynamic": False} if cfg.compile == "reduce-overhead" else {}


@torch.no_grad()
def view_logits(method: Method, data: DeviceData, batch_size: int) -> torch.Tensor:
    """The teacher's logits on every view of every image, [images, VIEWS, classes], ``batch_size`` views at a time: the
    teacher is frozen in eval mode, so they equal training's teacher forwards up to float rounding."""
    n, per = len(data), max(1, batch_size // VIEWS)
    for s in range(0, n, per):
        x = data.all_views(torch.arange(s, min(s + per, n), device=data.device))
        with method.autocast:
            z = method.teacher_forward(x.contiguous(memory_format=layout(method.cfg))).unflatten(0, (-1, VIEWS))
        if s == 0:
            table = z.new_empty(n, *z.shape[1:])
        table[s:s + per] = z
    return table


@torch.no_grad()
def correct_by_class(models: dict[str, nn.Module], data: DeviceData, batch_size: int,
                     autocast: contextlib.AbstractContextManager | None = None,
                     memory_format: torch.memory_format = torch.contiguous_format) -> dict[str, torch.Tensor]:
    """Correct test predictions of each model per true class (a tensor indexed by class, on the device)."""
    modes = {k: m.training for k, m in models.items()}
    for m in models.values():
        m.eval()
    correct: dict[str, torch.Tensor] = {}
    for x, y in data.batches(batch_size, shuffle=False):
        x = x.contiguous(memory_format=memory_format)
        with autocast or contextlib.nullcontext():
            for k, m in models.items():
                logits = m(x)
                if k not in correct:
                    correct[k] = torch.zeros(logits.shape[1], dtype=torch.long, device=y.device)
                # scatter_add, not bincount or a boolean mask: neither syncs with the host on CUDA
                correct[k].scatter_add_(0, y, (logits.argmax(1) == y).long())
    for k, m in models.items():
        m.train(modes[k])
    return correct


def evaluate(models: dict[str, nn.Module], data: DeviceData, batch_size: int,
             autocast: contextlib.AbstractContextManager | None = None,
             memory_format: torch.memory_format = torch.contiguous_format) -> dict[str, float]:
    """Test accuracy (%) of each model; one host synchronisation at the end."""
    correct = correct_by_class(models, data, batch_size, autocast, memory_format)
    counts = torch.stack([c.sum() for c in correct.values()]).tolist()
    return {k: 100.0 * c / len(data) for k, c in zip(correct, counts, strict=True)}


def class_accuracy(model: nn.Module, data: DeviceData, batch_size: int,
                   autocast: contextlib.AbstractContextManager | None = None,
                   memory_format: torch.memory_format = torch.contiguous_format) -> list[float]:
    """Test accuracy (%) of one model on each class, in class-index order (NaN for a class with no
    test image): the minority classes are what the imbalance study (paper Table VI) is about."""
    hits = correct_by_class({"m": model}, data, batch_size, autocast, memory_format)["m"]
    total = torch.bincount(data.y, minlength=len(hits))
    return [100.0 * h / t if t else math.nan for h, t in zip(hits.tolist(), total.tolist(), strict=True)]


class Metrics:
    """An epoch's running sums, kept on the device: each named term weighted by its batch size, and the
    correct predictions of the logits a step returns (stage 1 returns none)."""

    def __init__(self, device: torch.device):
        self.terms: dict[str, torch.Tensor] = {}
        self.correct = torch.zeros((), dtype=torch.long, device=device)

    def add(self, terms: Terms, logits: torch.Tensor | None, y: torch.Tensor) -> None:
        for k, v in terms.items():
            acc = self.terms.setdefault(k, torch.zeros((), device=self.correct.device))
            acc += v.detach().to(acc.dtype) * len(y)
        if logits is not None:
            self.correct += (logits.detach().argmax(1) == y).sum()

    def read(self) -> tuple[float, int, dict[str, float]]:
        """(loss sum of the first model updated, correct, term sums): the epoch's one host synchronisation."""
        correct, *values = torch.stack([self.correct.to(torch.get_default_dtype()), *self.terms.values()]).tolist()
        sums = dict(zip(self.terms, values, strict=True))
        return objectives(sums)[0] if sums else 0.0, int(correct), sums


def train_step(method: Method, stage: Stage, epoch: int, optimizers: list[torch.optim.Optimizer], x: torch.Tensor,
               y: torch.Tensor, metrics: Metrics | None = None, t_logits: torch.Tensor | None = None) -> None:
    """One batch as the loop trains it: the input in the run's layout, its cached teacher logits, the step, metrics."""
    x = x.contiguous(memory_format=layout(method.cfg))
    method.cached_logits = None if t_logits is None else (x, t_logits)
    if method.cfg.compile == "reduce-overhead":  # a new step: the graphs' outputs of the last one may be reused
        torch.compiler.cudagraph_mark_step_begin()
    terms, logits = method.step(x, y, stage, epoch, optimizers)
    if metrics is not None:
        metrics.add(terms, logits, y)


# --- one run, in phases ---------------------------------------------------------------------------


def train_run(cfg: RunConfig, store: Store, device: str | torch.device = "auto", progress: bool = True,
              data_root: str | None = None, max_epochs: int | None = None,
              retry_failed: bool = False, retrain_stale: bool = False) -> dict[str, Any]:
    """Train one run (or resume it) and write its record. Returns the record.

    A finished run is returned as stored; a failed one too unless ``retry_failed``. A run whose
    lock another process holds is left to it (status 'locked'). ``max_epochs`` stops after that
    many epochs in this call (status 'partial'); the checkpoint stays and the next call resumes.
    A record made under another ``NUMERICS_REVISION`` is returned as stored unless ``retrain_stale``.
    """
    def finished() -> dict[str, Any] | None:
        rec = store.read_or_none(cfg.run_id)
        stale = rec is not None and rec.get("numerics_revision", 1) != NUMERICS_REVISION
        if rec and ((rec["status"] == "done" and not (stale and retrain_stale))
                    or (rec["status"] == "failed" and not retry_failed)):
            return rec
        return None

    if (rec := finished()) is not None:
        return rec
    dev = resolve_device(device)  # before the lock: a device this machine lacks leaves the store untouched
    with store.lock(cfg.run_id) as held:
        if not held:
            return {"run_id": cfg.run_id, "status": "locked"}
        if (rec := finished()) is not None:  # finished by another process meanwhile
            return rec
        log.info("training run %s: %s %s seed %d", cfg.run_id, cfg.method, cfg.student, cfg.seed)
        run = _setup(cfg, store, dev, data_root, max_epochs)
        _resume(run)
        for si in range(run.stage, len(run.stages)):
            if run.epoch == 0 and _reuse(run, si):
                continue
            if (stopped := _train_stage(run, si, progress)) is not None:
                return stopped
        return _finish(run)


@dataclass
class _Run:
    """A run being trained: what set-up built, and where training stands."""

    cfg: RunConfig
    store: Store
    device: torch.device
    method: Method
    train_data: DeviceData
    test_data: DeviceData
    data_gen: torch.Generator
    stages: list[Stage]
    budget: int | None  # epochs left in this call (None: all)
    fault: int | None  # the epoch from which the fault hook makes the loss NaN
    logits: tuple[str, torch.Tensor] | None  # the teacher-logit cache's key and table [images * VIEWS, classes]
    started: float = field(default_factory=time.perf_counter)
    stage: int = 0  # where training resumes
    epoch: int = 0
    elapsed: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    segments: list[dict[str, Any]] = field(default_factory=list)
    opt_states: list | None = None
    accs: dict[str, float] = field(default_factory=dict)

    def evaluate(self) -> dict[str, float]:
        return evaluate(self.method.eval_models(), self.test_data, self.cfg.eval_batch(self.device.type),
                        self.method.autocast, layout(self.cfg))


def _setup(cfg: RunConfig, store: Store, device: torch.device, data_root: str | None, budget: int | None) -> _Run:
    started = time.perf_counter()
    train_split, test_split = make_splits(cfg.data, data_root)
    teacher = load_model(store, cfg.teacher_run, device) if cfg.teacher_run else None
    if METHODS[cfg.method].uses_teacher and teacher is None:
        raise ValueError(f"method {cfg.method!r} needs teacher_run (a finished baseline run of {cfg.teacher})")
    method = build_method(cfg, teacher, device)
    train, test = DeviceData(train_split, device), DeviceData(test_split, device, augment=False)
    return _Run(cfg, store, device, method, train, test, _data_gen(cfg), method.stages(), budget,
                _fault_epoch(cfg.method), _teacher_logits(cfg, store, method, train), started)


def _teacher_logits(cfg: RunConfig, store: Store, method: Method, data: DeviceData) -> tuple[str, torch.Tensor] | None:
    """The key and table of the teacher-logit cache if the run uses it: on where ``teacher_cache`` says so, or (None)
    on CUDA where it fits in half the free memory (protocol § Training). Made once and kept in the store for every
    student of the teacher on the same data and precision; one process makes it while the others wait."""
    on = data.device.type == "cuda" if cfg.teacher_cache is None else cfg.teacher_cache
    if not (on and method.teacher_logit_cache):
        return None
    free = torch.cuda.mem_get_info(data.device)[0] if data.device.type == "cuda" else \
        os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    shape = (len(data), VIEWS, cfg.num_classes)
    if (need := math.prod(shape) * (2 if cfg.precision == "bf16" else torch.get_default_dtype().itemsize)) > free / 2:
        msg = f"the teacher-logit cache needs {need / 2**20:.0f} MiB, over half the memory free on {data.device} " \
              f"({free / 2**21:.0f} MiB); set teacher_cache: false"
        if cfg.teacher_cache:
            raise ConfigError(msg)
        log.info("training without the teacher-logit cache: %s", msg)
        return None
    key = config_hash({"teacher_run": cfg.teacher_run, "data": cfg.identity()["data"], "precision": cfg.precision})
    path = store.root / "logits" / f"{key}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        table = None
        with contextlib.suppress(CorruptRecord):  # unreadable: made anew
            table = safe_torch_load(path) if path.exists() else None
        if table is None or table.shape != shape:
            table = view_logits(method, data, cfg.eval_batch(data.device.type))
            atomic_torch_save(table, path)
    return key, table.to(data.device).flatten(0, 1)


def _data_gen(cfg: RunConfig) -> torch.Generator:
    """The run's data stream (order, crops, flips; protocol § Seeds): on the CPU on every device, resumable on any."""
    return torch.Generator().manual_seed(cfg.seed_for("data"))


def _state(run: _Run) -> dict[str, Any]:
    """What a stored stage holds, and a checkpoint begins with: the models and both random streams."""
    return {"models": run.method.models.state_dict(), "data_gen": run.data_gen.get_state(),
            "method_gen": run.method.generator.get_state()}


def _restore(run: _Run, saved: dict[str, Any]) -> None:
    run.method.models.load_state_dict(saved["models"])
    run.data_gen.set_state(saved["data_gen"])
    run.method.generator.set_state(saved["method_gen"])


def _checkpoint(run: _Run, stage: int, epoch: int, optimizers: list[torch.optim.Optimizer] | None) -> None:
    atomic_torch_save({**_state(run), "optimizers": [o.state_dict() for o in optimizers] if optimizers else None,
                       "stage": stage, "epoch": epoch, "wall_s": run.elapsed, "history": run.history,
                       "segments": run.segments}, run.store.checkpoint_path(run.cfg.run_id))


def _resume(run: _Run) -> None:
    """Continue from the checkpoint if there is one; open this call's segment."""
    path = run.store.checkpoint_path(run.cfg.run_id)
    if path.exists():
        try:
            ck = safe_torch_load(path)  # on the CPU: the generator states stay CPU tensors; weights move on load
            _restore(run, ck)
            run.stage, run.epoch, run.elapsed = ck["stage"], ck["epoch"], ck["wall_s"]
            run.history, run.opt_states, run.segments = ck["history"], ck["optimizers"], ck.get("segments", [])
            log.info("run %s: resuming at stage %d epoch %d", run.cfg.run_id, run.stage, run.epoch)
        except (CorruptRecord, KeyError, RuntimeError, TypeError) as err:
            log.warning("run %s: checkpoint unusable (%s); starting over", run.cfg.run_id, err)
            run.method = build_method(run.cfg, run.method.teacher, run.device)  # nothing of the checkpoint kept
            run.data_gen, run.stage, run.epoch, run.elapsed = _data_gen(run.cfg), 0, 0, 0.0
            run.history, run.opt_states, run.segments = [], None, []
    run.segments.append(_segment(run.device, run.stage, run.epoch))
    if run.logits:  # how, not what: recorded where used, absent otherwise
        run.segments[-1]["teacher_cache"] = run.logits[0]


def _reuse(run: _Run, si: int) -> bool:
    """Load stage ``si`` from the store if another run finished it (as training it: bit for bit on the CPU)."""
    stage = run.stages[si]
    key = run.method.stage_key(si, stage)
    if not key or si == len(run.stages) - 1 or not run.store.stage_path(key).exists():
        return False
    try:
        _restore(run, safe_torch_load(run.store.stage_path(key)))
    except (CorruptRecord, RuntimeError, KeyError, TypeError) as err:
        log.warning("stored stage %s unusable (%s); training it", key, err)
        return False
    log.info("run %s: stage %r reused from %s", run.cfg.run_id, stage.name, key)
    run.history.append({"stage": stage.name, "reused": key})
    return True


def _train_stage(run: _Run, si: int, progress: bool) -> dict[str, Any] | None:
    """The epochs of stage ``si`` from where the run stands; a record or status if the run stops."""
    stage = run.stages[si]
    optimizers = run.method.optimizers(stage)
    if run.opt_states is not None:
        for opt, st in zip(optimizers, run.opt_states, strict=True):
            opt.load_state_dict(st)
        run.opt_states = None
    bar = _progress(progress, stage, run.epoch, run.cfg)
    try:
        for epoch in range(run.epoch, stage.epochs):
            if run.budget is not None and run.budget <= 0:
                return {"run_id": run.cfg.run_id, "status": "partial"}
            entry = _epoch(run, si, stage, optimizers, epoch, quiet=bar is not None)
            if not math.isfinite(entry["train_loss"]):
                return _fail(run, f"loss became {entry['train_loss']} in stage {stage.name!r} epoch {epoch + 1}")
            _checkpoint(run, si, epoch + 1, optimizers)
            run.budget = None if run.budget is None else run.budget - 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{entry['train_loss']:.3f}", acc=entry["test_acc"])
    finally:
        if bar is not None:
            bar.close()
    run.epoch = 0
    key = run.method.stage_key(si, stage)
    if key and si < len(run.stages) - 1:
        atomic_torch_save(_state(run), run.store.stage_path(key))
    _checkpoint(run, si + 1, 0, None)  # the stage is complete: the checkpoint points at the next one's start
    return None


def _epoch(run: _Run, si: int, stage: Stage, optimizers: list[torch.optim.Optimizer], epoch: int,
           quiet: bool) -> dict[str, Any]:
    """One epoch of training, then (in the final stage) evaluation; its history entry."""
    t0 = time.perf_counter()
    for opt in optimizers:
        for pg in opt.param_groups:
            pg["lr"] = stage.lr_at(epoch)
    run.method.train()
    metrics = Metrics(run.device)
    table = run.logits[1] if run.logits else None
    for x, y, *views in run.train_data.batches(stage.batch_size, run.data_gen, views=table is not None):
        train_step(run.method, stage, epoch, optimizers, x, y, metrics, table[views[0]] if views else None)
    final = si == len(run.stages) - 1  # earlier stages train no classifier: nothing to evaluate
    run.accs = run.evaluate() if final else {}
    loss, correct, terms = metrics.read()
    if run.fault is not None and epoch + 1 >= run.fault:
        loss = math.nan
    run.elapsed += time.perf_counter() - t0
    n = len(run.train_data)
    entry = {"stage": stage.name, "epoch": epoch + 1, "lr": stage.lr_at(epoch), "train_loss": loss / n,
             **{f"loss_{k}": v / n for k, v in terms.items()},
             "train_acc": 100.0 * correct / n if final else None, "test_acc": run.method.report(run.accs) if final
             else None, **{f"acc_{k}": v for k, v in run.accs.items()}, "epoch_s": time.perf_counter() - t0}
    run.history.append(entry)
    log.log(logging.DEBUG if quiet else logging.INFO, "run %s %s epoch %d/%d: loss %.4f, test %s (%.1f s)",
            run.cfg.run_id, stage.name, epoch + 1, stage.epochs, entry["train_loss"],
            f"{entry['test_acc']:.2f}%" if final else "-", entry["epoch_s"])
    seg = run.segments[-1]
    seg.update(to_stage=si, to_epoch=epoch + 1, wall_s=seg["wall_s"] + entry["epoch_s"])
    return entry


def _finish(run: _Run) -> dict[str, Any]:
    """The deployed weights and the record; the checkpoint goes."""
    cfg, store = run.cfg, run.store
    if not run.accs:  # resumed after the last epoch had been checkpointed
        run.accs = run.evaluate()
    final_stage = run.stages[-1].name
    curve = [h["test_acc"] for h in run.history if h.get("stage") == final_stage and h.get("test_acc") is not None]
    deployed = run.method.deployed(run.accs)
    atomic_torch_save({k: v.detach().cpu() for k, v in deployed.state_dict().items()}, store.model_path(cfg.run_id))
    per_class = class_accuracy(deployed, run.test_data, cfg.eval_batch(run.device.type), run.method.autocast,
                               layout(cfg))
    record = _record(run, status="done")
    record.update(final_acc=run.method.report(run.accs), best_acc=max(curve), best_epoch=1 + curve.index(max(curve)),
                  final_accs=run.accs, class_acc=per_class, total_s=time.perf_counter() - run.started)
    store.write(record)
    store.checkpoint_path(cfg.run_id).unlink(missing_ok=True)
    log.info("run %s (%s %s seed %d): final %.2f%%, best %.2f%%, %.0f s", cfg.run_id, cfg.method, cfg.student,
             cfg.seed, record["final_acc"], record["best_acc"], run.elapsed)
    return record


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)


def _segment(device: torch.device, stage: int, epoch: int) -> dict[str, Any]:
    """One stretch of a run in one process: the code and machine that trained it, and its epochs."""
    return {"code_version": store_mod.code_version(), "numerics_revision": NUMERICS_REVISION,
            "device": _device_name(device), "cpu": store_mod.cpu_name(), "threads": torch.get_num_threads(),
            "from_stage": stage, "from_epoch": epoch, "to_stage": stage, "to_epoch": epoch, "wall_s": 0.0,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _record(run: _Run, status: str) -> dict[str, Any]:
    """The run record. ``code_diff`` is the uncommitted change the code ran with (None: clean tree
    or, past the size limit, known only by the hash in ``code_version``)."""
    return {"run_id": run.cfg.run_id, "kind": "run", "status": status, "config": run.cfg.to_dict(),
            "history": run.history, "wall_s": run.elapsed, "device": _device_name(run.device),
            "code_version": store_mod.code_version(), "code_diff": store_mod.source_state()["diff"],
            "numerics_revision": NUMERICS_REVISION, "segments": run.segments,
            "environment": store_mod.environment(run.device), "finished": datetime.now(timezone.utc).isoformat()}


def _fail(run: _Run, reason: str) -> dict[str, Any]:
    record = _record(run, status="failed")
    record.update(error=reason, final_acc=None, best_acc=None)
    run.store.write(record)
    run.store.checkpoint_path(run.cfg.run_id).unlink(missing_ok=True)
    log.error("run %s failed: %s", run.cfg.run_id, reason)
    return record


def _progress(enabled: bool, stage: Stage, start: int, cfg: RunConfig) -> tqdm | None:
    return tqdm(total=stage.epochs, initial=start, unit="ep", leave=False,
                desc=f"{cfg.method}/{cfg.student} s{cfg.seed} {stage.name} [{cfg.run_id[:8]}]") if enabled else None
