"""Whole-network capture (compile "reduce-overhead": CUDA graphs): what the CPU can prove of it.

CUDA graphs replay fixed shapes. The loop captures each network once per input shape (dynamic=False): the
full batches, the epoch's last smaller batch and the evaluation batches, none dropped or padded. Here a
recording backend stands in for the CUDA one with the same options: every graph it is handed must have
static shapes, exactly those batch sizes, and the run must equal the eager run.
"""

import pytest
import torch

from kdnb.config import ConfigError, RunConfig
from kdnb.store import Store, safe_torch_load
from kdnb.train import train_run

SYNTH = {"dataset": "synthetic", "synthetic_train": 5, "synthetic_test": 2}  # 50 training, 20 test images


def _cfg(**kw):
    return RunConfig.from_dict({"method": "baseline", "student": "resnet8", "epochs": 2, "batch_size": 32,
                                "data": SYNTH, **kw})


@pytest.mark.parametrize("bad", ["max-autotune", 1, "yes"])
def test_compile_takes_only_its_modes(bad):
    with pytest.raises(ConfigError, match="compile .* must be false, true or reduce-overhead"):
        _cfg(compile=bad)
    assert _cfg(compile="reduce-overhead").run_id == _cfg().run_id  # how, not what


def test_capture_on_the_cpu_is_refused_in_one_line(tmp_path):
    with pytest.raises(ConfigError) as err:
        train_run(_cfg(compile="reduce-overhead"), Store(tmp_path), "cpu", progress=False)
    assert "\n" not in str(err.value) and "needs a CUDA device, not cpu" in str(err.value)
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("record.json"))


def test_captured_runs_see_static_shapes_and_equal_the_eager_run(tmp_path, monkeypatch):
    import kdnb.train

    real, graphs = kdnb.train.compile_options, []

    def record(gm, inputs):  # each graph's inputs as traced (sizes symbolic where dynamic), as CUDA would capture it
        values = [n.meta["example_value"] for n in gm.graph.nodes if n.op == "placeholder"]
        graphs.append([v.shape if isinstance(v, torch.Tensor) else (v,) for v in values])
        return gm.forward

    def options(cfg, device):
        opts = real(cfg, torch.device("cuda"))  # the options a CUDA run gets, its backend swapped for the recorder
        assert opts.pop("mode") == "reduce-overhead"
        return {**opts, "backend": record}

    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # eager and traced runs then agree far inside the tolerance
    try:
        torch._dynamo.reset()
        eager = train_run(_cfg(), Store(tmp_path / "eager"), "cpu", progress=False)
        monkeypatch.setattr(kdnb.train, "compile_options", options)
        captured = train_run(_cfg(compile="reduce-overhead"), Store(tmp_path / "captured"), "cpu", progress=False)
    finally:
        torch.set_default_dtype(before)
        torch._dynamo.reset()
    dims = [d for g in graphs for shape in g for d in shape]
    assert graphs and all(type(d) is int for d in dims)  # no symbolic size: every graph has one shape
    images = {shape[0] for g in graphs for shape in g if tuple(shape[1:]) == (3, 32, 32)}
    assert images == {32, 50 - 32, 20}  # full batches, the last smaller one, the test set: each its own graph
    assert eager["run_id"] == captured["run_id"]
    for h1, h2 in zip(eager["history"], captured["history"], strict=True):
        torch.testing.assert_close(h1["train_loss"], h2["train_loss"], rtol=1e-9, atol=0)
        assert (h1["train_acc"], h1["test_acc"]) == (h2["train_acc"], h2["test_acc"])
    w1, w2 = (safe_torch_load(Store(tmp_path / k).model_path(eager["run_id"])) for k in ("eager", "captured"))
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], rtol=1e-9, atol=1e-12)
