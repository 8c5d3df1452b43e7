"""DKD, "Decoupled Knowledge Distillation" (Zhao, Cui, Song, Qiu, Liang, CVPR 2022), as a kdnb plugin.

A method the paper does not cover, written the way the built-in ones are (book/add-method.md): the loss
is a pure function, the method a small registered class. Run it through a section of the study with

    kdnb study params/smoke/generalization.yaml --plugin examples/dkd.py --methods baseline dkd

DKD splits the KD loss at the target class t (the paper's eq. 5):
KL(p^T ‖ p^S) = TCKD + (1 − p_t^T)·NCKD, where TCKD = KL(b^T ‖ b^S) on the binary split b = [p_t, 1 − p_t]
and NCKD = KL(p̂^T ‖ p̂^S) on the distribution p̂ over the non-target classes, and weighs the two parts
freely: CE + α·TCKD + β·NCKD, both at temperature T with the T² factor of Hinton et al. The constants
are the authors' CIFAR ones (their code, https://github.com/megvii-research/mdistiller: α = 1, β = 8,
T = 4, and the KD part's weight rising linearly over the first 20 of their 240 epochs). The training
scheme is the study's standard one, so DKD is compared with the paper's methods on equal terms; the
warm-up is scaled to the run's length like every other recipe (here by the run's epochs / 240).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from kdnb.methods import Method, register

DKD_EPOCHS = 240  # the length of the authors' CIFAR recipe, to which the warm-up is given


def _split(logits: Tensor, target: Tensor, others: Tensor, T: float) -> tuple[Tensor, Tensor]:
    """Log of the binary split [p_t, 1 − p_t], (B, 2), and of p̂ over the non-target classes, (B, K − 1)."""
    z = logits / T
    lse = z.logsumexp(1, keepdim=True)
    z_other = z.gather(1, others)
    lse_other = z_other.logsumexp(1, keepdim=True)  # log Σ_{k≠t} exp(z_k): log(1 − p_t) + lse
    return torch.cat([z.gather(1, target[:, None]) - lse, lse_other - lse], 1), z_other - lse_other


def dkd_terms(s_logits: Tensor, t_logits: Tensor, target: Tensor, T: float = 4.0) -> tuple[Tensor, Tensor]:
    """(TCKD, NCKD) of DKD's eq. 6: T²·KL(b^T ‖ b^S) and T²·KL(p̂^T ‖ p̂^S) at temperature T, each summed over
    its classes and averaged over the batch. The teacher's logits are constants."""
    k = torch.arange(s_logits.shape[1] - 1, device=target.device)
    others = k + (k >= target[:, None])  # each sample's non-target classes, in order: (B, K − 1)
    (bs, ps), (bt, pt) = _split(s_logits, target, others, T), _split(t_logits.detach(), target, others, T)
    kl = lambda log_p, log_q: F.kl_div(log_p, log_q, reduction="batchmean", log_target=True)  # noqa: E731
    return T * T * kl(bs, bt), T * T * kl(ps, pt)


def dkd(s_logits: Tensor, t_logits: Tensor, target: Tensor, alpha: float = 1.0, beta: float = 8.0,
        T: float = 4.0) -> Tensor:
    """α·TCKD + β·NCKD (DKD's eq. 6), the KD part of the loss (cross-entropy is added by the method)."""
    tckd, nckd = dkd_terms(s_logits, t_logits, target, T)
    return alpha * tckd + beta * nckd


def warmup_weight(epoch: int, warmup: int) -> float:
    """The KD part's weight in epoch ``epoch`` (0-indexed): rising linearly to 1 at epoch ``warmup``,
    min(e / warmup, 1) with e counted from 1, as in the authors' code."""
    return min((epoch + 1) / warmup, 1.0)


def scaled_warmup(warmup: int, epochs: int) -> int:
    """A warm-up given for the authors' 240 epochs, scaled to a run of ``epochs`` (at least 1)."""
    return max(1, round(warmup * epochs / DKD_EPOCHS))


@register
class DKD(Method):
    """CE + w(e)·(α·TCKD + β·NCKD) on the student's and the teacher's logits (Zhao et al., CVPR 2022)."""

    name = "dkd"
    uses_teacher = teacher_logit_cache = True  # it reads only the teacher's logits on the batch
    defaults = {"alpha": 1.0, "beta": 8.0, "T": 4.0, "warmup": 20}  # the authors' CIFAR values (mdistiller)

    def loss(self, x, y, stage, epoch):
        a = self.args
        logits = self.models["student"](x)
        tckd, nckd = dkd_terms(logits, self.teacher_logits(x), y, a["T"])
        w = warmup_weight(epoch, scaled_warmup(a["warmup"], self.cfg.epochs))
        return {"ce": F.cross_entropy(logits, y), "tckd": w * a["alpha"] * tckd, "nckd": w * a["beta"] * nckd}, logits
