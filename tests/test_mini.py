"""The committed mini store (results/mini) covers the whole mini grid with honest records.

`make book` renders these records without training, so a run missing here is a hole in the
default book; CI also builds that book, which fails naming any missing run.
"""

import json
import subprocess
from pathlib import Path

import pytest

from kdnb.report.book import grid_files
from kdnb.store import Store
from kdnb.study import Study, load_params, transfer_key, transfer_path, transfer_settings, transfer_sources

ROOT = Path(__file__).resolve().parent.parent
PARAMS = grid_files(ROOT / "params" / "mini")  # every section's grid (the summary page has none)
ABLATIONS = sorted((ROOT / "params" / "mini" / "ablations").glob("*.yaml"))  # shown where their runs exist
MINI = str(ROOT / "results" / "mini")


@pytest.mark.parametrize("path", PARAMS, ids=lambda p: p.stem)
def test_every_mini_run_is_done(path):
    study = Study(load_params(str(path), store=str(ROOT / "results" / "mini")))
    st = study.status()
    assert len(st) and (st["state"] == "done").all(), st[st["state"] != "done"].to_string()


@pytest.mark.parametrize("path", ABLATIONS, ids=lambda p: p.stem)
def test_every_ablation_run_is_done_traceably_in_its_own_store(path):
    """The ablations name their stores (the BSS pair keeps one with its teacher's weights); the book shows
    them from there, so each of their runs is stored, made from a traceable tree."""
    p = load_params(str(path))
    study = Study(load_params(str(path), store=str(ROOT / p.store)))
    st = study.status()
    assert len(st) and (st["state"] == "done").all(), st[st["state"] != "done"].to_string()
    for run_id in st["run_id"]:
        r = study.store.read(run_id)
        assert r["config"]["precision"] == p.precision and r["segments"], run_id
        assert "dirty" not in r["code_version"] or r["code_diff"] is not None, run_id


def test_records_carry_config_code_version_and_environment():
    records = list(Store(MINI).records())
    main = {r for path in PARAMS for r in Study(load_params(str(path), store=MINI)).status()["run_id"]}
    precision = {r: load_params(str(path)).precision for path in PARAMS + ABLATIONS
                 for r in Study(load_params(str(path), store=MINI)).status()["run_id"]}
    assert main <= {r["run_id"] for r in records} <= set(precision)  # no record outside the mini grids
    for r in records:
        assert r["status"] == "done" and r["config"]["data"]["dataset"] == "cifar10", r["run_id"]
        assert r["config"]["precision"] == precision[r["run_id"]], r["run_id"]
        assert r["config"]["data"]["test_per_class"] is None, r["run_id"]
        assert r["code_version"] and r["environment"]["torch"] and r["device"], r["run_id"]
        if r["run_id"] not in main:  # made after records became traceable
            assert "dirty" not in r["code_version"] or r["code_diff"] is not None, r["run_id"]
            assert r["numerics_revision"] >= 1 and r["segments"], r["run_id"]


def test_the_transfer_matrix_is_stored():
    p = load_params(str(ROOT / "params" / "mini" / "transferability.yaml"), store=str(ROOT / "results" / "mini"))
    study = Study(p)
    runs = study.run(train=False, progress=False)
    for s in p.students:
        ids, teacher = transfer_sources(runs, s)
        path = transfer_path(p.store, transfer_key(ids, teacher, transfer_settings(p), p))
        rec = json.loads(path.read_text())
        assert rec["n_images"] == 10 * p.transfer["test_per_class"] and rec["teacher"] == teacher
        assert sorted(rec["sources"]) == sorted(p.methods)


def test_only_records_are_committed():
    """results/mini holds JSON only; results/paper also each finished run's weights and unfinished checkpoints;
    results/subset60-ablations unfinished checkpoints; results/subset60 is checked by tests/test_subset60.py."""
    try:
        out = subprocess.run(["git", "ls-files", "results"], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    files = out.stdout.split()
    weights = ("model.pt", "checkpoint.pt")
    bad = [f for f in files if not (f.endswith(".json") or (f.startswith(("results/paper/", "results/subset60/"))
                                                              and f.endswith(weights))
                                    or (f.startswith("results/subset60-ablations/") and f.endswith("checkpoint.pt")))]
    assert files and not bad, bad
