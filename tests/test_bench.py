"""The speed benchmark runs and reports what it promises; the conventional loop's augmentation is the protocol's.

No timing assertions: speed is measured by ``kdnb bench``, never by a test.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kdnb.bench import benchmark
from kdnb.data import DeviceData, Split, crop_flip, reflect_pad
from kdnb.store import native_bf16

bench, conventional = benchmark("bench"), benchmark("conventional")


def test_bench_runs_on_the_cpu_and_reports_the_json_keys(capsys, tmp_path):
    out = tmp_path / "bench.json"
    rc = bench.main(json_out=True, device="cpu", steps=1, pairs=["resnet8:resnet8"], repeats=2, data="random",
                    out=str(out), eval_repeats=1)
    assert rc == 0
    r = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text())["pairs"].keys() == r["pairs"].keys()
    for key in ("device", "device_name", "torch", "threads", "date", "steps", "load_before", "load_after"):
        assert key in r
    assert r["native_bf16"] == native_bf16()  # whether the CPU computes bf16 natively
    assert r["torch"] == torch.__version__ and r["steps"] == 1 and r["device_name"].startswith("CPU")
    pr = r["pairs"]["resnet8<-resnet8"]
    for key in ("kdnb_images_per_s", "reference_images_per_s", "speedup", "eval_speedup", "kdnb_variant",
                "best_variant"):
        assert key in pr
    assert set(pr["variants"]) == set(bench.CPU_VARIANTS)
    for v in pr["variants"].values():
        assert v["images_per_s"] > 0 and len(v["repeats_images_per_s"]) == 2 and v["run_s"] > 0
        assert v["speedup_paired"] > 0 and len(v["repeats_eval_images_per_s"]) == 1 and v["eval_speedup_paired"] > 0
    assert "_bf16" not in pr["kdnb_variant"]  # the headline keeps fp32 numerics
    assert r["paper_grid"]["runs"] == 1415 and r["paper_grid"]["reference_hours"] is None  # needs both families


def test_bench_table_and_failed_variants_are_reported(capsys):
    rc = bench.main(device="cpu", steps=1, pairs=["resnet8:resnet8"], repeats=1, data="random",
                    variants=["conventional", "kdnb", "fused2", "nonsense"], eval_repeats=1)
    text = capsys.readouterr().out
    assert rc == 1  # a failed variant makes the exit status non-zero
    assert "torch " + torch.__version__ in text and "CPU" in text and "nonsense" in text and "failed" in text
    assert f"CPU native bf16 (AMX or AVX-512 BF16): {'yes' if native_bf16() else 'no'}" in text
    assert "evaluation" in text.split("fp32 kdnb")[1]  # the eval ratio of the headline variant
    assert "fused2" in text.split("failed")[0]  # the fused variant ran


def test_paper_grid_is_the_studys_1415_runs_and_its_flops():
    grid = bench.paper_grid()
    assert len(grid) == 1415
    # time per image = MFLOP per image: the projection returns the grid's MFLOP (perf-notes §2: 1.59e19 FLOP)
    rates = {"resnet": ("resnet8", 1 / bench._kd_flops("resnet8"), 1 / bench.FWD["resnet8"]),
             "wrn": ("wrn16_2", 1 / bench._kd_flops("wrn16_2"), 1 / bench.FWD["wrn16_2"])}
    flop = bench.grid_seconds(rates) * 1e6
    assert 1.55e19 < flop < 1.63e19
    assert bench.run_seconds(1000.0, 10_000.0) == pytest.approx(200 * (50 + 1))


def _views(img: np.ndarray) -> torch.Tensor:
    """All 162 crops/flips of one HWC image, as ToTensor would give them: (162, 3, 32, 32) in [0, 1]."""
    padded = reflect_pad(torch.from_numpy(img).permute(2, 0, 1)[None])
    v = torch.arange(162)
    pos = v // 2
    views = crop_flip(padded.expand(162, -1, -1, -1), pos // 9, pos % 9, (v % 2).bool())
    return views.float() / 255


def test_conventional_pipeline_crops_and_flips_within_the_protocol():
    rng = np.random.RandomState(0)
    img = rng.randint(0, 256, (32, 32, 3), dtype=np.uint8)
    views = _views(img).flatten(1)
    loader = conventional.make_loader(np.repeat(img[None], 1024, 0), np.zeros(1024, np.int64), batch_size=128)
    seen = []
    for x, y in loader:
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32) and len(x) == len(y) <= 128
        assert 0.0 <= x.min() and x.max() <= 1.0
        match = (x.flatten(1)[:, None, :] == views[None]).all(-1)  # (B, 162): which view each image is
        assert (match.sum(1) >= 1).all()  # every output is a reflect-pad-4 crop, flipped or not
        seen.append(match.float().argmax(1))
    seen = torch.cat(seen)
    flips, offsets = seen % 2, seen // 2
    assert 0.45 < flips.float().mean() < 0.55
    assert len(offsets.unique()) == 81  # every one of the 9 x 9 offsets occurs


def test_conventional_and_kdnb_batches_agree_in_distribution():
    """perf-notes §8 gate 2: PIL crop/flip and DeviceData's batched crop/flip draw the same views uniformly."""
    rng = np.random.RandomState(1)
    img = rng.randint(0, 256, (32, 32, 3), dtype=np.uint8)
    views = _views(img).flatten(1)
    x, y = np.repeat(img[None], 2048, 0), np.zeros(2048, np.int64)
    sources = {"kdnb": DeviceData(Split(x, y), "cpu").batches(256, torch.Generator().manual_seed(0)),
               "conventional": conventional.make_loader(x, y, 256)}
    counts = {}
    for name, batches in sources.items():
        idx = torch.cat([(b.flatten(1)[:, None, :] == views[None]).all(-1).float().argmax(-1) for b, _ in batches])
        counts[name] = torch.bincount(idx // 2, minlength=81).float()
    for c in counts.values():  # 2048 draws over 81 offsets: about 25 each
        assert c.sum() == 2048 and c.min() > 5 and c.max() < 55


def test_conventional_hinton_step_learns_and_syncs():
    torch.manual_seed(0)
    from kdnb.models import build

    student, teacher = build("resnet8"), build("resnet8").eval()
    opt = conventional.sgd(student)
    x, y = torch.rand(16, 3, 32, 32), torch.randint(0, 10, (16,))
    loss, acc = conventional.hinton_step(student, teacher, opt, x, y, torch.device("cpu"))
    assert isinstance(loss, float) and isinstance(acc, float) and 0 <= acc <= 100
    loss_b, _ = conventional.hinton_step(student, None, opt, x, y, torch.device("cpu"))
    assert np.isfinite(loss_b)


def test_the_benchmarks_are_found_from_the_package_and_are_not_in_it():
    assert Path(conventional.__file__).parent.name == "benchmarks" and bench.fused.__name__ == "benchmarks.fused"
    assert not (Path(benchmark.__code__.co_filename).parent / "fused.py").exists()


def test_kdnb_bench_command_prints_one_json_object(capsys):
    from kdnb.cli import main

    assert main(["bench", "--json", "--device", "cpu", "--steps", "1", "--pairs", "resnet8:resnet8"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["pairs"]["resnet8<-resnet8"]["speedup"] > 0 and r["device"] == "cpu"


def test_each_variant_is_timed_under_its_own_tf32_flags(monkeypatch):
    """The flags are process-global and every set-up runs before any timing: a variant whose set-up turns TF32
    on (as build_method does for bf16) must not leave it on for the fp32 variants timed after it."""
    flags = lambda: (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)  # noqa: E731
    seen: dict[str, set] = {}

    def fake_setup(p, variant, workers):
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = "_bf16" in variant

        def step():
            seen.setdefault(variant, set()).add(flags())

        def eval_pass():
            seen.setdefault(variant + " eval", set()).add(flags())
            return 1.0

        return step, 1, eval_pass, step

    monkeypatch.setattr(bench, "setup", fake_setup)
    before = flags()
    variants = ["conventional", "kdnb_cl", "kdnb_bf16_cl", "kdnb"]
    out = bench.measure_pair(type("P", (), {"device": torch.device("cpu")})(), variants, steps=2, repeats=2,
                             warmup=1, workers=0)
    assert all("images_per_s" in out[v] for v in variants)
    assert flags() == before  # restored
    assert seen == {v + k: {bench.tf32_flags(v)} for v in variants for k in ("", " eval")}
    assert bench.tf32_flags("conventional") == (True, False)  # torch's defaults, as a researcher's loop runs
    assert bench.tf32_flags("kdnb_cl") == bench.tf32_flags("kdnb") == (False, False)  # the paper's fp32
    assert bench.tf32_flags("kdnb_bf16_cl_compile") == bench.tf32_flags("fused5") == (True, True)


def test_the_cuda_bench_times_the_paper_configuration_and_real_compiled_epochs():
    from kdnb.config import RunConfig

    assert "kdnb_cl" in bench.CUDA_VARIANTS  # fp32, channels_last, TF32 off: what the paper profile trains
    assert RunConfig().precision == "fp32" and RunConfig().channels_last
    arrays = {"x_train": np.zeros((70, 32, 32, 3), np.uint8), "y_train": np.arange(70) % 10,
              "x_test": np.zeros((20, 32, 32, 3), np.uint8), "y_test": np.arange(20) % 10}
    p = bench.Pair("resnet8:resnet8", torch.device("cpu"), arrays, batch_size=32)
    batches = []
    real = bench.train_step
    bench.train_step = lambda *a, **k: (batches.append(len(a[5])), real(*a, **k))
    try:
        *_, epoch = bench._setup_kdnb(p, "fp32", True, "default")
        assert bench._setup_kdnb(p, "fp32", True, None)[3] is None  # eager variants need no epoch timing
        epoch()
    finally:
        bench.train_step = real
    assert batches == [32, 32, 6]  # every batch of the epoch, the last smaller one included



def test_the_cache_variant_trains_as_the_plain_one_and_the_device_plan_times_both(monkeypatch):
    from benchmarks import device_plan

    assert {"kdnb_cl", "kdnb_cl_cache", "kdnb_cl_cache_compile_ro"} <= set(device_plan.BENCH_VARIANTS)
    assert set(device_plan.BENCH_VARIANTS) <= set(bench.CUDA_VARIANTS)
    arrays = {"x_train": np.random.RandomState(0).randint(0, 256, (20, 32, 32, 3), np.uint8),
              "y_train": np.arange(20) % 10, "x_test": np.zeros((10, 32, 32, 3), np.uint8), "y_test": np.arange(10)}
    p = bench.Pair("resnet8:resnet8", torch.device("cpu"), arrays, batch_size=8)
    methods, real = [], bench.build_method
    monkeypatch.setattr(bench, "build_method", lambda *a: methods.append(real(*a)) or methods[-1])
    for cache in (False, True):
        step = bench._setup_kdnb(p, "fp32", True, None, cache)[0]
        for _ in range(3):  # two full batches, then the next epoch's first (the smaller last batch is skipped)
            step()
    assert p.tables["fp32"].shape == (20 * 162, 10)
    plain, cached = (m.models["student"].state_dict() for m in methods)
    assert methods[0].cached_logits is None and methods[1].cached_logits is not None
    for k in plain:  # the cached logits differ from a forward's by float rounding only
        torch.testing.assert_close(plain[k], cached[k], rtol=1e-4, atol=1e-5)
