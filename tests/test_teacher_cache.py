"""The teacher-logit cache: every view of every training image, looked up instead of a teacher forward.

The augmentation draws one of 9 x 9 crop offsets and a flip per image (protocol § Data), so an image has
162 views; a frozen teacher in eval mode is a function of the view, so its logits can be computed once.
"""

import shutil

import pytest
import torch

from kdnb.config import ConfigError, RunConfig
from kdnb.data import VIEWS, DeviceData, make_splits
from kdnb.methods import METHODS
from kdnb.models import build
from kdnb.store import Store, safe_torch_load
from kdnb.train import _teacher_logits, build_method, train_run, view_logits

SYNTH = {"dataset": "synthetic", "synthetic_train": 2, "synthetic_test": 2}  # 20 training images


def _cfg(**kw):
    return RunConfig.from_dict({"method": "baseline", "student": "resnet8", "epochs": 2, "batch_size": 8,
                                "data": SYNTH, **kw})


def _hinton(teacher_run, **kw):
    return _cfg(method="hinton", teacher="resnet8", teacher_run=teacher_run, **kw)


def _train_data() -> DeviceData:
    return DeviceData(make_splits(_cfg().data)[0], "cpu")


@pytest.fixture
def float64():
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


def test_every_batch_image_is_the_view_its_index_names():
    data = _train_data()
    every = data.all_views(torch.arange(len(data)))
    assert every.shape == (len(data) * VIEWS, 3, 32, 32) and VIEWS == 162
    gen, seen = torch.Generator().manual_seed(0), set()
    for _ in range(3):
        for x, y, views in data.batches(8, gen, views=True):
            assert torch.equal(every[views], x) and torch.equal(data.y[views // VIEWS], y)
            seen.update((views % VIEWS).tolist())
    assert len(seen) > 30  # many different views drawn, each found where its index says
    assert every[:VIEWS].flatten(1).unique(dim=0).shape[0] == VIEWS  # an image's 162 views all differ


def test_cached_logits_equal_a_teacher_forward_on_the_same_augmented_batch():
    torch.manual_seed(1)
    teacher = build("resnet8").eval().requires_grad_(False)
    method = build_method(_hinton("0" * 16), teacher, torch.device("cpu"))
    data = _train_data()
    table = view_logits(method, data, 128)
    assert table.shape == (len(data), VIEWS, 10) and table.dtype == torch.float32
    flat, gen = table.flatten(0, 1), torch.Generator().manual_seed(0)
    with torch.no_grad():
        for x, _, views in data.batches(8, gen, views=True):
            # different batch sizes only change float rounding: fp32 error of a few ulps per layer
            torch.testing.assert_close(flat[views], teacher(x), rtol=1e-4, atol=1e-5)


def test_hinton_with_the_cache_trains_as_without_it_and_shares_it_across_seeds(tmp_path, monkeypatch, float64):
    import kdnb.train

    store, other = Store(tmp_path), Store(tmp_path / "plain")
    teacher = _cfg(epochs=1)
    train_run(teacher, store, "cpu", progress=False)
    shutil.copytree(store.run_dir(teacher.run_id), other.run_dir(teacher.run_id))  # the same teacher in both
    plain, cached = _hinton(teacher.run_id), _hinton(teacher.run_id, teacher_cache=True)
    assert plain.teacher_cache is None and cached.run_id == plain.run_id  # a switch of how, not what
    a = train_run(plain, other, "cpu", progress=False)  # the default on the CPU: no cache
    b = train_run(cached, store, "cpu", progress=False)
    assert "teacher_cache" not in a["segments"][0] and not (tmp_path / "plain" / "logits").exists()
    key = b["segments"][0]["teacher_cache"]
    assert safe_torch_load(tmp_path / "logits" / f"{key}.pt").shape == (20, VIEWS, 10)
    for h1, h2 in zip(a["history"], b["history"], strict=True):
        torch.testing.assert_close(h1["train_loss"], h2["train_loss"], rtol=1e-9, atol=0)
        assert h1["train_acc"] == h2["train_acc"]
    w1, w2 = (safe_torch_load(s.model_path(plain.run_id)) for s in (other, store))
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], rtol=1e-9, atol=1e-12)

    def unused(*args):
        raise AssertionError("the stored cache was not reused")

    monkeypatch.setattr(kdnb.train, "view_logits", unused)
    c = train_run(cached.replace(seed=1), store, "cpu", progress=False)
    assert c["status"] == "done" and c["segments"][0]["teacher_cache"] == key


@pytest.mark.parametrize("name", [n for n, m in METHODS.items() if m.uses_teacher and m.plugin is None])
def test_only_methods_that_read_nothing_but_the_batch_logits_read_the_cache(name, tmp_path):
    """Poisoned cached logits (NaN) reach the loss exactly where a method reads the teacher's logits on the batch."""
    cfg = RunConfig.from_dict({"method": name, "student": "resnet8", "teacher": "resnet8", "teacher_run": "0" * 16,
                               "epochs": 10, "batch_size": 8, "data": SYNTH})
    torch.manual_seed(1)
    method = METHODS[name](cfg, build("resnet8").eval().requires_grad_(False))
    method.train()
    x, y = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0)), torch.arange(8)
    poisoned = []
    for stage in method.stages():
        method.generator.manual_seed(0)
        method.cached_logits = None
        clean = sum(method.loss(x, y, stage, 0)[0].values())
        method.generator.manual_seed(0)
        method.cached_logits = (x, torch.full((8, 10), float("nan")))
        dirty = sum(method.loss(x, y, stage, 0)[0].values())
        assert torch.isfinite(clean) and (dirty.isnan() or torch.equal(clean, dirty))
        poisoned.append(bool(dirty.isnan()))
    # the cache serves the final (Hinton) stage of Hinton, FitNet and FSP; no stage of any other method
    assert poisoned == [False] * (len(poisoned) - 1) + [method.teacher_logit_cache]
    assert method.teacher_logit_cache == (name in ("hinton", "fitnet", "fsp"))
    if not method.teacher_logit_cache:  # asked for, the cache is still not made (Hinton's: the test above)
        assert _teacher_logits(cfg.replace(teacher_cache=True), Store(tmp_path), method, _train_data()) is None
        assert not (tmp_path / "logits").exists()


class Forward(Exception):
    """A teacher forward was asked for."""


def test_a_cache_that_cannot_fit_is_refused_in_one_line_before_it_is_made(tmp_path, monkeypatch):
    import os

    torch.manual_seed(1)
    cfg = _hinton("0" * 16, teacher_cache=True)
    method = build_method(cfg, build("resnet8").eval().requires_grad_(False), torch.device("cpu"))
    forwards = []

    def forward(x):
        forwards.append(len(x))
        raise Forward

    monkeypatch.setattr(method, "teacher_forward", forward)
    need = 20 * VIEWS * 10 * 4  # 20 images x 162 views x 10 fp32 logits; the cache may take half the free memory
    for pages, fits in ((2 * need // 4096, False), (2 * need // 4096 + 1, True)):
        monkeypatch.setattr(os, "sysconf", lambda name, pages=pages: 4096 if name == "SC_PAGE_SIZE" else pages)
        with pytest.raises(Forward if fits else ConfigError) as err:
            _teacher_logits(cfg, Store(tmp_path), method, _train_data())
        if not fits:  # refused in one line before anything is computed or written
            assert "\n" not in str(err.value) and "teacher_cache: false" in str(err.value) and "MiB" in str(err.value)
            assert forwards == [] and not (tmp_path / "logits").exists()
    assert forwards == [VIEWS]  # a page more and it fits: the build starts
