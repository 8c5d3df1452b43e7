"""The training loop: stages, SGD schedules, evaluation, checkpoints and resume, run records.

The loop is method-agnostic: a method (``kdnb.methods``) supplies its models, stages, parameter
groups and per-batch loss. Metrics stay on the device during an epoch and are read once at its
end; the training state is checkpointed atomically after every epoch and a run resumes from it,
on this machine or another: each resumed stretch is recorded as a segment (code, machine, epochs).

Fault injection, for testing the failure path: with ``KDNB_FAULT_NAN="<method>[@<epoch>]"`` in the
environment, runs of that method report a NaN loss from that epoch on (1-based; default 1), exactly
as a diverged run does. Nothing else reads it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import time
from datetime import datetime, timezone
from typing import Any

import torch
from torch import nn

from kdnb import NUMERICS_REVISION
from kdnb.config import RunConfig
from kdnb.data import DeviceData, make_splits
from kdnb.methods import METHODS, Stage
from kdnb.models import build
from kdnb.store import (
    CorruptRecord,
    Store,
    atomic_torch_save,
    code_version,
    cpu_name,
    environment,
    safe_torch_load,
    source_state,
)

log = logging.getLogger("kdnb")
FAULT_ENV = "KDNB_FAULT_NAN"


def _fault_epoch(method: str) -> int | None:
    """The 1-based epoch from which ``KDNB_FAULT_NAN`` makes this method's loss NaN, if it names it."""
    spec = os.environ.get(FAULT_ENV, "")
    name, _, epoch = spec.partition("@")
    return (int(epoch) if epoch else 1) if name == method else None


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def derive_seed(seed: int, purpose: str) -> int:
    """Independent 63-bit seeds per purpose (init, data, method) from one run seed."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{purpose}".encode()).digest()[:8], "little") >> 1


def load_model(store: Store, run_id: str, device: torch.device) -> nn.Module:
    """The deployed network of a finished run, in eval mode with frozen parameters."""
    rec = store.done(run_id)
    if rec is None:
        raise FileNotFoundError(f"run {run_id} is not finished in store {store.root}")
    cfg = RunConfig.from_dict(rec["config"])
    model = build(cfg.student, cfg.num_classes, shortcut=cfg.shortcut)
    model.load_state_dict(safe_torch_load(store.model_path(run_id)))
    model.to(device).eval().requires_grad_(False)
    return model


@torch.no_grad()
def evaluate(models: dict[str, nn.Module], data: DeviceData, batch_size: int = 1000,
             autocast: Any = contextlib.nullcontext) -> dict[str, float]:
    """Test accuracy (%) of each model; one host synchronisation at the end."""
    modes = {k: m.training for k, m in models.items()}
    for m in models.values():
        m.eval()
    correct = {k: torch.zeros((), dtype=torch.long, device=data.device) for k in models}
    for x, y in data.batches(batch_size, shuffle=False):
        with autocast():
            for k, m in models.items():
                correct[k] += (m(x).argmax(1) == y).sum()
    for k, m in models.items():
        m.train(modes[k])
    counts = torch.stack(list(correct.values())).tolist()
    return {k: 100.0 * c / len(data) for k, c in zip(models, counts, strict=True)}


def _stage_key(cfg: RunConfig, index: int, stage: Stage) -> str:
    """Identity of a reusable stage: the run's identity without what only later stages read."""
    from kdnb.store import config_hash

    ident = cfg.identity()
    ident.update(stage=index, stage_name=stage.name, stage_spec=[stage.epochs, stage.lr, list(stage.milestones),
                                                                 stage.gamma, stage.weight_decay, stage.batch_size])
    for later in ("epochs", "lr", "milestones", "lr_decay", "method"):
        ident.pop(later)
    return config_hash(ident)


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
    with store.lock(cfg.run_id) as held:
        if not held:
            return {"run_id": cfg.run_id, "status": "locked"}
        if (rec := finished()) is not None:  # finished by another process meanwhile
            return rec
        log.info("training run %s: %s %s seed %d", cfg.run_id, cfg.method, cfg.student, cfg.seed)
        return _train(cfg, store, resolve_device(device), progress, data_root, max_epochs)


def _train(cfg: RunConfig, store: Store, device: torch.device, progress: bool, data_root: str | None,
           max_epochs: int | None) -> dict[str, Any]:
    run_id = cfg.run_id
    t_start = time.perf_counter()
    train_split, test_split = make_splits(cfg.data, data_root)
    train_data, test_data = DeviceData(train_split, device), DeviceData(test_split, device, augment=False)
    teacher = load_model(store, cfg.teacher_run, device) if cfg.teacher_run else None
    if METHODS[cfg.method].uses_teacher and teacher is None:
        raise ValueError(f"method {cfg.method!r} needs teacher_run (a finished baseline run of {cfg.teacher})")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(cfg.seed, "init"))
        method = METHODS[cfg.method](cfg, teacher).to(device)
    if cfg.channels_last:
        method.models.to(memory_format=torch.channels_last)
        if teacher is not None:
            teacher.to(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if cfg.compile:  # in place, so state_dict keys (checkpoints, model.pt) stay those of the eager model
        for m in [*method.models.values(), *([teacher] if teacher is not None else [])]:
            m.compile()
    data_gen = torch.Generator(device).manual_seed(derive_seed(cfg.seed, "data"))
    method.generator = torch.Generator(device).manual_seed(derive_seed(cfg.seed, "method"))
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if cfg.precision == "bf16" \
        else contextlib.nullcontext

    stages = method.stages()
    history: list[dict[str, Any]] = []
    segments: list[dict[str, Any]] = []
    start_stage, start_epoch, elapsed = 0, 0, 0.0
    opt_states = None
    fault = _fault_epoch(cfg.method)
    ckpt_path = store.checkpoint_path(run_id)
    if ckpt_path.exists():
        try:
            ck = safe_torch_load(ckpt_path, map_location=device)
            method.models.load_state_dict(ck["models"])
            data_gen.set_state(ck["data_gen"])
            method.generator.set_state(ck["method_gen"])
            start_stage, start_epoch, elapsed = ck["stage"], ck["epoch"], ck["wall_s"]
            history, opt_states = ck["history"], ck["optimizers"]
            segments = ck.get("segments", [])
            log.info("run %s: resuming at stage %d epoch %d", run_id, start_stage, start_epoch)
        except (CorruptRecord, KeyError, RuntimeError) as err:
            log.warning("run %s: checkpoint unusable (%s); starting over", run_id, err)
            start_stage, start_epoch, elapsed, history, opt_states, segments = 0, 0, 0.0, [], None, []
    segments.append(_segment(device, start_stage, start_epoch))

    epochs_this_call = 0
    accs: dict[str, float] = {}
    for si in range(start_stage, len(stages)):
        stage = stages[si]
        key = _stage_key(cfg, si, stage) if stage.reusable else None
        if key and si < len(stages) - 1 and start_epoch == 0 and store.stage_path(key).exists():
            try:
                saved = safe_torch_load(store.stage_path(key), map_location=device)
                method.models.load_state_dict(saved["models"])
                data_gen.set_state(saved["data_gen"])  # continue as the run that trained it: bit-identical
                method.generator.set_state(saved["method_gen"])
                log.info("run %s: stage %r reused from %s", run_id, stage.name, key)
                history.append({"stage": stage.name, "reused": key})
                continue
            except (CorruptRecord, RuntimeError, KeyError, TypeError) as err:
                log.warning("stored stage %s unusable (%s); training it", key, err)
        groups = method.param_groups(stage)
        opts = [torch.optim.SGD(g, lr=stage.lr, momentum=stage.momentum, weight_decay=stage.weight_decay)
                for g in groups]
        if opt_states is not None:
            for opt, st in zip(opts, opt_states, strict=True):
                opt.load_state_dict(st)
            opt_states = None
        bar = _progress(progress, stage, start_epoch, run_id, cfg)
        for epoch in range(start_epoch, stage.epochs):
            if max_epochs is not None and epochs_this_call >= max_epochs:
                return {"run_id": run_id, "status": "partial"}
            t0 = time.perf_counter()
            for opt in opts:
                for pg in opt.param_groups:
                    pg["lr"] = stage.lr_at(epoch)
            method.train()
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), dtype=torch.long, device=device)
            for x, y in train_data.batches(stage.batch_size, data_gen):
                train_step(method, opts, x, y, stage, epoch, autocast, cfg.channels_last, loss_sum, correct)
            final = si == len(stages) - 1  # earlier stages train no classifier: nothing to evaluate
            accs = evaluate(method.eval_models(), test_data, cfg.eval_batch_size, autocast) if final else {}
            if fault is not None and epoch + 1 >= fault:
                loss_sum.fill_(math.nan)
            train_loss, train_correct = (loss_sum.item(), correct.item())  # the epoch's one sync
            elapsed += time.perf_counter() - t0
            entry = {"stage": stage.name, "epoch": epoch + 1, "lr": stage.lr_at(epoch),
                     "train_loss": train_loss / len(train_data),
                     "train_acc": 100.0 * train_correct / len(train_data) if final else None,
                     "test_acc": method.report(accs) if final else None, **{f"acc_{k}": v for k, v in accs.items()},
                     "epoch_s": time.perf_counter() - t0}
            history.append(entry)
            log.log(logging.DEBUG if bar is not None else logging.INFO,
                    "run %s %s epoch %d/%d: loss %.4f, test %s (%.1f s)", run_id, stage.name, epoch + 1,
                    stage.epochs, entry["train_loss"], f"{entry['test_acc']:.2f}%" if final else "-", entry["epoch_s"])
            segments[-1].update(to_stage=si, to_epoch=epoch + 1, wall_s=segments[-1]["wall_s"] + entry["epoch_s"])
            if not math.isfinite(train_loss):
                return _fail(store, cfg, device, history, segments, elapsed,
                             f"loss became {train_loss} in stage {stage.name!r} epoch {epoch + 1}")
            atomic_torch_save({"models": method.models.state_dict(), "optimizers": [o.state_dict() for o in opts],
                               "data_gen": data_gen.get_state(), "method_gen": method.generator.get_state(),
                               "stage": si, "epoch": epoch + 1, "wall_s": elapsed, "history": history,
                               "segments": segments}, ckpt_path)
            epochs_this_call += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{entry['train_loss']:.3f}", acc=entry["test_acc"])
        if bar is not None:
            bar.close()
        start_epoch = 0
        if key and si < len(stages) - 1:
            atomic_torch_save({"models": method.models.state_dict(), "data_gen": data_gen.get_state(),
                               "method_gen": method.generator.get_state()}, store.stage_path(key))
        # the stage is complete: the checkpoint must now point at the next stage's start
        atomic_torch_save({"models": method.models.state_dict(), "optimizers": None,
                           "data_gen": data_gen.get_state(), "method_gen": method.generator.get_state(),
                           "stage": si + 1, "epoch": 0, "wall_s": elapsed, "history": history,
                           "segments": segments}, ckpt_path)

    if not accs:  # resumed after the last epoch had been checkpointed
        accs = evaluate(method.eval_models(), test_data, cfg.eval_batch_size, autocast)
    final_stage = stages[-1].name
    curve = [h["test_acc"] for h in history if h.get("stage") == final_stage and h.get("test_acc") is not None]
    deployed = method.deployed(accs)
    atomic_torch_save({k: v.detach().cpu() for k, v in deployed.state_dict().items()}, store.model_path(run_id))
    record = _record(cfg, device, history, segments, elapsed, status="done")
    record.update(final_acc=method.report(accs), best_acc=max(curve), best_epoch=1 + curve.index(max(curve)),
                  final_accs=accs, total_s=time.perf_counter() - t_start)
    store.write(record)
    ckpt_path.unlink(missing_ok=True)
    log.info("run %s (%s %s seed %d): final %.2f%%, best %.2f%%, %.0f s", run_id, cfg.method, cfg.student,
             cfg.seed, record["final_acc"], record["best_acc"], elapsed)
    return record


def train_step(method, opts: list[torch.optim.Optimizer], x: torch.Tensor, y: torch.Tensor, stage: Stage, epoch: int,
               autocast: Any, channels_last: bool, loss_sum: torch.Tensor, correct: torch.Tensor) -> None:
    """One batch: each parameter group's loss, backward and step in turn; metrics added on the device."""
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    for gi, opt in enumerate(opts):
        with autocast():
            loss, logits = method.loss(x, y, stage, epoch, gi)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if gi == 0:
            loss_sum += loss.detach().float() * len(y)
            if logits is not None:  # stages without a classifier output (stage 1) give None
                correct += (logits.detach().argmax(1) == y).sum()


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else str(device)


def _segment(device: torch.device, stage: int, epoch: int) -> dict[str, Any]:
    """One stretch of a run in one process: the code and machine that trained it, and its epochs."""
    return {"code_version": code_version(), "numerics_revision": NUMERICS_REVISION, "device": _device_name(device),
            "cpu": cpu_name(), "threads": torch.get_num_threads(), "from_stage": stage, "from_epoch": epoch,
            "to_stage": stage, "to_epoch": epoch, "wall_s": 0.0,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _record(cfg: RunConfig, device: torch.device, history: list, segments: list, elapsed: float,
            status: str) -> dict[str, Any]:
    """The run record. ``code_diff`` is the uncommitted change the code ran with (None: clean tree
    or, past the size limit, known only by the hash in ``code_version``)."""
    return {"run_id": cfg.run_id, "kind": "run", "status": status, "config": cfg.to_dict(),
            "history": history, "wall_s": elapsed, "device": _device_name(device), "code_version": code_version(),
            "code_diff": source_state()["diff"], "numerics_revision": NUMERICS_REVISION, "segments": segments,
            "environment": environment(device), "finished": datetime.now(timezone.utc).isoformat()}


def _fail(store: Store, cfg: RunConfig, device: torch.device, history: list, segments: list, elapsed: float,
          reason: str) -> dict[str, Any]:
    record = _record(cfg, device, history, segments, elapsed, status="failed")
    record.update(error=reason, final_acc=None, best_acc=None)
    store.write(record)
    store.checkpoint_path(cfg.run_id).unlink(missing_ok=True)
    log.error("run %s failed: %s", cfg.run_id, reason)
    return record


def _progress(enabled: bool, stage: Stage, start: int, run_id: str, cfg: RunConfig):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=stage.epochs, initial=start, unit="ep", leave=False,
                desc=f"{cfg.method}/{cfg.student} s{cfg.seed} {stage.name} [{run_id[:8]}]")
