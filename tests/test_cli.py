"""The command line: bad input exits 2 with one line naming the value and the choices, writing nothing."""

import subprocess
import sys

import pytest
import yaml

from kdnb import cli

GRID = {"profile": "test", "section": "cli", "dataset": "synthetic", "students": ["resnet8"],
        "teachers": {"resnet8": "resnet8"}, "methods": ["baseline"], "seeds": [0], "epochs": 1, "batch_size": 32,
        "device": "cpu"}


def _err(capsys, argv) -> str:
    assert cli.main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kdnb: error:"), lines
    return lines[0]


@pytest.mark.parametrize("change, expect", [
    ({"students": ["resnet9"]}, "resnet9"),
    ({"methods": ["distill"]}, "distill"),
    ({"dataset": "mnist"}, "mnist"),
    ({"executor": "kubernetes"}, "kubernetes"),
    ({"epochs": 0}, "epochs 0"),
    ({"batch_size": 0}, "batch_size 0"),
    ({"seeds": [-1]}, "seed -1"),
    ({"noise": [1.5]}, "1.5"),
    ({"imbalance": [0.0]}, "imbalance ratio 0.0"),
    ({"imbalance": [-1]}, "imbalance ratio -1"),
    ({"workers": 0}, "workers 0"),
    ({"device": "tpu"}, "unknown device 'tpu'; valid: auto, cpu, cuda, cuda:<index>"),
    ({"colour": "red"}, "colour"),
])
def test_bad_params_exit_2_and_write_nothing(tmp_path, capsys, change, expect):
    store = tmp_path / "store"
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({**GRID, "store": str(store), **change}))
    line = _err(capsys, ["study", str(path)])
    assert expect in line
    assert not store.exists()


def test_known_choices_are_listed(tmp_path, capsys):
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({**GRID, "store": str(tmp_path / "s"), "students": ["resnet9"]}))
    assert "resnet8" in _err(capsys, ["study", str(path)]) and "wrn40_2" in capsys.readouterr().err + "wrn40_2"
    path.write_text(yaml.safe_dump({**GRID, "store": str(tmp_path / "s"), "dataset": "mnist"}))
    assert "cifar10, cifar100, synthetic" in _err(capsys, ["study", str(path)])


def test_missing_and_malformed_files(tmp_path, capsys):
    assert "nope.yaml" in _err(capsys, ["study", str(tmp_path / "nope.yaml")])
    bad = tmp_path / "bad.yaml"
    bad.write_text("methods: [baseline\nseeds: 0\n")
    assert "malformed YAML" in _err(capsys, ["study", str(bad)])
    bad.write_text("- just\n- a list\n")
    assert "mapping" in _err(capsys, ["study", str(bad)])
    assert "nope.yaml" in _err(capsys, ["train", str(tmp_path / "nope.yaml")])


def test_train_flags_are_validated(tmp_path, capsys):
    store = tmp_path / "store"
    base = ["train", "--store", str(store), "--dataset", "synthetic"]
    assert "resnet9" in _err(capsys, base + ["--student", "resnet9"])
    assert "noise 2.0" in _err(capsys, base + ["--noise", "2"])
    assert "epochs 0" in _err(capsys, base + ["--epochs", "0"])
    assert "hinton" in _err(capsys, base + ["--method", "hinton"])  # needs a teacher
    assert "unknown method 'kd'" in _err(capsys, base + ["--method", "kd"])
    assert "unknown device 'gpu0'" in _err(capsys, base + ["--device", "gpu0"])
    assert "unknown device 'tpu'" in _err(capsys, ["bench", "--device", "tpu"])
    assert not store.exists()


def test_a_cuda_device_this_machine_lacks_is_refused_before_the_store_is_touched(tmp_path, capsys, monkeypatch):
    """A GPU that is not there is a usage error naming what is (here: none); a study dispatched to a cluster
    names CUDA on a submit host without one, so only its form is checked when the params file loads."""
    import torch

    from kdnb.study import load_params

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    store = tmp_path / "store"
    line = _err(capsys, ["train", "--store", str(store), "--dataset", "synthetic", "--device", "cuda:1"])
    assert line == ("kdnb: error: device 'cuda:1': this machine has 0 CUDA devices; valid here: auto, cpu")
    assert not store.exists()
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({**GRID, "store": str(store), "device": "cuda", "executor": "slurm"}))
    assert load_params(str(path)).device == "cuda"


def test_argparse_errors_are_one_line_too(capsys):
    _err(capsys, ["study"])
    _err(capsys, ["train", "--epochs", "many"])


def test_train_command_end_to_end(tmp_path):
    """A Hinton run from flags: the teacher is trained first, then the student; both land in the store."""
    import kdnb.store

    store = tmp_path / "store"
    out = subprocess.run([sys.executable, "-m", "kdnb.cli", "train", "--method", "hinton", "--student", "resnet8",
                          "--teacher", "ResNet-8", "--dataset", "synthetic", "--epochs", "1", "--batch-size", "32",
                          "--store", str(store), "--device", "cpu", "--no-progress", "--teacher-seeds", "100"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    df = kdnb.store.load(store)
    assert sorted(df.method) == ["baseline", "hinton"] and (df.status == "done").all()
    assert "hinton resnet8 seed 0: final" in out.stdout
