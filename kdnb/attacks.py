"""Adversarial attacks: PGD and the transfer matrix (book/protocol.md § Transferability), the BSS attack (§ BSS).

Images are in [0, 1] with no standardisation (book/protocol.md § Data). Every attack runs its model in eval mode,
restores the previous train/eval mode of every submodule afterwards, and takes gradients with respect
to the input only (``torch.autograd.grad``), so no parameter ``.grad`` is touched.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from kdnb.store import atomic_torch_save


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode and restore each one's own previous mode afterwards."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


def _work_dtype(x: Tensor) -> torch.dtype:
    # perturbations and projections in at least float32, even when x or the forward pass is bf16
    return torch.promote_types(x.dtype, torch.float32)


def _uniform(shape: torch.Size, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """U(0, 1) drawn on the generator's device (CPU or x's device), then moved to ``device``."""
    gen_device = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=gen_device, dtype=torch.float32).to(device)


# ---------------------------------------------------------------------------------------------------
# PGD (book/protocol.md § Transferability, TRADES semantics)


def pgd(model: nn.Module, x: Tensor, y: Tensor, eps: float = 0.031, step: float = 0.003, steps: int = 20,
        random_start: bool = True, generator: torch.Generator | None = None, clamp_init: bool = False,
        batch_size: int | None = None) -> Tensor:
    """Untargeted L∞ PGD on the true label; returns x' with x's dtype and device.

    x'_0 = x + U(−ε, ε) (not clipped to [0, 1] unless ``clamp_init``, the Madry/torchattacks variant);
    x'_{k+1} = clip_[0,1](min(max(x'_k + step·sign(∇ CE(f(x'_k), y)), x − ε), x + ε)). CE is the batch
    mean (the sign is unaffected). The random start for all of x is drawn before chunking, so the result
    does not depend on ``batch_size``. Under bf16 autocast only the forward/backward run in bf16; the
    iterate, the step and the projection stay in float32.
    """
    dtype = _work_dtype(x)
    x0 = x.detach().to(dtype)
    noise = None
    if random_start:
        noise = ((_uniform(x.shape, generator, x.device) * 2 - 1) * eps).to(dtype)
    n = x.shape[0]
    bs = n if not batch_size else batch_size
    out = []
    with _eval_mode(model), torch.enable_grad():
        for s in range(0, n, max(bs, 1)):
            xb, yb = x0[s : s + bs], y[s : s + bs]
            xa = xb.clone() if noise is None else xb + noise[s : s + bs]
            if clamp_init:
                xa = xa.clamp(0.0, 1.0)
            lo, hi = xb - eps, xb + eps
            for _ in range(steps):
                xa.requires_grad_(True)
                loss = F.cross_entropy(model(xa).float(), yb)
                (g,) = torch.autograd.grad(loss, xa)
                xa = xa.detach() + step * g.sign()
                xa = torch.min(torch.max(xa, lo), hi).clamp(0.0, 1.0)
            out.append(xa.detach())
    return torch.cat(out).to(x.dtype) if out else x.detach().clone()


# ---------------------------------------------------------------------------------------------------
# Transfer rate and matrix (book/protocol.md § Transferability)


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch_size: int | None = None) -> Tensor:
    """Arg-max predictions of ``model`` in eval mode, in chunks of ``batch_size``."""
    bs = batch_size or max(x.shape[0], 1)
    with _eval_mode(model):
        return torch.cat([model(x[s : s + bs]).argmax(1) for s in range(0, x.shape[0], bs)])


def _rate(fooled: Tensor, joint: Tensor) -> float:
    n = int(joint.sum())
    return 100.0 * int((fooled & joint).sum()) / n if n else float("nan")


def transfer_rate_from(x_adv: Tensor, target: nn.Module, x: Tensor, y: Tensor, source_correct: Tensor,
                       target_correct: Tensor | None = None, batch_size: int | None = None) -> float:
    """Percent of ``x_adv`` (crafted on a source) that fool ``target``, over the clean images both the
    source (``source_correct``, bool per image) and the target classify correctly; NaN if there are none.
    ``target_correct`` may be passed to skip the clean forward pass on ``x``.
    """
    if target_correct is None:
        target_correct = predict(target, x, batch_size) == y
    fooled = predict(target, x_adv, batch_size) != y
    return _rate(fooled, source_correct.to(fooled.device) & target_correct)


def transfer_rate(source: nn.Module, target: nn.Module, x: Tensor, y: Tensor, batch_size: int | None = None,
                  **pgd_kwargs) -> float:
    """Percent of PGD examples crafted on ``source`` that fool ``target``, over the test images both
    classify correctly (book/protocol.md § Transferability). Crafting on all of x and masking afterwards equals
    attacking only the jointly-correct images, since every example is attacked independently in eval mode.
    """
    x_adv = pgd(source, x, y, batch_size=batch_size, **pgd_kwargs)
    source_correct = predict(source, x, batch_size) == y
    return transfer_rate_from(x_adv, target, x, y, source_correct, batch_size=batch_size)


def fingerprint(x: Tensor, y: Tensor) -> str:
    """Shape, dtype and SHA-1 of the bytes of x and y: a different test set never matches."""
    h = hashlib.sha1()
    for t in (x, y):
        t = t.detach().contiguous().cpu()
        h.update(f"{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def weights_hash(model: nn.Module) -> str:
    """SHA-256 of a model's weights: the names, dtypes, shapes and bytes of its state_dict in key order.

    The same for the same weights on any device and in any memory format; retrained weights differ.
    """
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _attack_key(pgd_kwargs: Mapping, seed: int, data_fp: str) -> tuple[dict, str]:
    defaults = dict(eps=0.031, step=0.003, steps=20, random_start=True, clamp_init=False)
    key = {**defaults, **pgd_kwargs, "seed": seed, "data": data_fp}
    return key, hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def _pairs(n_source: int, n_target: int, distinct: bool = True) -> list[tuple[int, int]]:
    """Ordered (source seed i, target seed j) pairs, i ≠ j if ``distinct`` (all pairs if none has i ≠ j)."""
    everything = [(i, j) for i in range(n_source) for j in range(n_target)]
    return [(i, j) for i, j in everything if i != j or not distinct] or everything


def _mean(values: Sequence[float]) -> float:
    kept = [v for v in values if v == v]
    return sum(kept) / len(kept) if kept else float("nan")


def as_seeds(models: Mapping[str, nn.Module | Sequence[nn.Module]]) -> dict[str, list[nn.Module]]:
    """Each method's models as a list, one per seed: a bare module counts as one seed (an
    ``nn.ModuleList`` as its members); anything else is refused in one line."""
    if {"Teacher", "mean"} & set(models):
        raise ValueError("'Teacher' and 'mean' are reserved labels; rename those methods")
    out = {}
    for m, v in models.items():
        seeds = list(v) if isinstance(v, nn.ModuleList) else [v] if isinstance(v, nn.Module) else v
        if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence) or not seeds or \
                not all(isinstance(s, nn.Module) for s in seeds):
            raise ValueError(f"models[{m!r}] must be a module or a non-empty list of modules (one per seed), "
                             f"got {type(v).__name__}")
        out[m] = list(seeds)
    return out


def craft(source: nn.Module, x: Tensor, y: Tensor, seed: int = 0, batch_size: int | None = None,
          cache_dir: str | os.PathLike | None = None, **pgd_kwargs) -> tuple[Tensor, Tensor]:
    """PGD examples crafted on ``source`` (random start from a CPU generator seeded with ``seed``) and
    whether ``source`` classifies each clean image correctly.

    With ``cache_dir`` both are kept as ``{cache_dir}/{weights}.{attack}.pgd.pt``: ``weights`` is the
    start of ``weights_hash(source)`` and ``attack`` hashes the PGD settings, the seed and a fingerprint
    of (x, y), so new weights, settings or test images never reuse old examples. A file holds the
    examples in x's dtype (about 123 MB for the float32 CIFAR test set); others are left in place.
    """
    path = key = None
    if cache_dir is not None:
        key, key_hash = _attack_key(pgd_kwargs, seed, fingerprint(x, y))
        key = {**key, "weights": weights_hash(source)}
        path = Path(cache_dir) / f"{key['weights'][:16]}.{key_hash}.pgd.pt"
        if path.is_file():
            blob = torch.load(path, map_location=x.device, weights_only=True)
            if blob.get("key") == key and blob["x_adv"].shape == x.shape:
                return blob["x_adv"], blob["correct"]
    x_adv = pgd(source, x, y, generator=torch.Generator().manual_seed(seed), batch_size=batch_size, **pgd_kwargs)
    correct = predict(source, x, batch_size) == y
    if path is not None:
        atomic_torch_save({"key": key, "x_adv": x_adv.cpu(), "correct": correct.cpu()}, path)
    return x_adv, correct


def _matrix(rates: Mapping[tuple[str, str], Mapping], methods: list[str], teacher: bool) -> pd.DataFrame:
    """Cells as means over their seed pairs, with the mean column (method sources) and the mean row."""
    columns = methods + (["Teacher"] if teacher else [])
    df = pd.DataFrame([[_mean(list(rates.get((t, s), {}).values())) for s in columns] for t in methods],
                      index=pd.Index(methods, name="target"), columns=pd.Index(columns, name="source"), dtype=float)
    df.insert(len(methods), "mean", df[methods].mean(axis=1))
    df.loc["mean"] = df.mean(axis=0)
    return df


def transfer_matrix(models: Mapping[str, nn.Module | Sequence[nn.Module]], x: Tensor, y: Tensor,
                    teacher: nn.Module | None = None, cache_dir: str | os.PathLike | None = None, seed: int = 0,
                    batch_size: int = 1000, progress: bool = True, **pgd_kwargs) -> pd.DataFrame:
    """Transfer success rates (%) as in the paper's Fig. 1: index = target method, columns = source method.

    ``models`` maps a method name to its models, one per seed in seed order (a bare module is one
    seed). Every source model is attacked once with PGD on all of x (``craft``; with ``cache_dir`` its
    examples are kept, keyed by its weights) and its examples are reused for every target. The random
    start comes from a CPU ``torch.Generator`` seeded with ``seed`` (the same noise for every source, on
    any device). Cell [target, source] is the mean rate over the ordered seed pairs (source seed i,
    target seed j) with i ≠ j (protocol § Transferability); seed lists are matched by position. When no
    pair has i ≠ j (both methods have a single model) the one pair (0, 0) is used; on the diagonal that
    pair is the same model, so the cell is the white-box rate. Pairs with no jointly-correct image (NaN)
    are skipped.

    Extra columns: "Teacher" (source = ``teacher``, mean over each method's target seeds) when a teacher
    is given, and "mean" (mean over the method columns, diagonal included, Teacher excluded); an extra
    row "mean" holds the mean over the target rows of every column.
    """
    if "generator" in pgd_kwargs:
        raise ValueError("transfer_matrix seeds its own generator; pass seed= instead of generator=")
    seeds = as_seeds(models)
    methods = list(seeds)
    sources = [(m, i, mod) for m in methods for i, mod in enumerate(seeds[m])]
    sources += [(None, 0, teacher)] if teacher is not None else []  # None: the teacher
    if cache_dir is not None:
        os.makedirs(cache_dir, exist_ok=True)
    correct = {(m, j): predict(mod, x, batch_size) == y for m in methods for j, mod in enumerate(seeds[m])}
    rates: dict[tuple[str, str], dict[tuple[int, int], float]] = {}
    for src, i, source in tqdm(sources, desc="PGD sources", disable=not progress):
        x_adv, src_correct = craft(source, x, y, seed, batch_size, cache_dir, **pgd_kwargs)
        n_src = len(seeds[src]) if src is not None else 1
        for tgt in methods:
            pairs = _pairs(n_src, len(seeds[tgt]), distinct=src is not None)  # teacher: all target seeds
            for j in [b for a, b in pairs if a == i]:
                r = transfer_rate_from(x_adv, seeds[tgt][j], x, y, src_correct, correct[tgt, j], batch_size)
                rates.setdefault((tgt, src or "Teacher"), {})[i, j] = r
        del x_adv
    return _matrix(rates, methods, teacher is not None)


# ---------------------------------------------------------------------------------------------------
# BSS: adversarial samples supporting the decision boundary (book/protocol.md § BSS)


def bss_select(t_logits: Tensor, s_logits: Tensor, y: Tensor, attack_size: int = 32) -> Tensor:
    """Indices of the samples to attack (book/protocol.md § BSS), in descending score order.

    Candidates are classified correctly by both teacher and student; if more than ``attack_size``
    qualify, keep the ``attack_size`` with the largest Σ_{c≠y} (softmax(t)_c − softmax(s)_c)² (T = 1).
    The output length depends on the data, which costs one host sync.
    """
    t, s = t_logits.detach().float(), s_logits.detach().float()
    ok = (t.argmax(1) == y) & (s.argmax(1) == y)
    score = (t.softmax(1) - s.softmax(1)).pow(2).scatter(1, y[:, None], 0.0).sum(1)
    score = score.masked_fill(~ok, float("-inf"))
    k = min(int(ok.sum()), attack_size)
    return score.topk(k).indices


def bss_targets(t_logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One target class per sample among the teacher's non-top-1 classes, P(k) ∝ softmax(t)_k (T = 1).

    Inverse-CDF sampling with one uniform per sample over the non-top-1 classes taken in descending
    probability order, as the official BSS code (book/protocol.md § BSS); the draw comes from ``generator``.
    """
    p, order = t_logits.detach().float().softmax(1).sort(dim=1, descending=True)
    rest, classes = p[:, 1:], order[:, 1:]
    cdf = rest.cumsum(1) / rest.sum(1, keepdim=True)
    u = _uniform(torch.Size([p.shape[0]]), generator, p.device)
    pos = (cdf < u[:, None]).sum(1).clamp(max=rest.shape[1] - 1)
    return classes.gather(1, pos[:, None]).squeeze(1)


def bss_attack(teacher: nn.Module, x: Tensor, target: Tensor, steps: int = 10, eta: float = 0.06,
               lo: float | Tensor = 0.0, hi: float | Tensor = 1.0) -> Tensor:
    """Move each sample from the teacher's class b = argmax f(x⁰) towards ``target`` (book/protocol.md § BSS).

    For a fixed number of steps, with active = [argmax f(x^j) = b]:
    x^{j+1} = clamp(x^j + η·active·(z_b − z_k + 1e-4)·g/(‖g‖₂ + 1e-12), lo, hi), g = ∇_x (z_k − z_b).
    A sample stops moving at the first iterate whose arg-max leaves b. All steps run masked, without
    host syncs. η = 0.06 is the official 0.3 in standardised units times a pixel std of about 0.2
    (book/protocol.md § BSS); lo/hi (floats or broadcastable tensors) are the valid input range, [0, 1] here.
    The "max eps 16" of the paper's Table I has no effect in the official code and is left out.
    """
    dtype = _work_dtype(x)
    xa = x.detach().to(dtype)
    view = (-1,) + (1,) * (x.dim() - 1)
    if isinstance(lo, Tensor) or isinstance(hi, Tensor):  # clamp takes two numbers or two tensors
        lo, hi = (torch.as_tensor(v, dtype=dtype, device=x.device) for v in (lo, hi))
    b = None
    with _eval_mode(teacher), torch.enable_grad():
        for _ in range(steps):
            xa.requires_grad_(True)
            z = teacher(xa).to(dtype)
            pred = z.argmax(1)
            b = pred if b is None else b
            active = pred == b
            margin = z.gather(1, target[:, None]).squeeze(1) - z.gather(1, b[:, None]).squeeze(1)
            (g,) = torch.autograd.grad(margin.sum(), xa)
            norm = g.flatten(1).norm(dim=1)
            scale = eta * active * (1e-4 - margin.detach()) / (norm + 1e-12)  # 1e-4: official code
            xa = torch.clamp(xa.detach() + scale.view(view) * g, lo, hi)
    return xa.detach().to(x.dtype)
