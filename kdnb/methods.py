"""Distillation methods: one small class each, registered by name.

A method says which models it trains (``self.models``), whether it reads a teacher, its stages
(each with its own optimiser and schedule), the parameter groups updated in turn on every batch,
its loss for a batch, and which of its models are evaluated and deployed. The loop in
``kdnb.train`` knows nothing else about it. Loss terms are pure functions from ``kdnb.losses``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from kdnb import losses
from kdnb.models import build

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
             group: int) -> tuple[torch.Tensor, torch.Tensor]:
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
