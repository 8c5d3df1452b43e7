"""The training loop: learning, determinism, resume, failure records, the study grid, real data."""

import os
from pathlib import Path

import pytest
import torch

from kdnb import store as store_mod
from kdnb.config import RunConfig
from kdnb.store import Store
from kdnb.study import Params, Study
from kdnb.train import train_run

SHARED = Path(os.environ.get("KDNB_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SYNTH = {"dataset": "synthetic", "synthetic_train": 30, "synthetic_test": 10}


def _cfg(**kw):
    base = {"method": "baseline", "student": "resnet8", "epochs": 3, "batch_size": 32, "data": SYNTH}
    base.update(kw)
    return RunConfig.from_dict(base)


def _weights(store, run_id):
    return store_mod.safe_torch_load(store.model_path(run_id))


def test_baseline_learns_the_synthetic_task(tmp_path):
    rec = train_run(_cfg(epochs=4), Store(tmp_path), "cpu", progress=False)
    assert rec["status"] == "done"
    assert rec["final_acc"] > 50  # chance is 10 %
    assert len(rec["history"]) == 4 and [h["lr"] for h in rec["history"]][0] == 0.1
    assert rec["config"]["method_args"] == {} and rec["environment"]["torch"] == torch.__version__


def test_schedule_follows_the_milestones():
    from kdnb.methods import METHODS

    cfg = _cfg(epochs=200)
    stage = METHODS["baseline"](cfg).stages()[0]
    assert stage.milestones == (60, 120, 150)
    assert [round(stage.lr_at(e), 6) for e in (0, 59, 60, 119, 120, 150, 199)] == \
        [0.1, 0.1, 0.02, 0.02, 0.004, 0.0008, 0.0008]


def test_same_seed_same_weights_other_seed_other_weights(tmp_path):
    a, b, c = Store(tmp_path / "a"), Store(tmp_path / "b"), Store(tmp_path / "c")
    ra = train_run(_cfg(epochs=1), a, "cpu", progress=False)
    rb = train_run(_cfg(epochs=1), b, "cpu", progress=False)
    rc = train_run(_cfg(epochs=1, seed=1), c, "cpu", progress=False)
    wa, wb, wc = (_weights(s, r["run_id"]) for s, r in ((a, ra), (b, rb), (c, rc)))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_resume_ends_with_the_same_weights(tmp_path):
    cfg = _cfg(epochs=3)
    whole, parts = Store(tmp_path / "whole"), Store(tmp_path / "parts")
    r1 = train_run(cfg, whole, "cpu", progress=False)
    assert train_run(cfg, parts, "cpu", progress=False, max_epochs=1)["status"] == "partial"
    assert parts.checkpoint_path(cfg.run_id).exists() and parts.read(cfg.run_id) is None
    assert train_run(cfg, parts, "cpu", progress=False, max_epochs=1)["status"] == "partial"
    r2 = train_run(cfg, parts, "cpu", progress=False)
    w1, w2 = _weights(whole, cfg.run_id), _weights(parts, cfg.run_id)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert r1["final_acc"] == r2["final_acc"]
    assert [h["train_loss"] for h in r1["history"]] == [h["train_loss"] for h in r2["history"]]
    assert not parts.checkpoint_path(cfg.run_id).exists()  # removed once the record is written


def test_finished_runs_are_not_trained_again(tmp_path):
    s = Store(tmp_path)
    r1 = train_run(_cfg(epochs=1), s, "cpu", progress=False)
    r2 = train_run(_cfg(epochs=1), s, "cpu", progress=False)
    assert r1["finished"] == r2["finished"]


def test_divergence_is_recorded_as_a_failure(tmp_path):
    s = Store(tmp_path)
    rec = train_run(_cfg(epochs=2, lr=1e6), s, "cpu", progress=False)
    assert rec["status"] == "failed" and "epoch 1" in rec["error"]
    assert s.read(rec["run_id"])["status"] == "failed" and s.done(rec["run_id"]) is None


def test_hinton_needs_a_teacher_run(tmp_path):
    cfg = _cfg(method="hinton", teacher="resnet14")
    with pytest.raises(ValueError, match="teacher_run"):
        train_run(cfg, Store(tmp_path), "cpu", progress=False)


def test_study_trains_teacher_then_students_and_loads_them(tmp_path):
    params = Params(store=str(tmp_path), dataset="synthetic", students=["resnet8"], teachers={"resnet8": "resnet14"},
                    methods=["baseline", "hinton"], seeds=[0], teacher_seeds=[0, 1], epochs=1, teacher_epochs=2,
                    batch_size=32)
    study = Study(params)
    assert (study.status().state == "missing").sum() == 3  # 2 teachers, 1 baseline; hinton waits
    df = study.run(progress=False)
    assert sorted(df.role) == ["student", "student", "teacher", "teacher"]
    hinton = df[df.method == "hinton"].iloc[0]
    teachers = df[df.role == "teacher"]
    assert hinton.teacher_run == teachers.loc[teachers.final_acc.idxmax(), "run_id"]
    assert (study.status().state == "done").all()
    assert len(store_mod.load(tmp_path)) == 4



def test_study_trains_seed_major_so_each_finished_seed_is_a_paired_table(tmp_path, monkeypatch):
    import kdnb.train

    order = []
    monkeypatch.setattr(kdnb.train, "train_run", lambda cfg, *a, **k: order.append((cfg.method, cfg.seed)) or
                        {"status": "done"})
    params = Params(store=str(tmp_path), dataset="synthetic", students=["resnet8"], methods=["baseline", "dml"],
                    seeds=[0, 1], epochs=1)
    Study(params).run(progress=False)
    assert order == [("baseline", 0), ("dml", 0), ("baseline", 1), ("dml", 1)]

@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "cifar10_small.npz").exists(), reason="no CIFAR-10 .npz in KDNB_DATA")
def test_resnet8_learns_real_cifar10(tmp_path):
    """Three epochs of ResNet-8 on 300 images per class of real CIFAR-10, tested on 2,000 images."""
    cfg = RunConfig.from_dict({"method": "baseline", "student": "resnet8", "epochs": 3,
                               "data": {"dataset": "cifar10", "train_per_class": 300, "test_per_class": 200}})
    rec = train_run(cfg, Store(tmp_path), "cpu", progress=False, data_root=str(SHARED))
    assert rec["final_acc"] > 25.0  # chance is 10 %; measured 34.1 and 33.6 % (seeds 0, 1)


def test_history_carries_each_loss_term_and_they_add_up_to_the_loss(tmp_path):
    s = Store(tmp_path)
    teacher = train_run(_cfg(epochs=1), s, "cpu", progress=False)["run_id"]
    rec = train_run(_cfg(method="hinton", teacher="resnet8", teacher_run=teacher, epochs=2), s, "cpu", progress=False)
    for h in rec["history"]:
        assert {k for k in h if k.startswith("loss_")} == {"loss_ce", "loss_kd"}
        assert h["loss_ce"] + h["loss_kd"] == pytest.approx(h["train_loss"], rel=1e-5)


def test_evaluation_does_not_depend_on_the_batch_or_the_layout():
    from kdnb.data import DeviceData, make_splits
    from kdnb.models import build
    from kdnb.train import evaluate

    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # kernels of other batch sizes and layouts differ in the last bits only
    try:
        torch.manual_seed(0)
        model, test = build("resnet8"), DeviceData(make_splits(_cfg().data)[1], "cpu", augment=False)
        ref = evaluate({"m": model}, test, 1000)
        assert evaluate({"m": model}, test, 7) == ref  # 100 images: batches of 7 and a remainder of 2
        model.to(memory_format=torch.channels_last)
        assert evaluate({"m": model}, test, 7, memory_format=torch.channels_last) == ref
        assert model.training  # its mode is restored
    finally:
        torch.set_default_dtype(dtype)


def test_class_accuracy_counts_each_true_class():
    from kdnb.data import DeviceData, Split
    from kdnb.train import class_accuracy, evaluate

    # four images; the "model" predicts class 0 for all but the last, which it calls class 2
    images = torch.zeros(4, 32, 32, 3, dtype=torch.uint8)
    images[3] = 1
    data = DeviceData(Split(images.numpy(), [0, 0, 1, 2]), "cpu", augment=False)

    class Fixed(torch.nn.Module):
        def forward(self, x):
            out = torch.zeros(len(x), 4)
            out[:, 0] = 1.0
            out[x.flatten(1).sum(1) > 0, 2] = 2.0
            return out

    acc = class_accuracy(Fixed(), data, batch_size=3)  # batches of 3 and 1
    assert acc[:3] == [100.0, 0.0, 100.0] and acc[3] != acc[3]  # class 3 has no test image: NaN
    weighted = sum(a * n for a, n in zip(acc[:3], [2, 1, 1], strict=True)) / 4  # by class size
    assert evaluate({"m": Fixed()}, data, 3)["m"] == 75.0 == weighted


def test_a_finished_record_carries_per_class_accuracy(tmp_path):
    rec = train_run(_cfg(epochs=1), Store(tmp_path), "cpu", progress=False)
    assert len(rec["class_acc"]) == 10
    # every class has synthetic_test images, so the run's accuracy is the mean over classes
    assert rec["final_acc"] == pytest.approx(sum(rec["class_acc"]) / 10)
    row = store_mod.load(tmp_path).iloc[0]
    assert row["class_acc"] == rec["class_acc"] and row["precision"] == rec["config"]["precision"]


# --- resume on another device --------------------------------------------------------------------
# No GPU here: "meta" stands in for one. A tensor on meta has a shape and no values, as a CUDA tensor
# has none the CPU can use, and torch.Generator.set_state refuses it as it refuses a CUDA tensor.


def _gpu_like_load(monkeypatch):
    """safe_torch_load as a GPU machine answers it: tensors land on the device when one is asked for."""
    import kdnb.train

    real = store_mod.safe_torch_load

    def load(path, map_location="cpu"):
        obj = real(path)
        if map_location in (None, "cpu"):
            return obj
        return torch.utils._pytree.tree_map(lambda t: t.to("meta") if isinstance(t, torch.Tensor) else t, obj)

    monkeypatch.setattr(kdnb.train, "safe_torch_load", load)


def _meta_method_to(monkeypatch):
    """Method.to makes a generator on the device, which meta lacks; training replaces it by a CPU one."""
    from kdnb.methods import Method

    real = Method.to
    monkeypatch.setattr(Method, "to", lambda self, d: real(self, d) if torch.device(d).type != "meta"
                        else (self.models.to(d), self)[1])


@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter")
def test_checkpoints_and_stages_load_as_on_a_gpu(tmp_path, monkeypatch, caplog):
    _gpu_like_load(monkeypatch)
    cfg = _cfg(epochs=2)
    whole, parts = Store(tmp_path / "whole"), Store(tmp_path / "parts")
    train_run(cfg, whole, "cpu", progress=False)
    assert train_run(cfg, parts, "cpu", progress=False, max_epochs=1)["status"] == "partial"
    rec = train_run(cfg, parts, "cpu", progress=False)
    assert "unusable" not in caplog.text and [s["from_epoch"] for s in rec["segments"]] == [0, 1]
    w1, w2 = _weights(whole, cfg.run_id), _weights(parts, cfg.run_id)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    # a stored FitNet stage 1 is reused, not retrained
    tid = train_run(_cfg(epochs=1), parts, "cpu", progress=False)["run_id"]
    fitnet = _cfg(method="fitnet", teacher="resnet8", teacher_run=tid, epochs=2)
    train_run(fitnet, parts, "cpu", progress=False)
    rec = train_run(fitnet.replace(lr=0.05), parts, "cpu", progress=False)
    assert "reused" in rec["history"][0] and "unusable" not in caplog.text


def _draws(monkeypatch):
    """Record every draw of the data stream, made where the generator lives."""
    import kdnb.data

    seen = []

    class Recording:
        def __getattr__(self, name):
            fn = getattr(torch, name)
            if name not in ("randperm", "randint", "rand"):
                return fn

            def draw(*args, **kw):
                out = fn(*args, **kw)
                seen.append(out.clone())
                return out
            return draw

    monkeypatch.setattr(kdnb.data, "torch", Recording())
    return seen


@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter")
def test_a_cpu_checkpoint_resumes_on_another_device_with_the_same_data_stream(tmp_path, monkeypatch, caplog):
    from kdnb.train import _resume, _setup

    _meta_method_to(monkeypatch)
    cfg = _cfg(epochs=3)
    store = Store(tmp_path)
    assert train_run(cfg, store, "cpu", progress=False, max_epochs=1)["status"] == "partial"
    streams = {}
    for device in ("cpu", "meta"):
        run = _setup(cfg, store, torch.device(device), None, None)
        _resume(run)
        assert (run.stage, run.epoch) == (0, 1) and "unusable" not in caplog.text
        assert next(run.method.models.parameters()).device.type == device
        seen = _draws(monkeypatch)
        xs = [x for x, _ in run.train_data.batches(cfg.batch_size, run.data_gen)]
        assert xs[0].device.type == device and all(d.device.type == "cpu" for d in seen)
        streams[device] = (seen, run.data_gen.get_state(), run.method.generator.get_state())
    (cpu_draws, cpu_data, cpu_method), (meta_draws, meta_data, meta_method) = streams["cpu"], streams["meta"]
    assert len(cpu_draws) == len(meta_draws) == 1 + 2 * 10  # randperm, then randint and rand per batch: 300 / 32
    assert all(torch.equal(a, b) for a, b in zip(cpu_draws, meta_draws, strict=True))
    assert torch.equal(cpu_data, meta_data) and torch.equal(cpu_method, meta_method)
