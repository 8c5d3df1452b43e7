"""Label noise, class imbalance, subsets and the batched augmentation, against DECISIONS.md."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from kdnb import data
from kdnb.data import DataSpec, DeviceData, Split

SHARED = Path(os.environ.get("KDNB_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
needs_cifar = pytest.mark.skipif(not (SHARED / "cifar10_small.npz").exists(), reason="no CIFAR-10 .npz in KDNB_DATA")


def test_label_noise_is_the_lab_code():
    labels = np.arange(1000) % 10
    noisy = data.symmetric_label_noise(labels, 0.4, 10, seed=12345)
    rng = np.random.RandomState(12345)  # the decision's recipe, step by step
    mask = rng.rand(1000) <= 0.4
    expected = labels.copy()
    expected[mask] = rng.choice(10, mask.sum())
    np.testing.assert_array_equal(noisy, expected)
    assert (labels == np.arange(1000) % 10).all()  # input untouched


def test_label_noise_rates():
    labels = np.arange(50000) % 10
    for sigma in (0.2, 0.4, 0.6):
        flipped = (data.symmetric_label_noise(labels, sigma, 10) != labels).mean()
        assert abs(flipped - sigma * 0.9) < 0.01  # the new label may equal the old: sigma (K-1)/K
    np.testing.assert_array_equal(data.symmetric_label_noise(labels, 0.0, 10), labels)
    with pytest.raises(ValueError, match="1.5"):
        data.symmetric_label_noise(labels, 1.5, 10)


def test_imbalance_counts_match_decisions_table():
    table = {0.2: [5000, 858, 557, 439, 375, 333, 304, 282, 264, 250],
             0.6: [5000, 1166, 720, 539, 440, 376, 331, 297, 271, 250],
             1.0: [5000, 1607, 957, 682, 529, 433, 366, 317, 280, 250],
             2.0: [5000, 3173, 1972, 1289, 892, 648, 490, 382, 306, 250]}
    for gamma, counts in table.items():
        assert data.imbalance_counts(gamma) == counts
    scaled = data.imbalance_counts(1.0, n_max=1000, n_min=50)
    assert scaled[0] == 1000 and scaled[-1] == 50 and scaled == sorted(scaled, reverse=True)
    with pytest.raises(ValueError):
        data.imbalance_counts(0.0)


def test_imbalance_keeps_first_images_of_each_class():
    rng = np.random.RandomState(0)
    labels = rng.randint(0, 10, size=60000)
    idx = data.imbalance_indices(labels, 1.0)
    counts = np.bincount(labels[idx], minlength=10)
    assert counts.tolist() == data.imbalance_counts(1.0)
    for c in range(10):  # the first n_c in file order
        np.testing.assert_array_equal(idx[labels[idx] == c], np.flatnonzero(labels == c)[:counts[c]])


def test_reflect_pad_equals_torch_reflect():
    x = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    expected = F.pad(x.float(), (4, 4, 4, 4), mode="reflect")
    assert torch.equal(data.reflect_pad(x).float(), expected)


def test_crop_flip_is_a_window_of_the_padded_image():
    padded = torch.arange(2 * 1 * 40 * 40, dtype=torch.float32).reshape(2, 1, 40, 40)
    out = data.crop_flip(padded, torch.tensor([0, 8]), torch.tensor([3, 5]), torch.tensor([False, True]))
    assert torch.equal(out[0], padded[0, :, 0:32, 3:35])
    assert torch.equal(out[1], padded[1, :, 8:40, 5:37].flip(-1))


def _device_data(n=256):
    x = np.random.RandomState(1).randint(0, 256, size=(n, 32, 32, 3)).astype(np.uint8)
    return DeviceData(Split(x, np.arange(n) % 10), "cpu")


def test_augmented_batches_stay_inside_the_padded_image_and_flip_half_the_time():
    dd = _device_data()
    padded = dd.padded.float() / 255
    g = torch.Generator().manual_seed(0)
    flips = total = 0
    for _ in range(4):
        for xb, yb in dd.batches(64, g):
            assert xb.shape[1:] == (3, 32, 32) and 0 <= xb.min() and xb.max() <= 1
            total += len(yb)
    # every crop is one of the 81 windows x 2 flips of its image
    gen = torch.Generator().manual_seed(3)
    xb, yb = next(dd.batches(32, gen, shuffle=True))
    idx_gen = torch.Generator().manual_seed(3)
    order = torch.randperm(len(dd), generator=idx_gen)[:32]
    for img, i in zip(xb, order, strict=True):
        windows = padded[i].unfold(1, 32, 1).unfold(2, 32, 1).permute(1, 2, 0, 3, 4).reshape(81, 3, 32, 32)
        plain = (windows - img).abs().amax((1, 2, 3)).min()
        mirrored = (windows.flip(-1) - img).abs().amax((1, 2, 3)).min()
        assert min(plain, mirrored) < 1e-6
        flips += bool(mirrored < 1e-6 and plain > 1e-6)
    assert total == 4 * len(dd)
    assert 6 <= flips <= 26  # about half of 32 (binomial, p = 0.5)


def test_same_generator_seed_gives_the_same_batches():
    dd = _device_data()
    a = [x for x, _ in dd.batches(100, torch.Generator().manual_seed(7))]
    b = [x for x, _ in dd.batches(100, torch.Generator().manual_seed(7))]
    c = [x for x, _ in dd.batches(100, torch.Generator().manual_seed(8))]
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])
    assert [len(x) for x in a] == [100, 100, 56]  # the remainder is a smaller batch


def test_synthetic_splits_and_subsets():
    tr, te = data.make_splits(DataSpec(dataset="synthetic", synthetic_train=30, synthetic_test=5))
    assert tr.x.shape == (300, 32, 32, 3) and tr.x.dtype == np.uint8 and len(te.y) == 50
    tr2, _ = data.make_splits(DataSpec(dataset="synthetic", synthetic_train=30, train_per_class=4))
    assert np.bincount(tr2.y).tolist() == [4] * 10


def test_missing_data_is_one_clear_error(tmp_path, monkeypatch):
    import torchvision

    def offline(*a, **k):
        raise RuntimeError("Dataset not found or corrupted")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(data.DataNotFound, match=str(tmp_path)):
        data.load_arrays("cifar10", tmp_path)
    with pytest.raises(ValueError, match="cifar10, cifar100, synthetic"):
        data.load_arrays("mnist", tmp_path)


@needs_cifar
def test_small_npz_is_the_first_images_of_the_full_set():
    tr, te = data.make_splits(DataSpec(train_per_class=1000, test_per_class=200), SHARED)
    assert len(tr.y) == 10000 and len(te.y) == 2000
    assert te.y[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]  # the original test_batch order
    assert np.bincount(tr.y).tolist() == [1000] * 10
