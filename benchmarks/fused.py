"""Several seeds of one (student, teacher, method) configuration trained together (perf-notes §4, §7.5): a GPU
prototype that the bench measures (``fused<N>``), not yet a part of the training loop.

Member parameters and BN buffers are stacked ``[N, ...]`` with ``torch.func.stack_module_state`` and one
``vmap``-ed ``functional_call`` runs all students (a conv with stacked weights becomes one grouped conv). The
teacher is shared: one dense forward over the concatenated ``N x B`` batch. Each member draws its batches from
its own generator exactly as ``DeviceData.batches`` would alone (§7.2), outside vmap. SGD momentum and weight
decay are elementwise, so one ``torch.optim.SGD`` over the stacked leaves equals N separate optimisers; the loss
is the sum of the members' losses, so each member's gradient is its own.

Also here: ``teacher_view_logits``, the teacher's logits for all 162 augmented views of each image (§7.8).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, stack_module_state, vmap

from kdnb.config import RunConfig
from kdnb.data import PAD, DeviceData, Split, crop_flip, to_float
from kdnb.losses import hinton_kd
from kdnb.methods import METHODS, total
from kdnb.models import build

FUSED_METHODS = ("baseline", "hinton")
VIEWS = (2 * PAD + 1) ** 2 * 2  # 81 crop offsets x 2 flips


class _Fp32BatchNorm2d(nn.BatchNorm2d):
    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.float()).to(x.dtype)


class _Fp32BatchNorm1d(nn.BatchNorm1d):
    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.float()).to(x.dtype)


_FP32_BN = {nn.BatchNorm2d: _Fp32BatchNorm2d, nn.BatchNorm1d: _Fp32BatchNorm1d}


class FusedStudents:
    """N students of one architecture as stacked tensors; ``self(xs)`` maps (N, B, C, H, W) to (N, B, K).

    ``compute_dtype=torch.bfloat16`` does by hand what bf16 autocast does (autocast does not reach convs under
    vmap): convs and the classifier in bf16 on fp32 master weights, BN computed in fp32 on fp32 parameters and
    statistics, its output back in bf16.
    """

    def __init__(self, models: list[nn.Module], compute_dtype: torch.dtype | None = None):
        self.n, self.compute_dtype = len(models), compute_dtype
        self.params, self.buffers = stack_module_state(models)
        self.base = copy.deepcopy(models[0]).to("meta")
        self.base.train(models[0].training)
        self._fp32 = set()
        if compute_dtype is not None:
            for name, m in self.base.named_modules():
                if type(m) in _FP32_BN:
                    m.__class__ = _FP32_BN[type(m)]
                    self._fp32.update(f"{name}.{p}" for p in ("weight", "bias"))

    def _one(self, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
        if self.compute_dtype is not None:
            params = {k: v if k in self._fp32 else v.to(self.compute_dtype) for k, v in params.items()}
            x = x.to(self.compute_dtype)
        return functional_call(self.base, (params, buffers), (x,))

    def __call__(self, xs: Tensor) -> Tensor:
        return vmap(self._one)(self.params, self.buffers, xs)

    def parameters(self) -> list[Tensor]:
        return list(self.params.values())

    def member(self, i: int, like: nn.Module) -> nn.Module:
        """Member ``i`` as a plain module (a deep copy of ``like`` with the member's state)."""
        m = copy.deepcopy(like)
        state = {k: v[i].detach().clone() for k, v in {**self.params, **self.buffers}.items()}
        m.load_state_dict(state)
        return m


def member_batches(data: DeviceData, generators: list[torch.Generator],
                   batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """One epoch of (xs (N, B, C, H, W), ys (N, B)); member i's batches equal ``data.batches(batch_size, gen_i)``.

    Each generator is called in the same order as ``DeviceData.batches`` calls it (randperm once, then randint
    and rand per batch), so a member's stream does not depend on N; the crops of all members are one gather.
    """
    n, dev = len(data), data.device
    orders = [torch.randperm(n, generator=g, device=dev) for g in generators]
    for start in range(0, n, batch_size):
        idx, dy, dx, flip = [], [], [], []
        for order, g in zip(orders, generators, strict=True):
            i = order[start:start + batch_size]
            off = torch.randint(0, 2 * PAD + 1, (2, len(i)), generator=g, device=dev)
            idx.append(i)
            dy.append(off[0])
            dx.append(off[1])
            flip.append(torch.rand(len(i), generator=g, device=dev) < 0.5)
        idx_t = torch.cat(idx)
        x = to_float(crop_flip(data.padded[idx_t], torch.cat(dy), torch.cat(dx), torch.cat(flip)))
        yield x.view(len(generators), -1, *x.shape[1:]), data.y[idx_t].view(len(generators), -1)


def fused_loss(students: FusedStudents, teacher: nn.Module | None, xs: Tensor, ys: Tensor, method: str = "hinton",
               alpha: float = 0.9, T: float = 4.0) -> tuple[Tensor, Tensor]:
    """(sum over members of each member's loss, logits (N, B, K)); the members' losses are those of
    ``kdnb.methods`` Baseline / Hinton on their own batch. Every member has the same batch size."""
    if method not in FUSED_METHODS:
        raise ValueError(f"fused training supports {', '.join(FUSED_METHODS)}, not {method!r}")
    n, b = ys.shape
    logits = students(xs)
    flat, yf = logits.reshape(n * b, -1), ys.reshape(-1)
    flat = flat.to(torch.promote_types(flat.dtype, torch.float32))  # the loss in fp32 at least, as under autocast
    ce = F.cross_entropy(flat, yf)  # mean over N*B = (1/N) sum of the members' means
    if method == "baseline":
        return n * ce, logits
    with torch.no_grad():
        t_logits = teacher(xs.reshape(n * b, *xs.shape[2:]))  # one dense teacher batch (§7.5)
    return n * ((1 - alpha) * ce + alpha * hinton_kd(flat, t_logits, T)), logits


def fused_step(students: FusedStudents, opt: torch.optim.Optimizer, teacher: nn.Module | None, xs: Tensor,
               ys: Tensor, method: str = "hinton", autocast: contextlib.AbstractContextManager | None = None,
               loss_fn: Callable[..., tuple[Tensor, Tensor]] | None = None) -> tuple[Tensor, Tensor]:
    """One SGD step of all members (the loss under ``autocast``; ``loss_fn``: ``fused_loss`` or a compiled
    copy); returns (summed loss, correct predictions per member), both on the device."""
    with autocast or contextlib.nullcontext():
        loss, logits = (loss_fn or fused_loss)(students, teacher, xs, ys, method)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach(), (logits.detach().argmax(-1) == ys).sum(1)


def sgd(students: FusedStudents, lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 5e-4):
    return torch.optim.SGD(students.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)


def _rel(a: Tensor, b: Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def check_equivalence(student: str = "resnet8", teacher: str = "resnet26", n: int = 3, method: str = "hinton",
                      dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu", steps: int = 2,
                      batch_size: int = 16, images: int = 48) -> dict[str, Any]:
    """A fused step of ``n`` members against ``n`` separate steps of ``kdnb.methods`` (train.py's step).

    Returns the norm-wise relative difference of all gradients and of all parameters after ``steps`` steps
    (``_max``: the largest over single tensors, and which), the largest absolute difference of the BN running
    statistics, and that of the summed losses.
    """
    device = torch.device(device)
    g = torch.Generator().manual_seed(0)
    split = Split(torch.randint(0, 256, (images, 32, 32, 3), generator=g, dtype=torch.uint8).numpy(),
                  torch.randint(0, 10, (images,), generator=g).numpy())
    data = DeviceData(split, device)
    torch.manual_seed(1000)
    t_model = build(teacher).to(device, dtype).eval().requires_grad_(False) if method == "hinton" else None
    inits = []
    for i in range(n):
        torch.manual_seed(i)
        inits.append(build(student).to(device, dtype))
    cfg = RunConfig.from_dict({"method": method, "student": student, "teacher": teacher if t_model else None,
                               "data": {"dataset": "synthetic"}, "batch_size": batch_size})

    refs, ref_losses = [], []
    for i in range(n):  # separate runs, each with the method's own optimiser and step
        m = METHODS[method](cfg, t_model)
        m.models["student"] = copy.deepcopy(inits[i])
        m.train()
        stage = m.stages()[0]
        opts = m.optimizers(stage)
        gen = torch.Generator(device).manual_seed(100 + i)
        for _, (x, y) in zip(range(steps), data.batches(batch_size, gen), strict=False):
            terms, _ = m.step(x.to(dtype), y, stage, 0, opts)
        refs.append(m.models["student"])
        ref_losses.append(total(terms).detach())

    fused = FusedStudents([copy.deepcopy(m) for m in inits])
    opt = sgd(fused, stage.lr, stage.momentum, stage.weight_decay)
    gens = [torch.Generator(device).manual_seed(100 + i) for i in range(n)]
    for _, (xs, ys) in zip(range(steps), member_batches(data, gens, batch_size), strict=False):
        loss, _ = fused_step(fused, opt, t_model, xs.to(dtype), ys, method)

    named = [dict(r.named_parameters()) for r in refs]
    pairs = {k: [(p[i].detach(), p.grad[i], named[i][k].detach(), named[i][k].grad) for i in range(n)]
             for k, p in fused.params.items()}

    def flat(j: int) -> Tensor:
        return torch.cat([t[j].flatten().double() for v in pairs.values() for t in v])

    bufs = [dict(r.named_buffers()) for r in refs]
    bn = max(float((b[i].double() - bufs[i][k].double()).abs().max()) for k, b in fused.buffers.items()
             for i in range(n))
    worst = max(pairs, key=lambda k: max(_rel(t[1], t[3]) for t in pairs[k]))
    return {"grad_rel": _rel(flat(1), flat(3)), "param_rel": _rel(flat(0), flat(2)),  # all parameters together
            "grad_rel_max": max(_rel(t[1], t[3]) for t in pairs[worst]), "grad_rel_max_tensor": worst,
            "param_rel_max": max(_rel(t[0], t[2]) for v in pairs.values() for t in v), "bn_abs": bn,
            "loss_abs": float((loss - torch.stack(ref_losses).sum()).abs())}


# ---------------------------------------------------------------------------------------------------------------
# Teacher-logit cache (§7.8): the augmentation orbit is 81 crops x 2 flips per image, and an eval-mode teacher is
# a function of the view, so its logits can be computed once per run grid and looked up by view.


def view_index(dy: Tensor, dx: Tensor, flip: Tensor) -> Tensor:
    """Index in [0, 162) of the view cropped at (dy, dx), mirrored where flip."""
    return (dy * (2 * PAD + 1) + dx) * 2 + flip.long()


@torch.no_grad()
def teacher_view_logits(teacher: nn.Module, padded_uint8: Tensor, batch: int = 1024) -> Tensor:
    """Logits (M, 162, K) of ``teacher`` (in eval mode) for every view of each padded uint8 (M, 3, 40, 40) image."""
    v = torch.arange(VIEWS, device=padded_uint8.device)
    flip, pos = (v % 2).bool(), v // 2
    dy, dx = pos // (2 * PAD + 1), pos % (2 * PAD + 1)
    per = max(1, batch // VIEWS)  # images per teacher batch
    dtype = next(teacher.parameters()).dtype
    out = []
    for s in range(0, len(padded_uint8), per):
        chunk = padded_uint8[s:s + per]
        m = len(chunk)
        x = crop_flip(chunk.repeat_interleave(VIEWS, 0), dy.repeat(m), dx.repeat(m), flip.repeat(m))
        out.append(teacher(to_float(x).to(dtype)).view(m, VIEWS, -1))
    return torch.cat(out)
