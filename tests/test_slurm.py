"""A study dispatched as a real Slurm job array through submitit (``executor: slurm``).

Needs a running cluster with an idle node in a partition ``debug`` (``.ci/slurm-up.sh`` starts a
single-node one); skipped otherwise.
"""

import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from kdnb import store as store_mod
from kdnb.study import Params, Study, dispatch

pytestmark = pytest.mark.slurm

# teacher_epochs differs from epochs so that the teacher (a ResNet-8 baseline) is a run of its own
GRID = {"profile": "test", "section": "slurm", "dataset": "synthetic", "students": ["resnet8"],
        "teachers": {"resnet8": "resnet8"}, "methods": ["baseline", "hinton"], "seeds": [0],
        "teacher_seeds": [100], "epochs": 1, "teacher_epochs": 2, "batch_size": 32, "device": "cpu"}
WAIT_S = 600  # the whole array; a failed task without accounting (no sacct) would otherwise hang


def _idle_nodes() -> str:
    """Why there is no cluster to use, or '' when the partition ``debug`` has an idle node."""
    if shutil.which("sinfo") is None:
        return "sinfo not on PATH (no Slurm; .ci/slurm-up.sh starts a single-node cluster)"
    try:
        out = subprocess.run(["sinfo", "-h", "-p", "debug", "-t", "idle", "-o", "%n"], capture_output=True,
                             text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo timed out (slurmctld not answering)"
    if out.returncode != 0:
        return f"sinfo failed: {out.stderr.strip() or out.stdout.strip()}"
    if not out.stdout.strip():
        return "no idle node in Slurm partition 'debug'"
    return ""


def _logs(store: Path) -> str:
    """The submitit logs of every task, for the failure message."""
    return "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-3000:]}"
                     for p in sorted((store / "slurm").rglob("*.out")) + sorted((store / "slurm").rglob("*.err")))


def test_slurm_array_fills_the_store(tmp_path, monkeypatch):
    pytest.importorskip("submitit")
    reason = _idle_nodes()
    if reason:
        pytest.skip(reason)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # exported to the tasks by sbatch

    store = tmp_path / "store"
    params = Params.from_dict({**GRID, "store": str(store), "executor": "slurm", "workers": 2,
                               "slurm": {"slurm_partition": "debug", "timeout_min": 10, "cpus_per_task": 1}})
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["status"] = dispatch(params)
        except BaseException as err:  # reported below, with the tasks' logs
            outcome["error"] = err

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(WAIT_S)
    if worker.is_alive():
        jobs = {d.name.split("_")[0] for d in (store / "slurm").glob("*") if d.is_dir()}
        subprocess.run(["scancel", *sorted(jobs)], capture_output=True)
        pytest.fail(f"the job array did not finish in {WAIT_S} s\n{_logs(store)}")
    assert "error" not in outcome, f"{outcome.get('error')!r}\n{_logs(store)}"
    assert outcome["status"] == 0

    df = store_mod.load(store)
    assert len(df) == 3 and (df.status == "done").all(), df[["method", "student", "epochs", "status"]]
    assert sorted(df.method) == ["baseline", "baseline", "hinton"]
    st = Study(params).status()
    rows = sorted(st[["role", "method", "state"]].itertuples(index=False, name=None))
    assert rows == [("student", "baseline", "done"), ("student", "hinton", "done"), ("teacher", "baseline", "done")]
    assert set(st.run_id) == set(df.run_id)
