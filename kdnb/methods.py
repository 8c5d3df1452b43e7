"""Distillation methods: one small class each, registered by name.

A method says which models it trains (``self.models``), whether it reads a teacher, its stages
(each with its own optimiser and schedule), the parameter groups updated in turn on every batch,
its loss for a batch, and which of its models are evaluated and deployed. The loop in
``kdnb.train`` knows nothing else about it. Loss terms are pure functions from ``kdnb.losses``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from kdnb import attacks, losses
from kdnb.config import ConfigError
from kdnb.models import WideResNet, build, build_one, ensemble_logits, extract_branch

METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    METHODS[cls.name] = cls
    return cls


@dataclass
class Stage:
    """One training stage: its length and its SGD schedule (lr multiplied by gamma at milestones)."""

    name: str
    epochs: int
    lr: float
    milestones: tuple[int, ...]  # 0-indexed epochs at whose start lr is multiplied by gamma
    gamma: float
    weight_decay: float
    momentum: float = 0.9
    batch_size: int = 128
    reusable: bool = False  # its result is stored and reused by runs whose stage config matches

    def lr_at(self, epoch: int) -> float:
        return self.lr * self.gamma ** sum(epoch >= m for m in self.milestones)


def scaled(epochs_at_200: float, cfg_epochs: int) -> int:
    """A recipe length given for the paper's 200-epoch scheme, scaled to ``cfg_epochs``."""
    return max(1, round(epochs_at_200 * cfg_epochs / 200))


class Method:
    """Base class: the baseline's behaviour (CE on one student, the standard scheme)."""

    name: ClassVar[str] = ""
    uses_teacher: ClassVar[bool] = False
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, cfg, teacher: nn.Module | None = None):
        self.cfg = cfg
        self.args = dict(cfg.method_args)
        self.teacher = teacher  # eval mode, frozen; not part of the checkpoint
        self.generator: torch.Generator | None = None  # set by the loop for methods that draw samples
        self.models = nn.ModuleDict(self.build_models())

    # --- what it trains -------------------------------------------------------------------
    def build_models(self) -> dict[str, nn.Module]:
        return {"student": self.new_student()}

    def new_student(self) -> nn.Module:
        return build(self.cfg.student, self.cfg.num_classes, shortcut=self.cfg.shortcut)

    @classmethod
    def check(cls, cfg) -> None:
        """Reject configurations this method cannot run (raise kdnb.config.ConfigError)."""

    # --- how it trains ---------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        c = self.cfg
        return [Stage("main", c.epochs, c.lr, tuple(round(m * c.epochs) for m in c.milestones), c.lr_decay,
                      c.weight_decay, c.momentum, c.batch_size)]

    def param_groups(self, stage: Stage) -> list[list[nn.Parameter]]:
        """Parameter groups, each with its own optimiser, updated one after another on each batch."""
        return [list(self.models.parameters())]

    def loss(self, x: torch.Tensor, y: torch.Tensor, stage: Stage, epoch: int,
             group: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(loss, logits used for the training accuracy) of parameter group ``group`` on a batch."""
        logits = self.models["student"](x)
        return F.cross_entropy(logits, y), logits

    def train(self) -> None:
        self.models.train()
        if self.teacher is not None:
            self.teacher.eval()

    # --- what it reports --------------------------------------------------------------------
    def eval_models(self) -> dict[str, nn.Module]:
        return {"student": self.models["student"]}

    def report(self, accs: dict[str, float]) -> float:
        """The accuracy reported for the run, from the accuracies of ``eval_models``."""
        return accs["student"]

    def deployed(self, accs: dict[str, float]) -> nn.Module:
        """The student network that the run delivers (its weights are stored as model.pt)."""
        return self.models["student"]

    # --- helpers ------------------------------------------------------------------------------
    @torch.no_grad()
    def teacher_forward(self, x: torch.Tensor, features: bool = False) -> Any:
        return self.teacher(x, features=features)

    def to(self, device: torch.device) -> Method:
        self.models.to(device)
        return self

    def parameters(self) -> Iterator[nn.Parameter]:
        return self.models.parameters()


@register
class Baseline(Method):
    """Cross-entropy only: the student trained without a teacher."""

    name = "baseline"


@register
class Hinton(Method):
    """(1 − α)·CE + α·T²·KL(p_t^T ‖ p_s^T), α = 0.9, T = 4 (paper Table I; spec part 1 §3)."""

    name = "hinton"
    uses_teacher = True
    defaults = {"alpha": 0.9, "T": 4.0}

    def loss(self, x, y, stage, epoch, group):
        logits = self.models["student"](x)
        t_logits = self.teacher_forward(x)
        a = self.args["alpha"]
        loss = (1 - a) * F.cross_entropy(logits, y) + a * losses.hinton_kd(logits, t_logits, self.args["T"])
        return loss, logits


# --- helpers shared by the distillation methods ----------------------------------------------------

# The feature taps of spec part 1 §2.3 in network order, each with the module that produces it.
TAP_MODULES = (("stem", "stem"), ("block1", "layer1"), ("block2", "layer2"), ("block3", "layer3"))
SPATIAL, CHANNELS = slice(1, None), slice(0, 1)  # parts of a tap's (C, H, W) shape


def forward_taps(net: nn.Module, x: torch.Tensor, taps: Sequence[str]) -> dict[str, torch.Tensor]:
    """The taps from ``stem`` up to the last of ``taps``, running only the modules they need, so the
    layers after it neither compute nor update their BN statistics."""
    feats: dict[str, torch.Tensor] = {}
    h = x
    for tap, attr in TAP_MODULES:
        if set(taps) <= feats.keys():
            break
        h = feats[tap] = getattr(net, attr)(h)
    return feats


def modules_up_to(tap: str) -> list[str]:
    """Attribute names of the modules from the stem up to the one producing ``tap``."""
    names = [attr for _, attr in TAP_MODULES]
    return names[: [t for t, _ in TAP_MODULES].index(tap) + 1]


@cache
def _meta_net(name: str, num_classes: int, shortcut: str) -> nn.Module:
    """The architecture without storage: for shapes and types in ``check``."""
    with torch.device("meta"):
        return build(name, num_classes, shortcut=shortcut)


def _shapes(cfg, name: str) -> dict[str, tuple[int, ...]]:
    return _meta_net(name, cfg.num_classes, cfg.shortcut).feature_shapes


def _require_taps(cfg, taps: Sequence[str]) -> None:
    valid = [t for t, _ in TAP_MODULES]
    for tap in taps:
        if tap not in valid:
            raise ConfigError(f"{cfg.method}: unknown feature map {tap!r}; valid: {', '.join(valid)}")


def _require_equal(cfg, taps: Sequence[str], dims: slice, what: str) -> None:
    """ConfigError unless student and teacher agree on ``dims`` of every tap's (C, H, W) shape."""
    _require_taps(cfg, taps)
    s, t = _shapes(cfg, cfg.student), _shapes(cfg, cfg.teacher)
    for tap in taps:
        if s[tap][dims] != t[tap][dims]:
            raise ConfigError(f"{cfg.method} needs equal {what} at {tap}: student {cfg.student} has {s[tap]}, "
                              f"teacher {cfg.teacher} has {t[tap]}")


def _choice(cfg, key: str, options: Sequence[str]) -> None:
    value = cfg.method_args[key]
    if value not in options:
        raise ConfigError(f"{cfg.method}: {key} {value!r} is not one of {', '.join(options)}")


def _recipe(cfg, args: dict[str, Any], name: str, prefix: str = "", reusable: bool = False) -> Stage:
    """A stage from the entries ``{prefix}epochs, lr, milestones, lr_decay, weight_decay[, batch_size]``
    of a method's args, given at the paper's 200-epoch scale and scaled to ``cfg.epochs``."""
    a = {k[len(prefix):]: v for k, v in args.items() if k.startswith(prefix)}
    return Stage(name, scaled(a["epochs"], cfg.epochs), a["lr"], tuple(scaled(m, cfg.epochs) for m in a["milestones"]),
                 a["lr_decay"], a["weight_decay"], cfg.momentum, a.get("batch_size", cfg.batch_size), reusable)


class _FeatureKD(Method):
    """CE plus weighted terms on student and teacher feature taps (AT, SP, RKD): one forward each."""

    uses_teacher = True

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, dict, dict]:
        logits, fs = self.models["student"](x, features=True)
        _, ft = self.teacher_forward(x, features=True)
        return logits, fs, ft


# --- BSS -------------------------------------------------------------------------------------------


@register
class BSS(Method):
    """CE + α_e·SCE_T(s, t) + β_e·SCE_T(s(x̂), t(x̂)) on x̂ = the teacher attacked towards sampled
    classes, for up to ``attack_size`` samples both models classify correctly (spec part 1 §4)."""

    name = "bss"
    uses_teacher = True
    defaults = {
        "T": 4.0,  # paper Table I (spec part 1 §4.5: no T²)
        "attack_size": 32,  # paper Table I
        "steps": 10,  # paper Table I "num steps"
        "eta": 0.06,  # DECISIONS.md: the official 0.3 × a pixel std of ≈ 0.2, for inputs in [0, 1]
        "max_eps": 16,  # paper Table I; no effect, as in the official code (spec part 1 §4.4)
        "bss_recipe": "official_200",  # spec part 1 §8.3; "standard" = the standard scheme (§8.1)
        # the official_200 recipe at the paper's 200-epoch scale (spec part 1 §8.3): lr 0.1 for 1-indexed
        # epochs 1-99, 0.01 for 100-149, 0.001 for 150-200, i.e. 0-indexed milestones 99 and 149
        "epochs": 200, "lr": 0.1, "milestones": (99, 149), "lr_decay": 0.1, "weight_decay": 1e-4, "batch_size": 256,
    }

    @classmethod
    def check(cls, cfg) -> None:
        _choice(cfg, "bss_recipe", ("official_200", "standard"))
        if not (isinstance(cfg.method_args["attack_size"], int) and cfg.method_args["attack_size"] >= 1):
            raise ConfigError(f"bss: attack_size {cfg.method_args['attack_size']!r} must be an integer >= 1")

    def stages(self) -> list[Stage]:
        if self.args["bss_recipe"] == "standard":
            return super().stages()
        return [_recipe(self.cfg, self.args, "main")]

    def loss(self, x, y, stage, epoch, group):
        a, student = self.args, self.models["student"]
        logits = student(x)
        t_logits = self.teacher_forward(x)
        alpha, beta = losses.bss_weights(epoch + 1, stage.epochs)  # §4.1: e counted from 1
        loss = F.cross_entropy(logits, y) + alpha * losses.soft_cross_entropy(logits, t_logits, a["T"])
        if beta == 0:  # §4.1: no attack once β_e = 0
            return loss, logits
        idx = attacks.bss_select(t_logits, logits, y, a["attack_size"])
        if len(idx) == 0:  # §4.1: no attack when no sample qualifies
            return loss, logits
        target = attacks.bss_targets(t_logits[idx], self.generator)
        x_adv = attacks.bss_attack(self.teacher, x[idx], target, a["steps"], a["eta"])  # clamps to [0, 1]
        adv = losses.soft_cross_entropy(student(x_adv), self.teacher_forward(x_adv), a["T"])  # §4.4: train mode
        return loss + beta * adv, logits


# --- FitNet and FSP: a reusable stage 1, then Hinton ------------------------------------------------


class _TwoStage(Hinton):
    """Stage 1 trains part of the student on a feature loss alone (reusable across runs that share
    it); stage 2 is Hinton under the standard scheme with a fresh optimiser over every student
    parameter (spec part 1 §5.1, §6.1, §8.2)."""

    stage1: ClassVar[str] = "stage1"
    defaults = {
        **Hinton.defaults,  # stage 2 (paper Table I)
        # stage 1 at the paper's 200-epoch scale: 100 epochs, lr 1e-3 ×0.1 at 60 and 80 (spec part 1 §8.2)
        "stage1_epochs": 100, "stage1_lr": 1e-3, "stage1_milestones": (60, 80), "stage1_lr_decay": 0.1,
        "stage1_weight_decay": 5e-4,
    }

    def stages(self) -> list[Stage]:
        return [_recipe(self.cfg, self.args, self.stage1, "stage1_", reusable=True), *super().stages()]

    def param_groups(self, stage: Stage) -> list[list[nn.Parameter]]:
        if stage.name == self.stage1:
            return [self.stage1_parameters()]
        return [list(self.models["student"].parameters())]

    def loss(self, x, y, stage, epoch, group):
        if stage.name != self.stage1:
            return super().loss(x, y, stage, epoch, group)
        return self.stage1_loss(x), None  # stage 1 computes no logits

    def stage1_parameters(self) -> list[nn.Parameter]:
        raise NotImplementedError

    def stage1_loss(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@register
class FitNet(_TwoStage):
    """Stage 1: MSE between r(student block 2) and teacher block 2, training only the stem, blocks
    1–2 and the regressor r (identity when shapes match); stage 2: Hinton (spec part 1 §5)."""

    name = "fitnet"
    stage1 = "hint"
    defaults = {
        **_TwoStage.defaults,
        "hint_layer": "block2",  # paper Table I, W = [0, 1, 0] (spec part 1 §5.2)
        "regressor": "auto",  # identity when (C, H, W) match, else a conv by the FitNets rule (§5.1); or "conv"
        "fitnet_reduction": "mean",  # §5.2; "paper" = ½Σ over C·H·W, ResNets only
    }

    @classmethod
    def check(cls, cfg) -> None:
        a = cfg.method_args
        _choice(cfg, "regressor", ("auto", "conv"))
        _choice(cfg, "fitnet_reduction", ("mean", "paper"))
        _require_equal(cfg, [a["hint_layer"]], SPATIAL, "spatial sizes")
        wrn = [n for n in (cfg.student, cfg.teacher) if isinstance(_meta_net(n, cfg.num_classes, cfg.shortcut),
                                                                     WideResNet)]
        if a["fitnet_reduction"] == "paper" and wrn:
            raise ConfigError(f"fitnet: fitnet_reduction 'paper' diverges on WRN ({wrn[0]}); use 'mean' "
                              "(spec part 1 §5.2)")

    def build_models(self) -> dict[str, nn.Module]:
        tap, c = self.args["hint_layer"], self.cfg
        s, t = _shapes(c, c.student)[tap], _shapes(c, c.teacher)[tap]
        if self.args["regressor"] == "auto" and s == t:
            regressor: nn.Module = nn.Identity()
        else:  # FitNets rule: kernel (H_s − H_t + 1) × (W_s − W_t + 1), with bias (§5.1)
            regressor = nn.Conv2d(s[0], t[0], (s[1] - t[1] + 1, s[2] - t[2] + 1))
        return {"student": self.new_student(), "regressor": regressor}  # the regressor serves stage 1 only

    def stage1_parameters(self) -> list[nn.Parameter]:
        student = self.models["student"]
        params = [p for attr in modules_up_to(self.args["hint_layer"]) for p in getattr(student, attr).parameters()]
        return params + list(self.models["regressor"].parameters())

    def stage1_loss(self, x: torch.Tensor) -> torch.Tensor:
        tap = self.args["hint_layer"]
        s = forward_taps(self.models["student"], x, [tap])[tap]
        t = self.teacher_forward(x, features=True)[1][tap]
        hint = losses.fitnet(self.models["regressor"](s), t)
        if self.args["fitnet_reduction"] == "paper":  # ½Σ over C·H·W, mean over the batch (§5.2)
            hint = hint * t[0].numel() / 2
        return hint


@register
class FSP(_TwoStage):
    """Stage 1: Σ_i W_i·mean (G_i^S − G_i^T)² over (block input, block output) FSP matrices, training
    every student layer but the classifier; stage 2: Hinton (spec part 1 §6)."""

    name = "fsp"
    stage1 = "fsp_init"
    defaults = {
        **_TwoStage.defaults,
        "pairs": (("stem", "block1"), ("block1", "block2"), ("block2", "block3")),  # §6.1
        "weights": (1.0, 3.0, 1.0),  # paper Table I
    }

    @classmethod
    def check(cls, cfg) -> None:
        a = cfg.method_args
        if len(a["pairs"]) != len(a["weights"]) or any(len(p) != 2 for p in a["pairs"]):
            raise ConfigError(f"fsp: pairs {a['pairs']!r} must be (input, output) tap pairs, one per weight")
        taps = [t for pair in a["pairs"] for t in pair]
        _require_equal(cfg, taps, CHANNELS, "channel widths")  # FSP matrices are C_in × C_out (§6.1)
        _require_equal(cfg, taps, SPATIAL, "spatial sizes")

    def stage1_parameters(self) -> list[nn.Parameter]:  # the classifier stays out (§6.1)
        return [p for name, m in self.models["student"].named_children() if name != "fc" for p in m.parameters()]

    def stage1_loss(self, x: torch.Tensor) -> torch.Tensor:
        pairs = [tuple(p) for p in self.args["pairs"]]
        s = forward_taps(self.models["student"], x, [t for p in pairs for t in p])
        t = self.teacher_forward(x, features=True)[1]
        return losses.fsp([(s[a], s[b]) for a, b in pairs], [(t[a], t[b]) for a, b in pairs], self.args["weights"])


# --- AT, SP, RKD: CE + a weighted feature term --------------------------------------------------


@register
class AT(_FeatureKD):
    """CE + β·Σ_j attention(block j), β = 1000, blocks 1–3 (spec part 1 §7)."""

    name = "at"
    defaults = {"beta": 1000.0, "layers": ("block1", "block2", "block3")}  # paper Table I

    @classmethod
    def check(cls, cfg) -> None:
        _require_equal(cfg, cfg.method_args["layers"], SPATIAL, "spatial sizes")

    def loss(self, x, y, stage, epoch, group):
        logits, fs, ft = self.features(x)
        layers = self.args["layers"]
        at = losses.attention([fs[k] for k in layers], [ft[k] for k in layers])
        return F.cross_entropy(logits, y) + self.args["beta"] * at, logits


@register
class SP(_FeatureKD):
    """CE + γ·SP(block 3), γ = 3000 (spec part 2 §1). Gram matrices are B × B, so widths and
    spatial sizes may differ."""

    name = "sp"
    defaults = {"gamma": 3000.0, "layer": "block3"}  # paper Table I; spec part 2 §1.2

    @classmethod
    def check(cls, cfg) -> None:
        _require_taps(cfg, [cfg.method_args["layer"]])

    def loss(self, x, y, stage, epoch, group):
        logits, fs, ft = self.features(x)
        tap = self.args["layer"]
        return F.cross_entropy(logits, y) + self.args["gamma"] * losses.similarity_preserving(fs[tap], ft[tap]), logits


class _RKD(_FeatureKD):
    """CE + λ_D·L_D + λ_A·L_A on the pooled embedding (or block 3 flattened) (spec part 2 §2.3).
    The three registered variants differ only in their default weights."""

    FEATURES: ClassVar[dict[str, str]] = {"pool": "pool", "block3_flat": "block3"}  # spec part 2 §2.3

    @classmethod
    def check(cls, cfg) -> None:
        _choice(cfg, "rkd_feature", tuple(cls.FEATURES))

    def loss(self, x, y, stage, epoch, group):
        logits, fs, ft = self.features(x)
        tap, a = self.FEATURES[self.args["rkd_feature"]], self.args
        loss = F.cross_entropy(logits, y)
        if a["w_d"]:
            loss = loss + a["w_d"] * losses.rkd_distance(fs[tap], ft[tap])
        if a["w_a"]:
            loss = loss + a["w_a"] * losses.rkd_angle(fs[tap], ft[tap])
        return loss, logits


@register
class RKDDistance(_RKD):
    name = "rkd_d"
    defaults = {"w_d": 25.0, "w_a": 0.0, "rkd_feature": "pool"}  # paper Table I; spec part 2 §2.3


@register
class RKDAngle(_RKD):
    name = "rkd_a"
    defaults = {"w_d": 0.0, "w_a": 50.0, "rkd_feature": "pool"}  # paper Table I; spec part 2 §2.3


@register
class RKDDistanceAngle(_RKD):
    name = "rkd_da"
    defaults = {"w_d": 25.0, "w_a": 50.0, "rkd_feature": "pool"}  # paper Table I; spec part 2 §2.3


# --- ONE ------------------------------------------------------------------------------------------


class _OneView(nn.Module):
    """Branch ``index`` of a OneNet, or its gated ensemble when ``index`` is None. Views sharing a
    ``cache`` run the OneNet once per batch (``evaluate`` feeds each model the same tensor)."""

    def __init__(self, one: nn.Module, index: int | None, cache: dict) -> None:
        super().__init__()
        self.one, self.index, self.cache = one, index, cache

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cache.get("x") is not x:
            self.cache.update(x=x, out=self.one(x))
        z, gate = self.cache["out"]
        return ensemble_logits(z, gate) if self.index is None else z[self.index]


@register
class ONE(Method):
    """On-the-fly native ensemble: a shared trunk with ``branches`` copies of stage 3 and a gate,
    Σ_i CE_i + CE_e + w(t)·T²·Σ_i KL(p_e ‖ p_i); the best branch is the student (spec part 2 §3)."""

    name = "one"
    defaults = {
        "branches": 3, "T": 3.0,  # spec part 2 §3.1, §3.2
        "rampup": 80, "target_eps": 0.0,  # §3.2: 80-epoch ramp (0 disables it) of a 300-epoch run; paper form
        # §3.3 at the paper's 200-epoch scale: 300 epochs, lr 0.1 ÷10 at 150 and 225, wd 1e-4, batch 128
        "epochs": 300, "lr": 0.1, "milestones": (150, 225), "lr_decay": 0.1, "weight_decay": 1e-4, "batch_size": 128,
    }

    def build_models(self) -> dict[str, nn.Module]:
        c = self.cfg
        return {"one": build_one(c.student, c.num_classes, self.args["branches"], shortcut=c.shortcut)}

    def stages(self) -> list[Stage]:
        return [_recipe(self.cfg, self.args, "main")]

    def loss(self, x, y, stage, epoch, group):
        a = self.args
        z, gate = self.models["one"](x)
        rampup = scaled(a["rampup"], self.cfg.epochs) if a["rampup"] else 0
        w = losses.one_rampup(epoch, rampup)
        return losses.one(z, gate, y, a["T"], w, a["target_eps"]), ensemble_logits(z.detach(), gate.detach())

    def _branches(self) -> list[str]:
        return [f"branch{i + 1}" for i in range(self.args["branches"])]

    def eval_models(self) -> dict[str, nn.Module]:
        cache: dict = {}
        views = {k: _OneView(self.models["one"], i, cache) for i, k in enumerate(self._branches())}
        return {**views, "ensemble": _OneView(self.models["one"], None, cache)}

    def report(self, accs: dict[str, float]) -> float:  # the best single branch (paper §III)
        return max(accs[k] for k in self._branches())

    def deployed(self, accs: dict[str, float]) -> nn.Module:
        best = max(range(self.args["branches"]), key=lambda i: accs[self._branches()[i]])
        return extract_branch(self.models["one"], best)


# --- DML ------------------------------------------------------------------------------------------


@register
class DML(Method):
    """Deep mutual learning: a cohort of students, each CE + T²·KL(p_peer^T ‖ p^T) averaged over
    its peers (detached), updated one after another on the same batch (spec part 2 §4)."""

    name = "dml"
    _logits: list[torch.Tensor] | None = None  # the cohort's logits of the current batch ("simultaneous")
    defaults = {"T": 4.0, "cohort": 2, "mode": "alternating"}  # paper Table I; spec part 2 §4.1, §4.2

    @classmethod
    def check(cls, cfg) -> None:
        _choice(cfg, "mode", ("alternating", "simultaneous"))
        if not (isinstance(cfg.method_args["cohort"], int) and cfg.method_args["cohort"] >= 2):
            raise ConfigError(f"dml: cohort {cfg.method_args['cohort']!r} must be an integer >= 2")

    def build_models(self) -> dict[str, nn.Module]:  # built in turn, so each has its own initialisation
        return {f"member{i + 1}": self.new_student() for i in range(self.args["cohort"])}

    def param_groups(self, stage: Stage) -> list[list[nn.Parameter]]:
        return [list(m.parameters()) for m in self.models.values()]

    def loss(self, x, y, stage, epoch, group):
        members = list(self.models.values())
        if self.args["mode"] == "simultaneous":  # one forward of the cohort per batch, peers detached
            if group == 0:
                self._logits = [m(x) for m in members]
            z, peers = self._logits[group], [p.detach() for i, p in enumerate(self._logits) if i != group]
            if group == len(members) - 1:
                self._logits = None
        else:  # §4.2: the peers' logits are recomputed, so later members see the earlier members' updates
            z = members[group](x)
            with torch.no_grad():  # train mode, as in Algorithm 1
                peers = [m(x) for i, m in enumerate(members) if i != group]
        mutual = sum(losses.mutual(z, p, self.args["T"]) for p in peers) / len(peers)
        return F.cross_entropy(z, y) + mutual, z

    def eval_models(self) -> dict[str, nn.Module]:
        return dict(self.models.items())

    def report(self, accs: dict[str, float]) -> float:  # the better cohort member (paper §III)
        return max(accs.values())

    def deployed(self, accs: dict[str, float]) -> nn.Module:
        return self.models[max(accs, key=accs.get)]
