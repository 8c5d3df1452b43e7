"""The device plan (benchmarks/device_plan.py) run whole on the CPU: data parts, order, limits, packed store.

No GPU here: ``--dry`` runs the three calls on the CPU with a tiny CIFAR-shaped data file and short runs, and
the test checks what the device machine's limits demand of them (README § On a GPU or a cluster).
"""

import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from benchmarks import datachunks, device_plan
from kdnb import store as store_mod
from kdnb.data import synthetic_arrays
from kdnb.store import Store
from kdnb.train import train_run

ROOT = Path(__file__).resolve().parent.parent


def _npz(path: Path, n_train: int = 30) -> Path:
    np.savez(path, **synthetic_arrays(10, n_train, 10))
    return path


def test_split_and_join_are_lossless_and_checked(tmp_path):
    src = _npz(tmp_path / "cifar10.npz", 40)
    m = datachunks.split(src, tmp_path / "parts", chunk_bytes=src.stat().st_size // 3 + 1, state="abc1234")
    assert len(m["parts"]) == 3 and sum(p["bytes"] for p in m["parts"]) == src.stat().st_size
    assert m["source_state"] == "abc1234"
    dest = datachunks.join(tmp_path / "parts", tmp_path / "joined")
    assert dest.read_bytes() == src.read_bytes()
    with np.load(dest) as a, np.load(src) as b:
        assert all(np.array_equal(a[k], b[k]) for k in b.files)
    dest.unlink()
    part = tmp_path / "parts" / "cifar10.npz.2"
    part.write_bytes(part.read_bytes()[:-1] + b"x")  # one byte changed
    with pytest.raises(datachunks.ChunkError, match="cifar10.npz.2"):
        datachunks.join(tmp_path / "parts", tmp_path / "joined")
    part.unlink()
    with pytest.raises(datachunks.ChunkError, match="parts cifar10.npz.2 absent"):
        datachunks.join(tmp_path / "parts", tmp_path / "joined")
    assert not any((tmp_path / "joined").iterdir())  # nothing half-written


def test_the_full_training_set_travels_in_parts_that_fit_a_call():
    size = 139_688_637  # cifar10.npz of the shared data (133 MiB)
    tree = sum((ROOT / f).stat().st_size for f in subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
        if (ROOT / f).is_file())
    parts = -(-size // datachunks.CHUNK_BYTES)
    assert parts == 4 and datachunks.CHUNK_BYTES + tree + 2**20 <= datachunks.TREE_LIMIT  # + manifest, margin
    assert len([c for c in device_plan.CALLS if c != device_plan.TRAIN_CALL]) == parts - 1  # the others park one each
    assert ".gpu" in (ROOT / ".gitignore").read_text()
    ignored = subprocess.run(["git", "check-ignore", ".gpu/cifar10.npz.1"], cwd=ROOT, capture_output=True)
    assert ignored.returncode == 0  # data never goes into git


def test_the_calls_fit_the_device_limits():
    assert all(t <= device_plan.COMMAND_S for t in device_plan.CALLS.values())
    assert device_plan.BUDGET_S <= 520 and device_plan.BUDGET_S + 45 <= device_plan.CALLS[device_plan.TRAIN_CALL]
    assert device_plan.START_S + sum(device_plan.CALLS.values()) <= device_plan.DEVICE_S
    start = 1000.0  # the workers stop early enough to stop and pack within the budget
    assert device_plan.deadline(start) + device_plan.STOP_S + device_plan.PACK_S == start + device_plan.BUDGET_S
    assert device_plan.VOLUME_BYTES < 16 * 2**20 and device_plan.BENCH_S <= device_plan.BUDGET_S


def test_a_missing_import_stops_with_one_line(tmp_path, monkeypatch):
    real = __import__

    def no_yaml(name, *a, **k):
        if name == "yaml":
            raise ImportError("No module named 'yaml'", name="yaml")
        return real(name, *a, **k)

    monkeypatch.setattr("builtins.__import__", no_yaml)
    line = device_plan.check_imports("cpu")
    assert line.startswith("stop: cannot import yaml") and "\n" not in line


def test_the_host_passes_its_commit_to_a_tree_without_git(monkeypatch):
    monkeypatch.setattr(store_mod, "_git", lambda *a: (_ for _ in ()).throw(OSError("no .git")))
    for value, commit, digest in (("0123456789ab", "0123456789ab", None), ("abcdef1:" + "f" * 64, "abcdef1", "f" * 64),
                                  ("", None, None)):
        monkeypatch.setenv("KDNB_SOURCE_STATE", value)
        store_mod.source_state.cache_clear()
        st = store_mod.source_state()
        assert (st["commit"], st["diff_sha256"], st["diff"]) == (commit, digest, None)
        assert store_mod.code_version().endswith(f"+{commit}.dirty-{'f' * 12}" if digest else commit or "")
    monkeypatch.setenv("KDNB_SOURCE_STATE", "HEAD; rm -rf /")
    store_mod.source_state.cache_clear()
    with pytest.raises(ValueError, match="KDNB_SOURCE_STATE='HEAD; rm -rf /'"):
        store_mod.source_state()
    store_mod.source_state.cache_clear()


def _tiny_params(tmp_path: Path) -> Path:
    """The paper grid shrunk: CIFAR-shaped tiny data, a ResNet-8 teacher, 2 student epochs, 1 teacher epoch."""
    d = yaml.safe_load((ROOT / "params" / "paper" / "generalization.yaml").read_text())
    d.update(epochs=2, teacher_epochs=1, teachers={"resnet8": "resnet8"}, teacher_seeds=[100], seeds=[0, 1],
             batch_size=64, store="unused")
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


def test_the_plan_runs_whole_in_dry_mode_and_its_packed_store_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("KDNB_CACHE", str(tmp_path / "cache"))
    params = _tiny_params(tmp_path)
    chunks, work, out = tmp_path / "chunks", tmp_path / "work", tmp_path / "out"
    src = _npz(tmp_path / "cifar10.npz")
    datachunks.split(src, chunks, chunk_bytes=src.stat().st_size // 4 + 1)
    committed = tmp_path / "committed"  # a committed store with one finished cell: kept, not retrained
    p = device_plan.grid_params(params, committed, "cpu", str(tmp_path))
    order = device_plan.ordered(p)
    kept = train_run(order[0][1], Store(committed), "cpu", progress=False, data_root=str(tmp_path))
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))  # as here: the same sums
    common = ["--dry", "--chunks", str(chunks), "--work", str(work), "--params", str(params), "--committed",
              str(committed), "--out", str(out), "--max-epochs", "1"]
    for call in device_plan.CALLS:
        proc = subprocess.run([sys.executable, "-m", "benchmarks.device_plan", call, *common], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    log = (out / "plan.log").read_text()
    # what comes back: at most 8 plain files, at most 2 folders down, names the device tool accepts
    files = [f for f in out.rglob("*") if f.is_file()]
    assert 0 < len(files) <= device_plan.MAX_FILES
    assert all(len(f.relative_to(out).parts) <= device_plan.MAX_DEPTH + 1 for f in files)
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", f.name) and f.stat().st_size < 16 * 2**20 for f in files)
    assert {f.name for f in files} == {"plan.log", "summary.json", "paper.tar.gz"}
    # order by value: teacher-free cells, then the teacher, then Hinton
    labels = [label for label, _ in order]
    assert labels == ["baseline/resnet8 seed 0", "baseline/resnet8 seed 1", "one/resnet8 seed 0",
                      "one/resnet8 seed 1", "dml/resnet8 seed 0", "dml/resnet8 seed 1", "baseline/resnet8 seed 100",
                      "hinton/resnet8 seed 0", "hinton/resnet8 seed 1"]
    reported = [m.group(1) for m in re.finditer(r"plan: (\S+ seed \d+) (?:partial|done)", log)]
    assert reported == labels[1:]  # one worker, in order; the committed cell skipped
    s = json.loads((out / "summary.json").read_text())
    states = {r["run"]: r["state"] for r in s["runs"]}
    assert states == {**{lb: "partial" for lb in labels}, labels[0]: "done", labels[6]: "done"}
    assert s["files"] and not s["stopped_at_deadline"] and s["wall_s"] < device_plan.BUDGET_S
    with tarfile.open(out / "paper.tar.gz") as tar:
        names = tar.getnames()
    assert all(n.startswith("runs/") for n in names) and not any(kept["run_id"] in n for n in names)
    assert not any(n.endswith(("lock", ".tmp")) for n in names)
    # the packed store unpacks into the committed one, and a partial run resumes from its checkpoint
    device_plan.unpack(out, committed)
    store = Store(committed)
    assert store.read(kept["run_id"])["finished"] == kept["finished"]
    cfg = order[1][1]  # baseline seed 1: one epoch of two on the "device"
    assert store.checkpoint_path(cfg.run_id).is_file()
    rec = train_run(cfg, store, "cpu", progress=False, data_root=str(tmp_path))
    assert rec["status"] == "done" and [h["epoch"] for h in rec["history"]] == [1, 2]
    assert [(g["from_epoch"], g["to_epoch"]) for g in rec["segments"]] == [(0, 1), (1, 2)]
    train_run(cfg, Store(tmp_path / "whole"), "cpu", progress=False, data_root=str(tmp_path))
    a, b = (store_mod.safe_torch_load(st.model_path(cfg.run_id)) for st in (store, Store(tmp_path / "whole")))
    assert all(torch.equal(a[k], b[k]) for k in a)  # resumed from the packed checkpoint: the same weights
