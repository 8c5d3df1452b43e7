"""CIFAR ResNet, Wide ResNet and the ONE multi-branch variant, built by name (protocol § Models).

Names: ``resnet8``, ``resnet14``, ``resnet20``, ``resnet26`` (width 1), ``resnet8x4`` ... ``resnet26x4``
(width 4), ``wrn10_2``, ``wrn16_2``, ``wrn28_2``, ``wrn40_2``. Paper spellings (``ResNet-8``,
``resnet-8x4``, ``WRN-16-2``, ``wrn_16_2``) are accepted, and so are other valid depths and widths.

A network is ``stem``, ``layer1``, ``layer2``, ``layer3`` (each an ``nn.Sequential`` of blocks), the
head (``bn_final``, WRN only, then average pooling) and ``fc``. ``model(x)`` returns logits ``(B, K)``;
``model(x, features=True)`` returns ``(logits, feats)`` with the taps of protocol § Feature taps
(``stem``, ``block1``, ``block2``, ``block3``, ``pool``); ``model.forward_intermediates(x, taps)`` runs
only as far as the last tap asked for. :func:`feature_shapes` gives every tap's shape from the name.

ONE (protocol § ONE): :func:`build_one` returns a :class:`OneNet`, whose forward gives
``(branch_logits (m, B, K), gate (B, m))``; :func:`extract_branch` returns branch i as a plain student.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MODELS", "REGISTRY", "TAPS", "CifarResNet", "WideResNet", "OneNet", "ZeroPadShortcut", "build",
           "build_one", "canonical_name", "ensemble_logits", "extract_branch", "family", "feature_shapes", "names"]

TAPS = ("stem", "block1", "block2", "block3", "pool")  # in network order (protocol § Feature taps)
TAP_SIZES = (32, 32, 16, 8)  # spatial sizes of stem..block3 for 32x32 inputs: strides 1, 1, 2, 2
# ResNet depth 6n+2, WRN depth 6n+4, n >= 1 (protocol § Models)
_DEPTH_OK = {"resnet": lambda d: d >= 8 and (d - 2) % 6 == 0, "wrn": lambda d: d >= 10 and (d - 4) % 6 == 0}


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


def _init_weights(model: nn.Module) -> None:
    # He-normal fan-out convs, BN gamma 1 beta 0, default Linear weights with zero bias (protocol § Models)
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)


def _pool(x: torch.Tensor, bn_final: nn.Module | None) -> torch.Tensor:
    # the vector the classifier reads (tap `pool`): WRN head BN-ReLU-avgpool, ResNet head avgpool
    if bn_final is not None:
        x = F.relu(bn_final(x))
    return x.mean((2, 3))


class ZeroPadShortcut(nn.Module):
    """Option-A shortcut: subsample x[:, :, ::s, ::s], append zero channels after the existing ones."""

    def __init__(self, extra_channels: int, stride: int) -> None:
        super().__init__()
        self.extra, self.stride = extra_channels, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, :: self.stride, :: self.stride], (0, 0, 0, 0, 0, self.extra))


class BasicBlock(nn.Module):
    """Post-activation block: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))."""

    def __init__(self, cin: int, cout: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv3x3(cin, cout, stride), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = _conv3x3(cout, cout), nn.BatchNorm2d(cout)
        if stride == 1 and cin == cout:
            self.shortcut: nn.Module = nn.Identity()
        elif shortcut == "B":  # 1x1 conv stride s + BN, the default (protocol § Models)
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        else:
            self.shortcut = ZeroPadShortcut(cout - cin, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class PreActBlock(nn.Module):
    """Pre-activation WRN block; the projection shortcut takes the pre-activated input."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), _conv3x3(cin, cout, stride)
        self.bn2, self.conv2 = nn.BatchNorm2d(cout), _conv3x3(cout, cout)
        keep = stride == 1 and cin == cout
        self.shortcut = None if keep else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.relu(self.bn1(x))
        h = self.conv2(F.relu(self.bn2(self.conv1(a))))
        return h + (x if self.shortcut is None else self.shortcut(a))


def _stages(block: Callable[..., nn.Module], cin: int, widths: tuple, n: int) -> list[nn.Sequential]:
    # n blocks per stage; the first block of stages 2 and 3 has stride 2
    stages = []
    for cout, stride in zip(widths, (1, 2, 2), strict=True):
        stages.append(nn.Sequential(block(cin, cout, stride), *(block(cout, cout, 1) for _ in range(n - 1))))
        cin = cout
    return stages


class _CifarNet(nn.Module):
    """Shared forward: stem -> layer1..3 -> head -> fc, with the named taps on request."""

    stem: nn.Module
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    bn_final: nn.Module | None
    fc: nn.Linear

    def _finish(self, arch: str, num_classes: int, options: dict) -> None:
        self.arch, self.num_classes, self.options = arch, num_classes, options
        self.feature_shapes = feature_shapes(arch)
        self.feature_channels = {t: s[0] for t, s in self.feature_shapes.items()}
        _init_weights(self)

    def tap_modules(self, tap: str) -> list[nn.Module]:
        """The modules that compute the taps from ``stem`` up to ``tap``, in order."""
        head = [self.bn_final] if self.bn_final is not None else []
        return [self.stem, self.layer1, self.layer2, self.layer3, *head][: _tap_index(tap) + 1]

    def forward_intermediates(self, x: torch.Tensor, taps: Sequence[str] = TAPS) -> dict[str, torch.Tensor]:
        """The taps from ``stem`` up to the last of ``taps``, in network order. Only the layers they
        need run, so later layers neither compute nor update their BN statistics."""
        layers = (self.stem, self.layer1, self.layer2, self.layer3, partial(_pool, bn_final=self.bn_final))
        out: dict[str, torch.Tensor] = {}
        for tap, layer in zip(TAPS[: max(map(_tap_index, taps)) + 1], layers, strict=False):
            x = out[tap] = layer(x)
        return out

    def forward(self, x: torch.Tensor, features: bool = False):
        feats = self.forward_intermediates(x)
        logits = self.fc(feats["pool"])
        return (logits, feats) if features else logits


class CifarResNet(_CifarNet):
    """CIFAR ResNet-(6n+2), post-activation, stem 16k, widths 16k/32k/64k (protocol § Models)."""

    def __init__(self, depth: int, width: int = 1, num_classes: int = 10, shortcut: str = "B") -> None:
        super().__init__()
        if not _DEPTH_OK["resnet"](depth) or width < 1:
            raise ValueError(f"ResNet needs depth 6n+2 >= 8 and width >= 1, got depth={depth} width={width}")
        shortcut = shortcut.upper()
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' or 'B', got {shortcut!r}")
        n, c = (depth - 2) // 6, _widths("resnet", width)[1:]
        self.stem = nn.Sequential(_conv3x3(3, c[0]), nn.BatchNorm2d(c[0]), nn.ReLU())
        self.layer1, self.layer2, self.layer3 = _stages(partial(BasicBlock, shortcut=shortcut), c[0], c, n)
        self.bn_final = None
        self.fc = nn.Linear(c[2], num_classes)
        self._finish(_key("resnet", depth, width), num_classes, {"shortcut": shortcut})


class WideResNet(_CifarNet):
    """WRN-d-k, pre-activation, widths 16, 16k, 32k, 64k, no dropout (protocol § Models)."""

    def __init__(self, depth: int, width: int = 2, num_classes: int = 10) -> None:
        super().__init__()
        if not _DEPTH_OK["wrn"](depth) or width < 1:
            raise ValueError(f"WRN needs depth 6n+4 >= 10 and width >= 1, got depth={depth} width={width}")
        n, c = (depth - 4) // 6, _widths("wrn", width)[1:]
        self.stem = _conv3x3(3, 16)  # no BN/ReLU after the stem: the first block pre-activates it
        self.layer1, self.layer2, self.layer3 = _stages(PreActBlock, 16, c, n)
        self.bn_final = nn.BatchNorm2d(c[2])
        self.fc = nn.Linear(c[2], num_classes)
        self._finish(_key("wrn", depth, width), num_classes, {})


# ---- registry, names and static shapes -----------------------------------------------------------

_FAMILIES: dict[str, Callable[..., _CifarNet]] = {"resnet": CifarResNet, "wrn": WideResNet}
_PAPER = [("resnet", d, k) for k in (1, 4) for d in (8, 14, 20, 26)] + [("wrn", d, 2) for d in (10, 16, 28, 40)]
# resnet8, ResNet-8, resnet-8x4, resnet_26_x4 / wrn16_2, WRN-16-2, wrn_16_2
_PATTERNS = {"resnet": re.compile(r"resnet[-_ ]?(\d+)(?:[-_ ]?x(\d+))?"),
             "wrn": re.compile(r"wrn[-_ ]?(\d+)[-_ ](\d+)")}


def _key(family: str, depth: int, width: int) -> str:
    if family == "wrn":
        return f"wrn{depth}_{width}"
    return f"resnet{depth}" + (f"x{width}" if width != 1 else "")


def _widths(family: str, width: int) -> tuple[int, int, int, int]:
    """Channels of stem, block1, block2, block3: the WRN stem is 16 wide whatever k (protocol § Models)."""
    return (16 if family == "wrn" else 16 * width, 16 * width, 32 * width, 64 * width)


def _tap_index(tap: str) -> int:
    if tap not in TAPS:
        raise ValueError(f"unknown feature tap {tap!r}; valid: {', '.join(TAPS)}")
    return TAPS.index(tap)


REGISTRY: dict[str, Callable[..., nn.Module]] = {_key(*p): partial(_FAMILIES[p[0]], *p[1:]) for p in _PAPER}
MODELS: tuple[str, ...] = tuple(REGISTRY)


def names() -> list[str]:
    """The canonical names of the paper's models."""
    return list(MODELS)


def _parse(name: str) -> tuple[str, int, int]:
    s = name.strip().lower()
    for fam, pattern in _PATTERNS.items():
        m = pattern.fullmatch(s)
        if m and _DEPTH_OK[fam](int(m.group(1))) and int(m.group(2) or 1) >= 1:
            return fam, int(m.group(1)), int(m.group(2) or 1)
    raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)} (also resnet<6n+2>[x<k>], wrn<6n+4>_<k>)")


def canonical_name(name: str) -> str:
    """Normalise a spelling (``ResNet-8``, ``WRN-16-2``) to its canonical name (``resnet8``, ``wrn16_2``)."""
    return _key(*_parse(name))


def family(name: str) -> str:
    """``resnet`` or ``wrn``."""
    return _parse(name)[0]


def feature_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """Each tap's shape without the batch axis for 32x32 inputs, from the name alone (no network built)."""
    fam, _, width = _parse(name)
    widths = _widths(fam, width)
    shapes: dict[str, tuple[int, ...]] = {t: (c, s, s) for t, c, s in zip(TAPS, widths, TAP_SIZES, strict=False)}
    return {**shapes, "pool": (widths[3],)}


def build(name: str, num_classes: int = 10, **options) -> nn.Module:
    """Build a model by name. Options: ``shortcut="B"|"A"`` for ResNets (B by default, protocol § Models).

    WRNs always use their projection shortcut, so ``shortcut`` is ignored for them: one run config
    can name any architecture.
    """
    fam, depth, width = _parse(name)
    if fam == "wrn":
        options.pop("shortcut", None)
    ctor = REGISTRY.get(_key(fam, depth, width)) or partial(_FAMILIES[fam], depth, width)
    return ctor(num_classes=num_classes, **options)


# ---- ONE: shared trunk + m branches + gate (protocol § ONE) ------------------------------------------


class _Branch(nn.Module):
    """One copy of stage 3 with its own head; the attribute names match the student's."""

    def __init__(self, layer3: nn.Sequential, bn_final: nn.Module | None, fc: nn.Linear) -> None:
        super().__init__()
        self.layer3, self.bn_final, self.fc = layer3, bn_final, fc

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.fc(_pool(self.layer3(t), self.bn_final))


class OneNet(nn.Module):
    """Trunk (stem, layer1, layer2) + ``branches`` copies of layer3 and head + gate.

    Gate: ``g = softmax(relu(BN1d(FC(GAP(trunk_out)))))``, FC: C2 -> m, on the layer2 output (for WRN
    the raw pre-activation sum). ``forward(x)`` returns ``(branch_logits (m, B, K), gate (B, m))``.
    """

    def __init__(self, name: str, num_classes: int = 10, branches: int = 3, **options) -> None:
        super().__init__()
        if branches < 1:
            raise ValueError(f"branches must be >= 1, got {branches}")
        nets = [build(name, num_classes, **options) for _ in range(branches)]  # independent inits
        base = nets[0]
        self.arch, self.num_classes, self.options = base.arch, num_classes, dict(base.options)
        self.num_branches = branches
        self.stem, self.layer1, self.layer2 = base.stem, base.layer1, base.layer2
        self.branches = nn.ModuleList(_Branch(n.layer3, n.bn_final, n.fc) for n in nets)
        c2 = base.feature_channels["block2"]
        self.gate_fc, self.gate_bn = nn.Linear(c2, branches), nn.BatchNorm1d(branches)
        nn.init.zeros_(self.gate_fc.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.layer2(self.layer1(self.stem(x)))
        gate = F.softmax(F.relu(self.gate_bn(self.gate_fc(t.mean((2, 3))))), dim=1)
        return torch.stack([b(t) for b in self.branches]), gate


def build_one(name: str, num_classes: int = 10, branches: int = 3, **options) -> OneNet:
    """ONE multi-branch version of ``build(name, num_classes, **options)`` with ``branches`` branches."""
    return OneNet(name, num_classes, branches, **options)


def ensemble_logits(branch_logits: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """Gated ensemble ``z_e = sum_i g_i z_i``: (m, B, K), (B, m) -> (B, K)."""
    return torch.einsum("mbk,bm->bk", branch_logits, gate)


def extract_branch(one: OneNet, i: int) -> nn.Module:
    """Branch ``i`` of a ONE model as a plain student (``build(one.arch)``), weights copied (strict)."""
    if not 0 <= i < one.num_branches:
        raise IndexError(f"branch {i} out of range 0..{one.num_branches - 1}")
    ref = next(one.parameters())
    student = build(one.arch, one.num_classes, **one.options).to(device=ref.device, dtype=ref.dtype)
    state = one.state_dict()
    trunk = {k: v for k, v in state.items() if k.split(".", 1)[0] in ("stem", "layer1", "layer2")}
    prefix = f"branches.{i}."
    trunk.update({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    student.load_state_dict(trunk, strict=True)
    return student.train(one.training)
