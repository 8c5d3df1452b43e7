"""benchmarks/gpu.sh dry-run on the CPU at tiny size: its paper part fills a store that resumes elsewhere."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from kdnb.store import Store

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("timeout") is None, reason="needs coreutils timeout")


def _tiny_params(tmp_path: Path) -> Path:
    """The paper generalization grid with its ResNet-8 column, shrunk to synthetic data and one epoch."""
    d = yaml.safe_load((ROOT / "params" / "paper" / "generalization.yaml").read_text())
    d.update(dataset="synthetic", epochs=1, teacher_epochs=1, teachers={"resnet8": "resnet14"},
             teacher_seeds=[100, 101], seeds=[0, 1], batch_size=64, store="unused")
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(d))
    return path


def test_paper_part_trains_teachers_then_students_and_resumes_a_committed_store(tmp_path):
    params = _tiny_params(tmp_path)
    committed = tmp_path / "committed"
    env = dict(os.environ, KDNB_GPU_DEVICE="cpu", KDNB_GPU_PARTS="paper", KDNB_GPU_PAPER_PARAMS=str(params),
               KDNB_GPU_PAPER_FROM=str(committed), OMP_NUM_THREADS="1", PYTHON=str(Path(os.sys.executable)))
    # a committed store holding one finished cell: the script must keep it, not retrain it
    subprocess.run([os.sys.executable, "-m", "kdnb.cli", "study", str(params), "--students", "resnet8",
                    "--methods", "baseline", "--seeds", "0", "--store", str(committed), "--device", "cpu",
                    "--no-progress"], check=True, capture_output=True, env=env, timeout=300)
    (kept,) = [r for r in Store(committed).records()]
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu.sh"), str(out)], env=env, capture_output=True,
                          text=True, timeout=600)
    summary = (out / "summary.txt").read_text()
    assert proc.returncode == 0, proc.stderr + summary
    assert "== paper" in summary and "paper: exit 0" in summary and "done: 6" in summary, summary
    assert "== bench_resnet" not in summary  # KDNB_GPU_PARTS ran the paper part alone
    store = Store(out / "paper")
    recs = {r["run_id"]: r for r in store.records()}
    roles = sorted((r["config"]["student"], r["config"]["method"], r["config"]["seed"]) for r in recs.values())
    assert roles == [("resnet14", "baseline", 100), ("resnet14", "baseline", 101), ("resnet8", "baseline", 0),
                     ("resnet8", "baseline", 1), ("resnet8", "hinton", 0), ("resnet8", "hinton", 1)]
    assert recs[kept["run_id"]]["finished"] == kept["finished"]  # resumed store: the committed cell untouched
    students = [r for i, r in recs.items() if r["config"]["student"] == "resnet8" and i != kept["run_id"]]
    first_student = min(r["finished"] for r in students)
    assert all(r["finished"] < first_student for r in recs.values() if r["config"]["student"] == "resnet14")
    for run_id, r in recs.items():
        assert r["config"]["precision"] == "fp32" and store.model_path(run_id).exists()
        assert not (store.run_dir(run_id) / "lock").exists() and not store.checkpoint_path(run_id).exists()
    json.dumps(recs)  # records are plain JSON, ready to commit
