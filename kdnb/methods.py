"""Distillation methods: one small class each, registered by name.

A method owns what is particular to it: the models it trains (``self.models``), whether it reads a
teacher, its stages (each with its own optimisers and schedule), its loss on a batch as named terms,
the step that turns them into updates, its random stream (``self.generator``), the key under which a
finished stage is reused, which models are evaluated and deployed, and the checks of its arguments
(:func:`validate`, which ``kdnb.config`` calls: config builds on this module, never the reverse). The
loop in ``kdnb.train`` knows nothing else about it. Loss terms are pure functions from ``kdnb.losses``;
constants are each method's ``defaults``. A user's method is the same class in the user's own file,
loaded by :func:`load_plugin` (book/add-method.md).

A batch goes ``step`` -> ``loss`` (under the run's one autocast context) -> :func:`objectives` -> one
backward and SGD step per optimiser. Terms of a method that updates several models in turn are named
``<model>/<term>``; the terms of each model add up to the loss its optimiser minimises.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import operator
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kdnb import ConfigError, attacks, losses
from kdnb.models import TAPS, build, build_one, ensemble_logits, extract_branch, family, feature_shapes
from kdnb.store import config_hash

Config = Any  # a kdnb.config.RunConfig: not imported, since config imports this module (no cycle)
METHODS: dict[str, type[Method]] = {}
PAPER_EPOCHS = 200  # every recipe is given at the paper's 200-epoch scale (protocol § Training)
SPATIAL_TAPS = TAPS[:4]  # the maps a feature loss may read (protocol § Feature taps)
Terms = dict[str, Tensor]


def register(cls: type[Method]) -> type[Method]:
    METHODS[cls.name] = cls
    return cls


@functools.cache
def load_plugin(path: str | os.PathLike) -> list[type[Method]]:
    """Import a user's method file (book/add-method.md) and return the classes it registers, each marked
    ``plugin`` = {file, sha256 of its text} for its runs' records. A file that is missing, fails at import,
    or registers no class or a taken name raises ConfigError naming it and why, the registry left as it was."""
    file, before = Path(path), dict(METHODS)
    sha = hashlib.sha256(file.read_bytes()).hexdigest() if file.is_file() else ""
    module = f"kdnb_plugin_{file.stem}_{sha[:12]}"
    try:
        if not sha:
            raise ConfigError("file not found")
        spec = importlib.util.spec_from_file_location(module, file)
        sys.modules[module] = importlib.util.module_from_spec(spec)  # where dataclasses and pickle look
        spec.loader.exec_module(sys.modules[module])
        new = [c for n, c in METHODS.items() if before.get(n) is not c]
        if taken := [c.name for c in new if c.name in before] or not new:
            raise ConfigError("registers no method (decorate its Method subclass with @kdnb.methods.register)"
                              if not new else f"method name {taken[0]!r} is taken by " +
                              ("a built-in method" if before[taken[0]].plugin is None else "another plugin"))
    except Exception as err:
        sys.modules.pop(module, None)
        METHODS.clear()
        METHODS.update(before)
        why = (str(err).strip().splitlines() or [""])[0]
        raise ConfigError(f"plugin {path}: " + (why if isinstance(err, ConfigError) else
                                                f"{type(err).__name__} at import: {why}".rstrip(": "))) from None
    for c in new:
        c.plugin = {"file": str(path), "sha256": sha}
    return new


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

    def lr_at(self, epoch: int) -> float:
        return self.lr * self.gamma ** sum(epoch >= m for m in self.milestones)


def scaled(epochs_at_200: float, cfg_epochs: int) -> int:
    """A recipe length given for the paper's 200-epoch scheme, scaled to ``cfg_epochs`` (at least 1)."""
    return max(1, round(epochs_at_200 * cfg_epochs / PAPER_EPOCHS))


def autocast(precision: str, device_type: str) -> contextlib.AbstractContextManager:
    """The run's one autocast context, entered around every forward and loss: bf16 or none."""
    return torch.autocast(device_type, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()


def total(terms: Terms) -> Tensor:
    """The sum of named terms, in their order."""
    return functools.reduce(operator.add, terms.values())


def objectives(terms: Terms) -> list[Tensor]:
    """The loss of each model updated in turn (terms ``<model>/<term>``), in update order; terms
    without a model prefix make one objective."""
    groups: dict[str, Terms] = {}
    for k, v in terms.items():
        groups.setdefault(k.rpartition("/")[0], {})[k] = v
    return [total(g) for g in groups.values()]


def _update(opt: torch.optim.Optimizer, loss: Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


class Method:
    """Base class: the baseline's behaviour (CE on one student, the standard scheme, one optimiser)."""

    name: ClassVar[str] = ""
    uses_teacher: ClassVar[bool] = False
    # its teacher's logits on the batch come from teacher_logits, which the loop may serve from a cache (kdnb.train)
    teacher_logit_cache: ClassVar[bool] = False
    defaults: ClassVar[dict[str, Any]] = {}
    plugin: ClassVar[dict[str, str] | None] = None  # a plugin's file and sha256 (load_plugin); None: built in

    def __init__(self, cfg: Config, teacher: nn.Module | None = None):
        self.cfg = cfg
        self.args = dict(cfg.method_args)
        self.teacher = teacher  # eval mode, frozen; not part of the checkpoint
        self.cached_logits: tuple[Tensor, Tensor] | None = None  # (batch, its teacher logits), set by the loop
        self.models = nn.ModuleDict(self.build_models())
        self.generator = torch.Generator().manual_seed(cfg.seed_for("method"))  # protocol § Seeds
        self.autocast = autocast(cfg.precision, "cpu")

    def to(self, device: str | torch.device) -> Method:
        """Move the models; the autocast context follows ``device``, the random stream stays on the CPU on every
        device, so a run resumes on another (protocol § Seeds)."""
        device = torch.device(device)
        self.models.to(device)
        self.autocast = autocast(self.cfg.precision, device.type)
        return self

    # --- what it trains -------------------------------------------------------------------
    def build_models(self) -> dict[str, nn.Module]:
        return {"student": self.new_student()}

    def new_student(self) -> nn.Module:
        return build(self.cfg.student, self.cfg.num_classes, shortcut=self.cfg.shortcut)

    @classmethod
    def check(cls, cfg: Config) -> None:
        """Reject configurations this method cannot run (raise ConfigError)."""

    # --- how it trains ---------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        c = self.cfg
        return [Stage("main", c.epochs, c.lr, tuple(round(m * c.epochs) for m in c.milestones), c.lr_decay,
                      c.weight_decay, c.momentum, c.batch_size)]

    def stage_key(self, index: int, stage: Stage) -> str | None:
        """The key under which the finished stage ``index`` is stored for other runs; None: not reused."""
        return None

    def param_groups(self, stage: Stage) -> list[list[nn.Parameter]]:
        """Parameter groups, each with its own optimiser, updated one after another on each batch."""
        return [list(self.models.parameters())]

    def optimizers(self, stage: Stage) -> list[torch.optim.Optimizer]:
        return [torch.optim.SGD(g, lr=stage.lr, momentum=stage.momentum, weight_decay=stage.weight_decay)
                for g in self.param_groups(stage)]

    def loss(self, x: Tensor, y: Tensor, stage: Stage, epoch: int) -> tuple[Terms, Tensor | None]:
        """(named loss terms, logits for the training accuracy or None) of a batch."""
        logits = self.models["student"](x)
        return {"ce": F.cross_entropy(logits, y)}, logits

    def step(self, x: Tensor, y: Tensor, stage: Stage, epoch: int,
             optimizers: Sequence[torch.optim.Optimizer]) -> tuple[Terms, Tensor | None]:
        """One batch: the loss under autocast, then each optimiser's backward and step. Returns ``loss``'s."""
        with self.autocast:
            terms, logits = self.loss(x, y, stage, epoch)
            objective = objectives(terms)
        for opt, loss in zip(optimizers, objective, strict=True):
            _update(opt, loss)
        return terms, logits

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
    def teacher_forward(self, x: Tensor, features: bool = False) -> Any:
        return self.teacher(x, features=features)

    def teacher_logits(self, x: Tensor) -> Tensor:
        """The teacher's logits on ``x``: those the loop cached if ``x`` is the batch it gave, else a forward."""
        return c[1] if (c := self.cached_logits) is not None and c[0] is x else self.teacher_forward(x)

    @torch.no_grad()
    def teacher_taps(self, x: Tensor, taps: Sequence[str]) -> dict[str, Tensor]:
        return self.teacher.forward_intermediates(x, taps)

    def modules(self) -> Iterator[nn.Module]:
        """Every network the method runs: its models and the teacher (for layout and compile)."""
        yield from self.models.values()
        if self.teacher is not None:
            yield self.teacher


@register
class Baseline(Method):
    """Cross-entropy only: the student trained without a teacher."""

    name = "baseline"


@register
class Hinton(Method):
    """(1 − α)·CE + α·T²·KL(p_t^T ‖ p_s^T) (protocol § Hinton)."""

    name = "hinton"
    uses_teacher = teacher_logit_cache = True
    defaults = {"alpha": 0.9, "T": 4.0}  # paper Table I

    def loss(self, x, y, stage, epoch):
        logits = self.models["student"](x)
        t_logits = self.teacher_logits(x)
        a, T = self.args["alpha"], self.args["T"]
        return {"ce": (1 - a) * F.cross_entropy(logits, y), "kd": a * losses.hinton_kd(logits, t_logits, T)}, logits


# --- validation, and helpers shared by the distillation methods -------------------------------------


def validate(cfg: Config) -> Config:
    """The method's part of a config's validation: a known name, a teacher when it reads one, known
    arguments (their defaults filled in), then the method's own ``check``. Returns the config."""
    if cfg.method not in METHODS:
        raise ConfigError(f"unknown method {cfg.method!r}; valid: {', '.join(METHODS)}")
    method = METHODS[cfg.method]
    if method.uses_teacher and cfg.teacher is None:
        raise ConfigError(f"method {cfg.method!r} needs a teacher model (set teacher)")
    if not method.uses_teacher:
        cfg.teacher, cfg.teacher_run = None, None
    if not isinstance(cfg.method_args, dict):
        raise ConfigError(f"method_args {cfg.method_args!r} must be a mapping")
    if bad := sorted(set(cfg.method_args) - set(method.defaults)):
        valid = ", ".join(method.defaults) or "(none)"
        raise ConfigError(f"unknown argument {bad[0]!r} for method {cfg.method!r}; valid: {valid}")
    cfg.method_args, cfg.plugin = {**method.defaults, **cfg.method_args}, method.plugin
    method.check(cfg)
    return cfg


def _require_taps(cfg: Config, taps: Sequence[str]) -> None:
    for tap in taps:
        if tap not in SPATIAL_TAPS:
            raise ConfigError(f"{cfg.method}: unknown feature map {tap!r}; valid: {', '.join(SPATIAL_TAPS)}")


def _require_equal(cfg: Config, taps: Sequence[str], dims: slice, what: str) -> None:
    """ConfigError unless student and teacher agree on ``dims`` of every tap's (C, H, W) shape."""
    _require_taps(cfg, taps)
    s, t = feature_shapes(cfg.student), feature_shapes(cfg.teacher)
    for tap in taps:
        if s[tap][dims] != t[tap][dims]:
            raise ConfigError(f"{cfg.method} needs equal {what} at {tap}: student {cfg.student} has {s[tap]}, "
                              f"teacher {cfg.teacher} has {t[tap]}")


SPATIAL, CHANNELS = slice(1, None), slice(0, 1)  # parts of a tap's (C, H, W) shape


def _choice(cfg: Config, key: str, options: Sequence[str]) -> None:
    if (value := cfg.method_args[key]) not in options:
        raise ConfigError(f"{cfg.method}: {key} {value!r} is not one of {', '.join(options)}")


def _positive_int(cfg: Config, key: str, low: int) -> None:
    if not (isinstance(value := cfg.method_args[key], int) and value >= low):
        raise ConfigError(f"{cfg.method}: {key} {value!r} must be an integer >= {low}")


def _recipe(cfg: Config, args: dict[str, Any], name: str, prefix: str = "") -> Stage:
    """A stage from the entries ``{prefix}epochs, lr, milestones, lr_decay, weight_decay[, batch_size]``
    of a method's args, given at the paper's 200-epoch scale and scaled to ``cfg.epochs``."""
    a = {k[len(prefix):]: v for k, v in args.items() if k.startswith(prefix)}
    return Stage(name, scaled(a["epochs"], cfg.epochs), a["lr"], tuple(scaled(m, cfg.epochs) for m in a["milestones"]),
                 a["lr_decay"], a["weight_decay"], cfg.momentum, a.get("batch_size", cfg.batch_size))


class _FeatureKD(Method):
    """CE plus weighted terms on student and teacher feature taps (AT, SP, RKD): one forward each."""

    uses_teacher = True

    def features(self, x: Tensor) -> tuple[Tensor, dict, dict]:
        logits, fs = self.models["student"](x, features=True)
        _, ft = self.teacher_forward(x, features=True)
        return logits, fs, ft


# --- BSS -------------------------------------------------------------------------------------------


@register
class BSS(Method):
    """CE + α_e·SCE_T(s, t) + β_e·SCE_T(s(x̂), t(x̂)) on x̂ = the teacher attacked towards sampled
    classes, for up to ``attack_size`` samples both models classify correctly (protocol § BSS)."""

    name = "bss"
    uses_teacher = True
    defaults = {
        "T": 4.0,  # paper Table I; no T² (protocol § BSS)
        "attack_size": 32,  # paper Table I
        "steps": 10,  # paper Table I "num steps"
        "eta": 0.06,  # the official 0.3 × a pixel std of ≈ 0.2, for inputs in [0, 1] (protocol § BSS)
        "max_eps": 16,  # paper Table I; no effect, as in the official code (protocol § BSS)
        "bss_recipe": "official_200",  # or "standard", the standard scheme (protocol § BSS)
        # official_200 at the paper's scale: lr 0.1, ×0.1 at epochs 100 and 150 (0-indexed 99, 149), wd 1e-4,
        # batch 256 (protocol § BSS)
        "epochs": 200, "lr": 0.1, "milestones": (99, 149), "lr_decay": 0.1, "weight_decay": 1e-4, "batch_size": 256}

    @classmethod
    def check(cls, cfg) -> None:
        _choice(cfg, "bss_recipe", ("official_200", "standard"))
        _positive_int(cfg, "attack_size", 1)

    def stages(self) -> list[Stage]:
        if self.args["bss_recipe"] == "standard":
            return super().stages()
        return [_recipe(self.cfg, self.args, "main")]

    def loss(self, x, y, stage, epoch):
        a, student = self.args, self.models["student"]
        logits = student(x)
        t_logits = self.teacher_forward(x)
        alpha, beta = losses.bss_weights(epoch + 1, stage.epochs)  # e counted from 1
        terms = {"ce": F.cross_entropy(logits, y), "kd": alpha * losses.soft_cross_entropy(logits, t_logits, a["T"])}
        idx = attacks.bss_select(t_logits, logits, y, a["attack_size"]) if beta else []
        if len(idx) == 0:  # no attack once β_e = 0, nor when no sample qualifies (protocol § BSS)
            return terms, logits
        target = attacks.bss_targets(t_logits[idx], self.generator)
        x_adv = attacks.bss_attack(self.teacher, x[idx], target, a["steps"], a["eta"])  # clamps to [0, 1]
        adv = losses.soft_cross_entropy(student(x_adv), self.teacher_forward(x_adv), a["T"])  # train mode
        return {**terms, "boundary": beta * adv}, logits


# --- FitNet and FSP: a reusable stage 1, then Hinton ------------------------------------------------


class _TwoStage(Hinton):
    """Stage 1 trains part of the student on a feature loss alone; stage 2 is Hinton under the standard
    scheme with a fresh optimiser over every student parameter (protocol § FitNet, § FSP). A finished
    stage 1 is stored and reused by every run with the same stage-1 configuration."""

    stage1: ClassVar[str] = "stage1"
    defaults = {
        **Hinton.defaults,  # stage 2 (paper Table I)
        # stage 1 at the paper's scale: 100 epochs, lr 1e-3 ×0.1 at 60 and 80, wd 5e-4 (protocol § FitNet)
        "stage1_epochs": 100, "stage1_lr": 1e-3, "stage1_milestones": (60, 80), "stage1_lr_decay": 0.1,
        "stage1_weight_decay": 5e-4}

    def stages(self) -> list[Stage]:
        return [_recipe(self.cfg, self.args, self.stage1, "stage1_"), *super().stages()]

    def stage_key(self, index: int, stage: Stage) -> str | None:
        """The run's identity without what only stage 2 reads, plus the stage's own schedule."""
        if stage.name != self.stage1:
            return None
        ident = self.cfg.identity()
        ident.update(stage=index, stage_name=stage.name, stage_spec=[stage.epochs, stage.lr, list(stage.milestones),
                                                                     stage.gamma, stage.weight_decay, stage.batch_size])
        for later in ("epochs", "lr", "milestones", "lr_decay", "method"):
            ident.pop(later)
        return config_hash(ident)

    def param_groups(self, stage: Stage) -> list[list[nn.Parameter]]:
        if stage.name == self.stage1:
            return [self.stage1_parameters()]
        return [list(self.models["student"].parameters())]

    def loss(self, x, y, stage, epoch):
        if stage.name != self.stage1:
            return super().loss(x, y, stage, epoch)
        return self.stage1_loss(x), None  # stage 1 computes no logits

    def stage1_parameters(self) -> list[nn.Parameter]:
        raise NotImplementedError

    def stage1_loss(self, x: Tensor) -> Terms:
        raise NotImplementedError


@register
class FitNet(_TwoStage):
    """Stage 1: MSE between r(student block 2) and teacher block 2, training only the stem, blocks
    1–2 and the regressor r (identity when shapes match); stage 2: Hinton (protocol § FitNet)."""

    name = "fitnet"
    stage1 = "hint"
    defaults = {**_TwoStage.defaults,
                "hint_layer": "block2",  # paper Table I, W = [0, 1, 0]
                "regressor": "auto",  # identity when (C, H, W) match, else a conv by the FitNets rule; or "conv"
                "fitnet_reduction": "mean"}  # or "paper" = ½Σ over C·H·W, ResNets only (protocol § FitNet)

    @classmethod
    def check(cls, cfg) -> None:
        a = cfg.method_args
        _choice(cfg, "regressor", ("auto", "conv"))
        _choice(cfg, "fitnet_reduction", ("mean", "paper"))
        _require_equal(cfg, [a["hint_layer"]], SPATIAL, "spatial sizes")
        wrn = [n for n in (cfg.student, cfg.teacher) if family(n) == "wrn"]
        if a["fitnet_reduction"] == "paper" and wrn:
            raise ConfigError(f"fitnet: fitnet_reduction 'paper' diverges on WRN ({wrn[0]}); use 'mean' "
                              "(protocol § FitNet)")

    def build_models(self) -> dict[str, nn.Module]:
        tap, c = self.args["hint_layer"], self.cfg
        s, t = feature_shapes(c.student)[tap], feature_shapes(c.teacher)[tap]
        if self.args["regressor"] == "auto" and s == t:
            regressor: nn.Module = nn.Identity()
        else:  # FitNets rule: kernel (H_s − H_t + 1) × (W_s − W_t + 1), with bias
            regressor = nn.Conv2d(s[0], t[0], (s[1] - t[1] + 1, s[2] - t[2] + 1))
        return {"student": self.new_student(), "regressor": regressor}  # the regressor serves stage 1 only

    def stage1_parameters(self) -> list[nn.Parameter]:
        student = self.models["student"]
        params = [p for m in student.tap_modules(self.args["hint_layer"]) for p in m.parameters()]
        return params + list(self.models["regressor"].parameters())

    def stage1_loss(self, x: Tensor) -> Terms:
        tap = self.args["hint_layer"]
        s = self.models["student"].forward_intermediates(x, [tap])[tap]
        t = self.teacher_taps(x, [tap])[tap]
        hint = losses.fitnet(self.models["regressor"](s), t)
        if self.args["fitnet_reduction"] == "paper":  # ½Σ over C·H·W, mean over the batch
            hint = hint * t[0].numel() / 2
        return {"hint": hint}


@register
class FSP(_TwoStage):
    """Stage 1: Σ_i W_i·mean (G_i^S − G_i^T)² over (block input, block output) FSP matrices, training
    every student layer but the classifier; stage 2: Hinton (protocol § FSP)."""

    name = "fsp"
    stage1 = "fsp_init"
    defaults = {**_TwoStage.defaults,
                "pairs": (("stem", "block1"), ("block1", "block2"), ("block2", "block3")),  # protocol § FSP
                "weights": (1.0, 3.0, 1.0)}  # paper Table I

    @classmethod
    def check(cls, cfg) -> None:
        a = cfg.method_args
        if len(a["pairs"]) != len(a["weights"]) or any(len(p) != 2 for p in a["pairs"]):
            raise ConfigError(f"fsp: pairs {a['pairs']!r} must be (input, output) tap pairs, one per weight")
        taps = [t for pair in a["pairs"] for t in pair]
        _require_equal(cfg, taps, CHANNELS, "channel widths")  # FSP matrices are C_in × C_out
        _require_equal(cfg, taps, SPATIAL, "spatial sizes")

    def stage1_parameters(self) -> list[nn.Parameter]:  # the classifier stays out (protocol § FSP)
        return [p for name, m in self.models["student"].named_children() if name != "fc" for p in m.parameters()]

    def stage1_loss(self, x: Tensor) -> Terms:
        pairs = [tuple(p) for p in self.args["pairs"]]
        taps = [t for p in pairs for t in p]
        s, t = self.models["student"].forward_intermediates(x, taps), self.teacher_taps(x, taps)
        return {"fsp": losses.fsp([(s[a], s[b]) for a, b in pairs], [(t[a], t[b]) for a, b in pairs],
                                  self.args["weights"])}


# --- AT, SP, RKD: CE + a weighted feature term --------------------------------------------------


@register
class AT(_FeatureKD):
    """CE + β·Σ_j attention(block j) (protocol § AT)."""

    name = "at"
    defaults = {"beta": 1000.0, "layers": ("block1", "block2", "block3")}  # paper Table I

    @classmethod
    def check(cls, cfg) -> None:
        _require_equal(cfg, cfg.method_args["layers"], SPATIAL, "spatial sizes")

    def loss(self, x, y, stage, epoch):
        logits, fs, ft = self.features(x)
        layers = self.args["layers"]
        at = losses.attention([fs[k] for k in layers], [ft[k] for k in layers])
        return {"ce": F.cross_entropy(logits, y), "at": self.args["beta"] * at}, logits


@register
class SP(_FeatureKD):
    """CE + γ·SP(block 3) (protocol § SP). Gram matrices are B × B, so widths and spatial sizes may differ."""

    name = "sp"
    defaults = {"gamma": 3000.0, "layer": "block3"}  # paper Table I

    @classmethod
    def check(cls, cfg) -> None:
        _require_taps(cfg, [cfg.method_args["layer"]])

    def loss(self, x, y, stage, epoch):
        logits, fs, ft = self.features(x)
        tap = self.args["layer"]
        sp = losses.similarity_preserving(fs[tap], ft[tap])
        return {"ce": F.cross_entropy(logits, y), "sp": self.args["gamma"] * sp}, logits


class _RKD(_FeatureKD):
    """CE + λ_D·L_D + λ_A·L_A on the pooled embedding (or block 3 flattened) (protocol § RKD).
    The three registered variants differ only in their default weights."""

    FEATURES: ClassVar[dict[str, str]] = {"pool": "pool", "block3_flat": "block3"}  # protocol § RKD

    @classmethod
    def check(cls, cfg) -> None:
        _choice(cfg, "rkd_feature", tuple(cls.FEATURES))

    def loss(self, x, y, stage, epoch):
        logits, fs, ft = self.features(x)
        tap, a = self.FEATURES[self.args["rkd_feature"]], self.args
        terms = {"ce": F.cross_entropy(logits, y)}
        if a["w_d"]:
            terms["distance"] = a["w_d"] * losses.rkd_distance(fs[tap], ft[tap])
        if a["w_a"]:
            terms["angle"] = a["w_a"] * losses.rkd_angle(fs[tap], ft[tap])
        return terms, logits


@register
class RKDDistance(_RKD):
    name = "rkd_d"
    defaults = {"w_d": 25.0, "w_a": 0.0, "rkd_feature": "pool"}  # paper Table I


@register
class RKDAngle(_RKD):
    name = "rkd_a"
    defaults = {"w_d": 0.0, "w_a": 50.0, "rkd_feature": "pool"}  # paper Table I


@register
class RKDDistanceAngle(_RKD):
    name = "rkd_da"
    defaults = {"w_d": 25.0, "w_a": 50.0, "rkd_feature": "pool"}  # paper Table I


# --- ONE ------------------------------------------------------------------------------------------


class _OneView(nn.Module):
    """Branch ``index`` of a OneNet, or its gated ensemble when ``index`` is None. Views sharing a
    ``cache`` run the OneNet once per batch (``evaluate`` feeds each model the same tensor)."""

    def __init__(self, one: nn.Module, index: int | None, cache: dict) -> None:
        super().__init__()
        self.one, self.index, self.cache = one, index, cache

    def forward(self, x: Tensor) -> Tensor:
        if self.cache.get("x") is not x:
            self.cache.update(x=x, out=self.one(x))
        z, gate = self.cache["out"]
        return ensemble_logits(z, gate) if self.index is None else z[self.index]


@register
class ONE(Method):
    """On-the-fly native ensemble: a shared trunk with ``branches`` copies of stage 3 and a gate,
    Σ_i CE_i + CE_e + w(t)·T²·Σ_i KL(p_e ‖ p_i); the best branch is the student (protocol § ONE)."""

    name = "one"
    defaults = {
        "branches": 3, "T": 3.0,  # paper Table I ("as per paper"), T = 3
        "rampup": 80, "target_eps": 0.0,  # the official code's 80-epoch ramp (0 disables it); its 1e-7 is optional
        # the official recipe at the paper's scale: 300 epochs, lr 0.1 ÷10 at 150 and 225, wd 1e-4 (protocol § ONE)
        "epochs": 300, "lr": 0.1, "milestones": (150, 225), "lr_decay": 0.1, "weight_decay": 1e-4, "batch_size": 128}

    def build_models(self) -> dict[str, nn.Module]:
        c = self.cfg
        return {"one": build_one(c.student, c.num_classes, self.args["branches"], shortcut=c.shortcut)}

    def stages(self) -> list[Stage]:
        return [_recipe(self.cfg, self.args, "main")]

    def loss(self, x, y, stage, epoch):
        a = self.args
        z, gate = self.models["one"](x)
        w = losses.one_rampup(epoch, scaled(a["rampup"], self.cfg.epochs) if a["rampup"] else 0)
        return {"one": losses.one(z, gate, y, a["T"], w, a["target_eps"])}, ensemble_logits(z.detach(), gate.detach())

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
    """Deep mutual learning: a cohort of students, each CE + T²·KL(p_peer^T ‖ p^T) averaged over its
    peers (detached), updated one after another on the same batch (protocol § DML)."""

    name = "dml"
    defaults = {"T": 4.0, "cohort": 2, "mode": "alternating"}  # paper Table I; DML's Algorithm 1

    @classmethod
    def check(cls, cfg) -> None:
        _choice(cfg, "mode", ("alternating", "simultaneous"))
        _positive_int(cfg, "cohort", 2)

    def build_models(self) -> dict[str, nn.Module]:  # built in turn, so each has its own initialisation
        return {f"member{i + 1}": self.new_student() for i in range(self.args["cohort"])}

    def param_groups(self, stage: Stage) -> list[list[nn.Parameter]]:
        return [list(m.parameters()) for m in self.models.values()]

    def _member(self, i: int, x: Tensor, y: Tensor, zs: list[Tensor] | None = None) -> tuple[Tensor, Terms]:
        """Member i's (logits, terms). Peers come detached from ``zs`` (one forward of the cohort), else
        are recomputed without gradient in train mode, so they include earlier members' updates."""
        members = list(self.models.values())
        if zs is None:
            z = members[i](x)
            with torch.no_grad():
                peers = [m(x) for j, m in enumerate(members) if j != i]
        else:
            z, peers = zs[i], [p.detach() for j, p in enumerate(zs) if j != i]
        mutual = sum(losses.mutual(z, p, self.args["T"]) for p in peers) / len(peers)
        return z, {"ce": F.cross_entropy(z, y), "mutual": mutual}

    def loss(self, x, y, stage, epoch):
        """Every member's terms against its peers as they are now."""
        zs = [m(x) for m in self.models.values()] if self.args["mode"] == "simultaneous" else None
        out = {name: self._member(i, x, y, zs) for i, name in enumerate(self.models)}
        return {f"{name}/{k}": v for name, (_, t) in out.items() for k, v in t.items()}, out["member1"][0]

    def step(self, x, y, stage, epoch, optimizers):
        if self.args["mode"] == "simultaneous":  # one forward of the cohort, then each member's update
            return super().step(x, y, stage, epoch, optimizers)
        terms, logits = {}, None
        for i, (name, opt) in enumerate(zip(self.models, optimizers, strict=True)):
            with self.autocast:
                z, own = self._member(i, x, y)
                loss = total(own)
            _update(opt, loss)  # the next member's peers see this update
            terms.update({f"{name}/{k}": v for k, v in own.items()})
            logits = z if logits is None else logits
        return terms, logits

    def eval_models(self) -> dict[str, nn.Module]:
        return dict(self.models.items())

    def report(self, accs: dict[str, float]) -> float:  # the better cohort member (paper §III)
        return max(accs.values())

    def deployed(self, accs: dict[str, float]) -> nn.Module:
        return self.models[max(accs, key=accs.get)]
