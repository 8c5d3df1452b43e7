"""What keeps results trustworthy: records that say what made them (code with any uncommitted diff,
numerics revision, machine, segments), independent seeds, and no silent bf16 emulation on the CPU.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import kdnb
from kdnb import cli
from kdnb.config import ConfigError, RunConfig
from kdnb.store import Store
from kdnb.study import Params, Study, duration
from kdnb.train import train_run

ROOT = Path(__file__).resolve().parent.parent
SYNTH = {"dataset": "synthetic", "synthetic_train": 3, "synthetic_test": 2}


def _params(tmp_path, **kw) -> Params:
    d = {"store": str(tmp_path), "dataset": "synthetic", "students": ["resnet8"], "teachers": {"resnet8": "resnet8"},
         "methods": ["baseline", "hinton"], "seeds": [0, 1], "teacher_seeds": [100], "epochs": 1,
         "batch_size": 32, "device": "cpu"}
    return Params.from_dict({**d, **kw})


def test_a_student_may_not_share_its_teachers_seed(tmp_path):
    with pytest.raises(ConfigError, match=r"student resnet8 seed 1 would share its teacher's seed"):
        Study(_params(tmp_path, teacher_seeds=[1, 5]))
    Study(_params(tmp_path))  # disjoint seeds
    Study(_params(tmp_path, teachers={"resnet8": "resnet14"}, teacher_seeds=[0]))  # another architecture
    Study(_params(tmp_path, methods=["baseline"], teacher_seeds=[0]))  # no method reads a teacher


def test_the_command_refuses_a_seed_clash_in_one_line(tmp_path, capsys):
    import yaml

    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({**_params(tmp_path).__dict__, "teacher_seeds": [0]}))
    assert cli.main(["study", str(path), "--status"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "seed 0 would share its teacher's seed" in err[0]


def test_paper_profile_seeds_are_independent():
    from kdnb.report.book import grid_files
    from kdnb.study import load_params

    for path in grid_files(ROOT / "params" / "paper"):
        p = load_params(path)
        Study(p)  # refuses a clash
        if p.section != "teachers":
            assert not set(p.seeds) & set(p.teacher_seeds), path.name
        assert p.store == "results/paper", path.name


def test_a_resumed_run_records_each_segment_and_its_provenance(tmp_path):
    store = Store(tmp_path)
    cfg = RunConfig.from_dict({"method": "baseline", "student": "resnet8", "epochs": 3, "batch_size": 32,
                               "data": SYNTH})
    assert train_run(cfg, store, "cpu", progress=False, max_epochs=2)["status"] == "partial"
    rec = train_run(cfg, store, "cpu", progress=False)
    segs = rec["segments"]
    assert [(s["from_epoch"], s["to_epoch"]) for s in segs] == [(0, 2), (2, 3)]
    assert all(s["code_version"] == rec["code_version"] and s["numerics_revision"] == kdnb.NUMERICS_REVISION
               and s["device"] == "cpu" and s["cpu"] and s["wall_s"] > 0 for s in segs)
    assert rec["numerics_revision"] == kdnb.NUMERICS_REVISION
    assert isinstance(rec["environment"]["native_bf16"], bool) and rec["environment"]["cpu"]
    assert ("dirty" in rec["code_version"]) == (rec["code_diff"] is not None or "dirty-" in rec["code_version"])


def test_stale_records_are_flagged_and_kept_unless_retrained(tmp_path, caplog):
    params = _params(tmp_path, methods=["baseline"], seeds=[0])
    study = Study(params)
    study.run(progress=False)
    (run_id,) = study.status().run_id
    path = Store(tmp_path).record_path(run_id)
    rec = json.loads(path.read_text())
    rec["numerics_revision"] = kdnb.NUMERICS_REVISION - 1
    Store(tmp_path).write({k: v for k, v in rec.items() if k != "checksum"})
    assert list(study.status().state) == ["stale"]
    study.run(progress=False)
    assert "older numerics revision" in caplog.text and list(study.status().state) == ["stale"]
    study.run(progress=False, retrain_stale=True)
    assert list(study.status().state) == ["done"]


def test_cell_selection_narrows_the_grid(tmp_path, capsys):
    import yaml

    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(_params(tmp_path).__dict__))
    assert cli.main(["study", str(path), "--methods", "baseline", "--seeds", "1", "--status"]) == 0
    out = capsys.readouterr().out
    assert "missing: 1" in out and "hinton" not in out


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_code_version_names_the_commit_and_hashes_an_uncommitted_diff(tmp_path):
    """A copy of the package in its own repository: clean, then edited, then with a new file."""
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "kdnb", repo / "kdnb", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".gitignore", repo / ".gitignore")
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    probe = ["import json, kdnb.store as s; print(json.dumps([s.code_version(), s.source_state()]))"]

    def state():
        out = subprocess.run([sys.executable, "-c", *probe], cwd=repo, capture_output=True, text=True, check=True,
                             env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"})
        return json.loads(out.stdout)

    sha = subprocess.run([*git, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True).stdout.strip()
    version, st = state()
    assert version == f"{kdnb.__version__}+{sha}" and st["diff"] is None
    with open(repo / "kdnb" / "losses.py", "a") as f:
        f.write("# an edit\n")
    version, st = state()
    assert version == f"{kdnb.__version__}+{sha}.dirty-{st['diff_sha256'][:12]}" and "+# an edit" in st["diff"]
    (repo / "kdnb" / "extra.py").write_text("X = 1\n")
    version2, st2 = state()
    assert version2 != version and "untracked kdnb/extra.py" in st2["diff"]


@pytest.mark.parametrize("native", [False, True])
def test_bf16_on_a_cpu_without_native_bf16_is_refused_unless_allowed(tmp_path, monkeypatch, capsys, native):
    import yaml

    import kdnb.store

    monkeypatch.setattr(kdnb.store, "native_bf16", lambda: native)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({**_params(tmp_path).__dict__, "methods": ["baseline"], "seeds": [0],
                                    "precision": "bf16"}))
    train = ["train", "--student", "resnet8", "--dataset", "synthetic", "--epochs", "1", "--precision", "bf16",
             "--store", str(tmp_path / "t"), "--device", "cpu", "--no-progress"]
    if native:  # nothing is refused: the grid trains
        assert cli.main(["study", str(path), "--no-progress"]) == 0
        return
    for argv in (["study", str(path), "--no-progress"], train):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "no native bf16" in err[0] and "--allow-emulated-bf16" in err[0], err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "t").exists()
    assert cli.main([*train, "--allow-emulated-bf16"]) == 0
    assert cli.main(["study", str(path), "--no-progress", "--allow-emulated-bf16"]) == 0
    assert cli.main(["study", str(path), "--no-progress"]) == 0  # all done: nothing left to train


def test_a_teacher_without_weights_is_one_clear_error(tmp_path, capsys):
    """A records-only store (like results/mini) cannot teach new students: one line, no traceback."""
    import yaml

    d = {**_params(tmp_path).__dict__, "teachers": {"resnet8": "resnet14"}, "methods": ["hinton"], "seeds": [0]}
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(d))
    study = Study(Params.from_dict(d))
    (teacher,) = study.conditions[0].teachers["resnet14"]
    train_run(teacher, Store(tmp_path), "cpu", progress=False)
    Store(tmp_path).model_path(teacher.run_id).unlink()
    assert cli.main(["study", str(path), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kdnb: error:") and "model.pt" in err[0], err


def test_time_left_times_each_missing_run_by_its_finished_peers(tmp_path, capsys):
    """The estimate of what a grid still needs: a missing run costs the median wall time of the grid's finished
    runs of its method and student in its condition, else in any condition; a method with no finished run
    is counted apart. Read from a copy of the committed mini store with runs removed."""
    import statistics

    from kdnb.study import load_params

    root = Path(__file__).resolve().parents[1]
    path = root / "params" / "mini" / "label_noise.yaml"
    store = Store(tmp_path / "store")
    shutil.copytree(root / "results" / "mini", store.root)
    study = Study(load_params(str(path), store=str(store.root)))
    st = study.status()
    assert study.time_left(st) == {"seconds": 0.0, "runs": 0, "untimed": 0}
    st = st[st["role"] == "student"].assign(wall_s=lambda d: [store.read(r)["wall_s"] for r in d["run_id"]])

    def runs(method, noise=None, seed=None):
        return st[(st["method"] == method) & ((st["noise"] == noise) if noise is not None else True)
                  & ((st["seed"] == seed) if seed is not None else True)]

    gone = [runs("hinton", 0.4, seed=1), runs("baseline", 0.4), runs("dml")]
    expect = runs("hinton", 0.4, seed=0)["wall_s"].iloc[0] + 2 * statistics.median(runs("baseline", 0.0)["wall_s"])
    for r in [r for g in gone for r in g["run_id"]]:
        shutil.rmtree(store.root / "runs" / r)
    left = study.time_left()
    assert left["runs"] == 3 and left["seconds"] == pytest.approx(expect) and left["untimed"] == len(gone[2]) == 4
    capsys.readouterr()
    assert cli.main(["study", str(path), "--store", str(store.root), "--status"]) == 0
    out = capsys.readouterr().out
    assert f"left to train: about {duration(expect)} of one process for 3 runs (" in out
    assert out.rstrip().endswith("; 4 more with no finished run to time them by")
