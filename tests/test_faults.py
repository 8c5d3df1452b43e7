"""Faults injected for real: killed processes, concurrent studies, corrupt files, divergence, full disks.

Each test checks that nothing is lost and that the final store equals the fault-free one.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from kdnb import store as store_mod
from kdnb.store import Store
from kdnb.study import Params, Study
from kdnb.train import FAULT_ENV

pytestmark = pytest.mark.slow

GRID = {"profile": "test", "section": "faults", "dataset": "synthetic", "students": ["resnet8"],
        "teachers": {"resnet8": "resnet8"}, "methods": ["baseline", "hinton"], "seeds": [0],
        "teacher_seeds": [100], "epochs": 3, "teacher_epochs": 2, "batch_size": 32, "device": "cpu"}


def _params_file(tmp_path: Path, store: Path, **extra) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({**GRID, "store": str(store), **extra}))
    return path


def _kdnb(*args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "kdnb.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, **kw)


def _snapshot(store: Path) -> dict:
    """run id -> (final accuracy, weights) of every finished run."""
    s = Store(store)
    out = {}
    for rec in s.records():
        if rec["status"] == "done":
            w = store_mod.safe_torch_load(s.model_path(rec["run_id"]))
            out[rec["run_id"]] = (rec["final_acc"], {k: v.clone() for k, v in w.items()})
    return out


def _same(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    return all(a[k][0] == b[k][0] and all((a[k][1][n] == b[k][1][n]).all() for n in a[k][1]) for k in a)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """CPU results are bit-exact only for a fixed thread count: match the subprocesses' one thread."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, one_thread):
    """The fault-free store of the grid."""
    store = tmp_path_factory.mktemp("reference")
    Study(Params.from_dict({**GRID, "store": str(store)})).run(progress=False)
    snap = _snapshot(store)
    assert len(snap) == 3
    return snap


def test_sigkill_at_any_moment_then_rerun_completes_identically(tmp_path, reference):
    store = tmp_path / "store"
    params = _params_file(tmp_path, store)
    for delay_checkpoints in (1, 3):  # kill after the first and after the third checkpoint written
        proc = _kdnb("study", str(params), "--no-progress")
        seen, deadline = 0, time.time() + 120
        while seen < delay_checkpoints and time.time() < deadline and proc.poll() is None:
            seen = len(list(store.glob("runs/*/checkpoint.pt")) + list(store.glob("runs/*/record.json")))
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert len(_snapshot(store)) < 3  # the kills really interrupted the grid
    rerun = _kdnb("study", str(params), "--no-progress")
    out, _ = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, out
    assert _same(_snapshot(store), reference)


def test_two_concurrent_studies_train_each_run_once(tmp_path, reference):
    store = tmp_path / "store"
    params = _params_file(tmp_path, store)
    procs = [_kdnb("study", str(params), "--no-progress") for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    trained = [line.split("training run ")[1].split(":")[0] for o in outs for line in o.splitlines()
               if "training run " in line]
    assert sorted(trained) == sorted(reference)  # every run exactly once, across both processes
    assert _same(_snapshot(store), reference)


def test_corrupt_record_and_checkpoint_are_detected_and_redone(tmp_path, reference, caplog):
    store = tmp_path / "store"
    params = Params.from_dict({**GRID, "store": str(store)})
    Study(params).run(progress=False)
    s = Store(store)
    victim = sorted(reference)[0]
    s.record_path(victim).write_text(s.record_path(victim).read_text()[:100])  # truncated record
    assert victim in set(Study(params).missing().run_id)
    Study(params).run(progress=False)
    assert "checksum" in caplog.text or "not valid JSON" in caplog.text
    assert _same(_snapshot(store), reference)

    # a truncated checkpoint: the run starts over and still ends identically
    from kdnb.config import RunConfig
    from kdnb.train import train_run

    rec = s.read(victim)
    cfg = RunConfig.from_dict(rec["config"])
    s.record_path(victim).unlink()
    assert train_run(cfg, s, "cpu", progress=False, max_epochs=1)["status"] == "partial"
    ck = s.checkpoint_path(victim)
    ck.write_bytes(ck.read_bytes()[: ck.stat().st_size // 2])
    train_run(cfg, s, "cpu", progress=False)
    assert "checkpoint unusable" in caplog.text
    assert _same(_snapshot(store), reference)


def test_divergent_run_fails_alone_and_the_study_goes_on(tmp_path, monkeypatch):
    # the divergence is injected (kdnb.train's fault hook), not provoked through numerics, whose
    # outcome differs between CPU kinds
    monkeypatch.setenv(FAULT_ENV, "hinton@2")
    store = tmp_path / "store"
    params = Params.from_dict({**GRID, "store": str(store), "seeds": [0, 1]})
    df = Study(params).run(progress=False)
    st = Study(params).status()
    states = dict(zip(st.role + "/" + st.method, st.state, strict=True))
    assert states == {"teacher/baseline": "done", "student/baseline": "done", "student/hinton": "failed"}
    for run_id in st[st.method == "hinton"].run_id:  # both seeds failed; the baselines went on
        rec = Store(store).read(run_id)
        assert rec["error"] == "loss became nan in stage 'main' epoch 2", rec["error"]
        assert [h["epoch"] for h in rec["history"]] == [1, 2] and not Store(store).checkpoint_path(run_id).exists()
    assert set(df.method) == {"baseline", "hinton"}
    monkeypatch.delenv(FAULT_ENV)
    out = _kdnb("study", str(_params_file(tmp_path, store, seeds=[0, 1])), "--status").communicate(timeout=120)[0]
    assert "failed: 2" in out


def test_fault_hook_names_one_method_and_an_epoch(monkeypatch):
    from kdnb.train import _fault_epoch

    assert _fault_epoch("hinton") is None
    monkeypatch.setenv(FAULT_ENV, "hinton")
    assert (_fault_epoch("hinton"), _fault_epoch("baseline")) == (1, None)
    monkeypatch.setenv(FAULT_ENV, "dml@7")
    assert (_fault_epoch("dml"), _fault_epoch("hinton")) == (7, None)


def test_unwritable_store_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    params = _params_file(tmp_path, blocker / "store")
    out, _ = _kdnb("study", str(params), "--no-progress").communicate(timeout=120)
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert "Traceback" not in out and lines[-1].startswith("kdnb: error:") and "file" in lines[-1]


def test_full_disk_is_one_clear_error(tmp_path, monkeypatch, capsys):
    import errno

    from kdnb import cli

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "store"))

    monkeypatch.setattr(store_mod, "atomic_torch_save", full)
    monkeypatch.setattr("kdnb.train.atomic_torch_save", full)
    params = _params_file(tmp_path, tmp_path / "store")
    assert cli.main(["study", str(params), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"kdnb: error: No space left on device: {tmp_path / 'store'}"]


def test_local_workers_share_the_grid(tmp_path, reference):
    store = tmp_path / "store"
    params = _params_file(tmp_path, store, workers=2)
    out, _ = _kdnb("study", str(params), "--no-progress").communicate(timeout=300)
    assert _same(_snapshot(store), reference), out


def test_local_workers_train_only_the_cells_asked_for(tmp_path, reference):
    """--methods (like --students and --seeds) reaches every worker: Hinton and its teacher are trained,
    identical to the fault-free store's, and the baseline student is left missing."""
    store = tmp_path / "store"
    params = _params_file(tmp_path, store)
    out, _ = _kdnb("study", str(params), "--workers", "2", "--methods", "hinton", "--no-progress").communicate(
        timeout=300)
    snap = _snapshot(store)
    trained = sorted((r["config"]["method"], r["config"]["seed"]) for r in Store(store).records())
    assert trained == [("baseline", 100), ("hinton", 0)], out  # the teacher is a baseline run of seed 100
    assert _same(snap, {k: reference[k] for k in snap}), out


def test_submitit_array_fills_the_store(tmp_path, reference, monkeypatch):
    pytest.importorskip("submitit")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the array tasks are processes: same thread count
    from kdnb.study import dispatch

    store = tmp_path / "store"
    params = Params.from_dict({**GRID, "store": str(store), "workers": 2, "slurm": {"timeout_min": 10}})
    assert dispatch(params, cluster="local") == 0
    assert _same(_snapshot(store), reference)
