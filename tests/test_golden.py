"""Frozen numerics: every method's loss on a seeded batch and short seeded runs, against tests/golden.json.

Everything runs in float64, where the CPU kind (AVX2, AVX-512, AMX) changes results only in the
last bits, far inside the tolerances; float32 kernels differ between CPU kinds by far more. A
refactor must leave these values unchanged. A change that alters them on purpose bumps
``kdnb.NUMERICS_REVISION`` (records made before it then show as stale) and rewrites the file:

    KDNB_WRITE_GOLDEN=1 pytest tests/test_golden.py
"""

import json
import os
from pathlib import Path

import pytest
import torch

from kdnb import NUMERICS_REVISION
from kdnb.config import RunConfig
from kdnb.methods import METHODS, objectives
from kdnb.models import build
from kdnb.store import Store, safe_torch_load
from kdnb.train import train_run

GOLDEN = Path(__file__).with_name("golden.json")
WRITE = os.environ.get("KDNB_WRITE_GOLDEN") == "1"
SYNTH = {"dataset": "synthetic", "synthetic_train": 4, "synthetic_test": 3}
LOSS_RTOL, RUN_RTOL = 1e-9, 1e-7


@pytest.fixture(scope="module")
def float64():
    before, threads = torch.get_default_dtype(), torch.get_num_threads()
    torch.set_default_dtype(torch.float64)
    torch.set_num_threads(1)
    yield
    torch.set_default_dtype(before)
    torch.set_num_threads(threads)


def _loss_values(method: str) -> dict[str, float]:
    """Loss of every stage and parameter group at the first and last epoch, on one seeded batch."""
    cfg = RunConfig.from_dict({"method": method, "student": "resnet8", "teacher": "resnet14", "epochs": 10,
                               "batch_size": 16, "data": SYNTH})
    torch.manual_seed(1)
    teacher = build("resnet14").eval().requires_grad_(False)
    torch.manual_seed(0)
    m = METHODS[method](cfg, teacher if METHODS[method].uses_teacher else None)
    m.generator = torch.Generator().manual_seed(0)
    m.train()
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(16, 3, 32, 32, generator=g), torch.randint(0, 10, (16,), generator=g)
    out = {}
    for si, stage in enumerate(m.stages()):
        for epoch in (0, stage.epochs - 1):
            terms, _ = m.loss(x, y, stage, epoch)
            for gi, loss in enumerate(objectives(terms)):  # the loss of each optimiser step
                out[f"stage{si}/epoch{epoch}/group{gi}"] = loss.item()
    return out


def _fingerprint(state: dict[str, torch.Tensor]) -> list[float]:
    """Sum and sum of squares over every floating tensor of a state dict, in name order."""
    ts = [state[k].double() for k in sorted(state) if state[k].is_floating_point()]
    return [sum(t.sum().item() for t in ts), sum((t * t).sum().item() for t in ts)]


def _run_values(tmp_path: Path) -> dict[str, dict]:
    """Two-epoch runs: a teacher, its baseline student and a Hinton student; accuracy and weights."""
    store = Store(tmp_path)
    base = {"student": "resnet8", "epochs": 2, "batch_size": 8, "data": SYNTH, "channels_last": False}
    teacher = RunConfig.from_dict({**base, "student": "resnet14"})
    cfgs = {"teacher": teacher, "baseline": RunConfig.from_dict(base),
            "hinton": RunConfig.from_dict({**base, "method": "hinton", "teacher": "resnet14",
                                           "teacher_run": teacher.run_id})}
    out = {}
    for name, cfg in cfgs.items():
        rec = train_run(cfg, store, "cpu", progress=False)
        out[name] = {"run_id": cfg.run_id, "final_acc": rec["final_acc"],
                     "train_loss": [h["train_loss"] for h in rec["history"]],
                     "weights": _fingerprint(safe_torch_load(store.model_path(cfg.run_id)))}
    return out


def _method_run_values(tmp_path: Path) -> dict[str, dict]:
    """Four-epoch runs of every method on 40 images (FitNet/FSP: two of them stage 1; ONE: six epochs)."""
    store = Store(tmp_path)
    base = {"student": "resnet8", "epochs": 4, "batch_size": 8, "data": SYNTH, "channels_last": False}
    teacher = RunConfig.from_dict({**base, "student": "resnet14"})
    train_run(teacher, store, "cpu", progress=False)
    out = {}
    for name, cls in METHODS.items():
        extra = {"teacher": "resnet14", "teacher_run": teacher.run_id} if cls.uses_teacher else {}
        cfg = RunConfig.from_dict({**base, "method": name, **extra})
        rec = train_run(cfg, store, "cpu", progress=False)
        out[name] = {"run_id": cfg.run_id, "final_acc": rec["final_acc"],
                     "train_loss": [h["train_loss"] for h in rec["history"] if "train_loss" in h],
                     "weights": _fingerprint(safe_torch_load(store.model_path(cfg.run_id)))}
    return out


def _golden() -> dict:
    if not GOLDEN.exists():
        pytest.fail(f"{GOLDEN.name} is missing: KDNB_WRITE_GOLDEN=1 pytest {__file__}")
    gold = json.loads(GOLDEN.read_text())
    assert gold["numerics_revision"] == NUMERICS_REVISION, (
        f"{GOLDEN.name} is for numerics revision {gold['numerics_revision']}, the code is at {NUMERICS_REVISION}: "
        f"rewrite it with KDNB_WRITE_GOLDEN=1")
    return gold


def _write(key: str, value) -> None:
    gold = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    gold.update({"numerics_revision": NUMERICS_REVISION, key: value})
    GOLDEN.write_text(json.dumps(gold, indent=1, sort_keys=True) + "\n")


def _close(actual, expected, rtol: float, where: str) -> None:
    if isinstance(expected, dict):
        assert actual.keys() == expected.keys(), where
        for k in expected:
            _close(actual[k], expected[k], rtol, f"{where}/{k}")
    elif isinstance(expected, list):
        assert len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            _close(a, e, rtol, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert actual == pytest.approx(expected, rel=rtol, abs=1e-12), where
    else:
        assert actual == expected, where


def test_every_method_computes_its_frozen_losses(float64):
    values = {name: _loss_values(name) for name in METHODS}
    if WRITE:
        _write("losses", values)
    _close(values, _golden()["losses"], LOSS_RTOL, "losses")


def test_short_runs_reach_their_frozen_accuracy_and_weights(float64, tmp_path):
    values = _run_values(tmp_path)
    if WRITE:
        _write("runs", values)
    _close(values, _golden()["runs"], RUN_RTOL, "runs")


def test_every_method_trains_to_its_frozen_weights(float64, tmp_path):
    values = _method_run_values(tmp_path)
    if WRITE:
        _write("method_runs", values)
    _close(values, _golden()["method_runs"], RUN_RTOL, "method_runs")
