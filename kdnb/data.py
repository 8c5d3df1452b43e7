"""Data: sources (local .npz, torchvision CIFAR-10/100, synthetic), label noise, class imbalance,
per-class subsets, and device-resident batches with batched augmentation.

Images are uint8 NHWC on the host and uint8 NCHW on the training device; the model sees float
images in [0, 1] with no mean/std standardisation (paper §III; protocol § Data).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

DATASETS = ("cifar10", "cifar100", "synthetic")
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "synthetic": 10}
PAD = 4  # reflect padding of the paper's augmentation (paper §III; protocol § Data)
VIEWS = (2 * PAD + 1) ** 2 * 2  # an image's augmented views: 9 x 9 crop offsets x 2 flips
NOISE_SEED = 12345  # one noise draw for the teacher and every student seed (protocol § Label noise)
N_MAX, N_MIN = 5000, 250  # largest and smallest class of the imbalanced sets (protocol § Class imbalance)


class DataNotFound(RuntimeError):
    """The data set is not on disk and cannot be downloaded."""


@dataclass
class Split:
    x: np.ndarray  # (N, 32, 32, 3) uint8
    y: np.ndarray  # (N,) int64


# ---------------------------------------------------------------------------------------------
# Label noise and class imbalance (protocol § Label noise, § Class imbalance)


def symmetric_label_noise(labels: np.ndarray, sigma: float, num_classes: int, seed: int = NOISE_SEED) -> np.ndarray:
    """Redraw each label with probability sigma uniformly from all classes (it may stay the same).

    Exactly the authors' lab code: ``mask = rng.rand(N) <= sigma``; ``labels[mask] = rng.choice(K, n)``.
    """
    if not 0.0 <= sigma <= 1.0:
        raise ValueError(f"noise rate {sigma} outside [0, 1]")
    labels = np.asarray(labels, dtype=np.int64).copy()
    if sigma == 0:
        return labels
    rng = np.random.RandomState(seed)
    mask = rng.rand(len(labels)) <= sigma
    labels[mask] = rng.choice(num_classes, int(mask.sum()))
    return labels


def imbalance_counts(gamma: float, n_max: int = N_MAX, n_min: int = N_MIN, num_classes: int = 10) -> list[int]:
    """Per-class counts n_c = round(a / (b + c^gamma)), c = label + 1, with n_1 = n_max, n_K = n_min.

    a, b solve a - n_max*b = n_max and a - n_min*b = n_min*K^gamma (protocol § Class imbalance).
    """
    if gamma <= 0:
        raise ValueError(f"imbalance ratio {gamma} must be > 0")
    k_g = float(num_classes) ** gamma
    b = (n_max - n_min * k_g) / (n_min - n_max)
    a = n_max * (1.0 + b)
    return [int(round(a / (b + c**gamma))) for c in range(1, num_classes + 1)]


def first_per_class(labels: np.ndarray, counts: list[int] | int) -> np.ndarray:
    """Indices of the first counts[c] images of each class c, in file order (sorted)."""
    labels = np.asarray(labels)
    num_classes = int(labels.max()) + 1
    if isinstance(counts, int):
        counts = [counts] * num_classes
    keep = [np.flatnonzero(labels == c)[:n] for c, n in enumerate(counts)]
    return np.sort(np.concatenate(keep))


def imbalance_indices(labels: np.ndarray, gamma: float, n_max: int = N_MAX, n_min: int = N_MIN) -> np.ndarray:
    """The first n_c images of each class (file order), n_c from `imbalance_counts`."""
    num_classes = int(np.asarray(labels).max()) + 1
    return first_per_class(labels, imbalance_counts(gamma, n_max, n_min, num_classes))


# ---------------------------------------------------------------------------------------------
# Sources


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Where data lives: the argument, else $KDNB_DATA, else ~/.cache/kdnb/data."""
    if root:
        return Path(root).expanduser()
    if os.environ.get("KDNB_DATA"):
        return Path(os.environ["KDNB_DATA"]).expanduser()
    return Path.home() / ".cache" / "kdnb" / "data"


def _cache_dir() -> Path:
    return Path(os.environ.get("KDNB_CACHE", Path.home() / ".cache" / "kdnb"))


def _npz_arrays(path: Path) -> dict[str, np.ndarray]:
    """Decode an LZMA-compressed .npz once and keep .npy copies beside the cache (decoding takes ~15 s)."""
    stat = path.stat()
    tag = hashlib.sha1(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    cache = _cache_dir() / "npz" / f"{path.stem}-{tag}"
    names = ("x_train", "y_train", "x_test", "y_test")
    if not all((cache / f"{n}.npy").exists() for n in names):
        cache.mkdir(parents=True, exist_ok=True)
        with np.load(path) as z:
            for n in names:
                tmp = cache / f".{n}.{os.getpid()}.npy"
                np.save(tmp, z[n])
                os.replace(tmp, cache / f"{n}.npy")
    return {n: np.load(cache / f"{n}.npy", mmap_mode="r") for n in names}


def _torchvision_arrays(dataset: str, root: Path, download: bool) -> dict[str, np.ndarray]:
    import torchvision

    cls = {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100}[dataset]
    try:
        tr = cls(str(root), train=True, download=download)
        te = cls(str(root), train=False, download=download)
    except Exception as err:  # torchvision raises RuntimeError or URLError depending on the failure
        raise DataNotFound(f"{dataset} not found in {root} and could not be downloaded ({type(err).__name__}); set "
                           f"KDNB_DATA or data_root to a folder holding {dataset}.npz or torchvision's files") from None
    return {"x_train": np.asarray(tr.data), "y_train": np.asarray(tr.targets, dtype=np.int64),
            "x_test": np.asarray(te.data), "y_test": np.asarray(te.targets, dtype=np.int64)}


def synthetic_arrays(num_classes: int = 10, n_train: int = 50, n_test: int = 20, seed: int = 0) -> dict:
    """A small learnable data set: each class is a fixed random colour pattern plus noise."""
    rng = np.random.RandomState(seed)
    protos = rng.uniform(0, 255, size=(num_classes, 4, 4, 3))

    def make(n_per_class: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.repeat(np.arange(num_classes), n_per_class)
        rng.shuffle(y)
        base = np.kron(protos[y], np.ones((1, 8, 8, 1)))  # 4x4 pattern upsampled to 32x32
        x = np.clip(base + rng.normal(0, 30, size=base.shape), 0, 255).astype(np.uint8)
        return x, y.astype(np.int64)

    x_train, y_train = make(n_train)
    x_test, y_test = make(n_test)
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


def load_arrays(dataset: str, root: str | os.PathLike | None = None, download: bool = True,
                small_ok: bool = False) -> dict[str, np.ndarray]:
    """The raw splits of a data set: ``.npz`` under the data root if present, else torchvision.

    ``small_ok`` allows ``cifar10_small.npz`` (first 1000/200 per class of train/test) when only a
    subset that fits it is needed; its images equal the full file's (shared/data/README.md).
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")
    if dataset == "synthetic":
        return synthetic_arrays()
    base = data_root(root)
    candidates = [base / f"{dataset}_small.npz"] if small_ok else []
    candidates.append(base / f"{dataset}.npz")
    for path in candidates:
        if path.exists():
            return _npz_arrays(path)
    return _torchvision_arrays(dataset, base, download)


@dataclass(frozen=True)
class DataSpec:
    """Everything that decides which images and labels a run sees."""

    dataset: str = "cifar10"
    train_per_class: int | None = None  # first n per class (mini profile: 1000)
    test_per_class: int | None = None  # None = the full test set
    noise: float = 0.0
    noise_seed: int = NOISE_SEED
    imbalance: float | None = None  # gamma; None = balanced
    imbalance_n_max: int = N_MAX
    imbalance_n_min: int = N_MIN
    synthetic_train: int = 50  # per class, synthetic only
    synthetic_test: int = 20


def make_splits(spec: DataSpec, root: str | os.PathLike | None = None, download: bool = True) -> tuple[Split, Split]:
    """Train and test splits after subset, imbalance and label noise (noise on train only)."""
    if spec.dataset == "synthetic":
        arr = synthetic_arrays(NUM_CLASSES["synthetic"], spec.synthetic_train, spec.synthetic_test)
    else:
        small_ok = (spec.train_per_class or 10**9) <= 1000 and (spec.test_per_class or 10**9) <= 200
        arr = load_arrays(spec.dataset, root, download, small_ok=small_ok)
    x_tr, y_tr = np.array(arr["x_train"]), np.asarray(arr["y_train"], dtype=np.int64)
    x_te, y_te = np.array(arr["x_test"]), np.asarray(arr["y_test"], dtype=np.int64)
    if spec.train_per_class:
        idx = first_per_class(y_tr, spec.train_per_class)
        x_tr, y_tr = x_tr[idx], y_tr[idx]
    if spec.imbalance is not None:
        idx = imbalance_indices(y_tr, spec.imbalance, spec.imbalance_n_max, spec.imbalance_n_min)
        x_tr, y_tr = x_tr[idx], y_tr[idx]
    if spec.test_per_class:
        idx = first_per_class(y_te, spec.test_per_class)
        x_te, y_te = x_te[idx], y_te[idx]
    num_classes = NUM_CLASSES[spec.dataset]
    y_tr = symmetric_label_noise(y_tr, spec.noise, num_classes, spec.noise_seed)
    return Split(x_tr, y_tr), Split(x_te, y_te)


# ---------------------------------------------------------------------------------------------
# Device-resident batches


def reflect_pad(x: torch.Tensor, pad: int = PAD) -> torch.Tensor:
    """Reflect-pad NCHW images of any dtype by index gather (equals F.pad(..., mode='reflect'))."""
    h, w = x.shape[-2:]
    rows = torch.cat([torch.arange(pad, 0, -1), torch.arange(h), torch.arange(h - 2, h - 2 - pad, -1)])
    cols = torch.cat([torch.arange(pad, 0, -1), torch.arange(w), torch.arange(w - 2, w - 2 - pad, -1)])
    return x[..., rows.to(x.device)[:, None], cols.to(x.device)[None, :]]


def crop_flip(padded: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor,
              size: int = 32) -> torch.Tensor:
    """Crop size x size windows at offsets (dy, dx) and mirror where flip, as one gather."""
    ar = torch.arange(size, device=padded.device)
    rows = dy[:, None] + ar  # (B, size)
    cols = dx[:, None] + torch.where(flip[:, None], size - 1 - ar, ar)
    b = torch.arange(padded.shape[0], device=padded.device)
    # (B, 1, 1, 1), (1, C, 1, 1), (B, 1, S, 1), (B, 1, 1, S) -> (B, C, S, S)
    c = torch.arange(padded.shape[1], device=padded.device)
    return padded[b[:, None, None, None], c[None, :, None, None], rows[:, None, :, None], cols[:, None, None, :]]


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [0, 1], no standardisation (protocol § Data)."""
    return x.to(torch.get_default_dtype()).div_(255.0)  # float32 unless a test asks for float64


class DeviceData:
    """A split resident on the device as uint8 NCHW, padded once, batched with crop and flip.

    Each run owns a generator; its stream of batches depends on nothing else running beside it.
    """

    def __init__(self, split: Split, device: torch.device | str, augment: bool = True):
        self.device = torch.device(device)
        x = torch.from_numpy(np.ascontiguousarray(split.x)).permute(0, 3, 1, 2).contiguous()
        self.x = x.to(self.device)
        self.padded = reflect_pad(self.x) if augment else None
        self.y = torch.from_numpy(np.array(split.y, dtype=np.int64)).to(self.device)
        self.augment = augment

    def __len__(self) -> int:
        return len(self.y)

    def batches(self, batch_size: int, generator: torch.Generator | None = None, shuffle: bool = True,
                views: bool = False) -> Iterator[tuple[torch.Tensor, ...]]:
        """Order, crops and flips drawn where the generator is (training's: the CPU, the same on every device; protocol
        § Seeds), all at once in the calls batch by batch would make, then sent in one copy; with ``views``, each
        batch also carries its images' views, ``image * VIEWS + view_index`` (augmented batches only)."""
        n, on = len(self.y), generator.device if generator is not None else self.device
        order = (torch.randperm(n, generator=generator, device=on) if shuffle else torch.arange(n)).to(self.device)
        starts = range(0, n, batch_size)  # no drop_last: the remainder is a smaller batch
        augment = self.augment and shuffle
        if augment:  # each batch's offsets (2, b), then its flips (b)
            sizes = [min(batch_size, n - s) for s in starts]
            draws = [(torch.randint(0, 2 * PAD + 1, (2, b), generator=generator, device=on),
                      torch.rand(b, generator=generator, device=on) < 0.5) for b in sizes]
            off, flip = (torch.cat(t, -1).to(self.device) for t in zip(*draws, strict=True))
        for s in starts:
            idx, e = order[s:s + batch_size], s + batch_size
            x = crop_flip(self.padded[idx], off[0, s:e], off[1, s:e], flip[s:e]) if augment else self.x[idx]
            batch = to_float(x), self.y[idx]
            yield (*batch, idx * VIEWS + view_index(off[0, s:e], off[1, s:e], flip[s:e])) if views else batch

    def all_views(self, idx: torch.Tensor) -> torch.Tensor:
        """Every view of the images ``idx`` as the model sees it, (len(idx) * VIEWS, C, 32, 32) image by image,
        each image's views in ``view_index`` order."""
        v = torch.arange(VIEWS, device=self.device).repeat(len(idx))
        dy, dx = v // 2 // (2 * PAD + 1), v // 2 % (2 * PAD + 1)  # the inverse of view_index
        return to_float(crop_flip(self.padded[idx.repeat_interleave(VIEWS)], dy, dx, v % 2 == 1))


def view_index(dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Index in [0, VIEWS) of the view cropped at offsets (dy, dx), mirrored where flip."""
    return (dy * (2 * PAD + 1) + dx) * 2 + flip.long()
