"""Distillation loss terms, one pure function per term.

Conventions shared by every function (the notation of book/protocol.md):

* Teacher-side inputs (teacher logits or features, a DML peer, the ONE ensemble target) are
  detached inside the function, so they never receive a gradient.
* Precision: inputs in float16/bfloat16 are upcast and the whole term is computed in float32
  (softmaxes, Gram matrices, norms included); the result is then float32. float32 and float64
  inputs are computed and returned in their own dtype (mixed inputs use the wider one).
* Every function returns a scalar tensor; weights such as α, β, γ or λ are applied by the method.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["attention", "bss_weights", "fitnet", "fsp", "fsp_matrix", "hinton_kd", "mutual", "one", "one_rampup",
           "rkd_angle", "rkd_distance", "similarity_preserving", "soft_cross_entropy"]

_EPS = 1e-12  # the clamp of norms and squared distances (protocol § AT, § SP, § RKD)


def _dtype(*xs: Tensor) -> torch.dtype:
    """The compute dtype: the widest input dtype, and at least float32."""
    dtype = torch.float32
    for x in xs:
        dtype = torch.promote_types(dtype, x.dtype)
    return dtype


def _pair(s: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
    """Student in the compute dtype; teacher detached, in the same dtype."""
    dtype = _dtype(s, t)
    return s.to(dtype), t.detach().to(dtype)


def _kl(s_logits: Tensor, t_logits: Tensor, T: float, target_eps: float = 0.0) -> Tensor:
    """KL(softmax(t/T) ‖ softmax(s/T)), summed over classes (dim 1), mean over the batch.

    ``target_eps`` is added to the (detached) target probabilities without renormalising, as in
    the official ONE code (protocol § ONE).
    """
    s, t = _pair(s_logits, t_logits)
    log_p_s = F.log_softmax(s / T, dim=1)
    if target_eps:
        p_t = F.softmax(t / T, dim=1) + target_eps
        return (p_t * (p_t.log() - log_p_s)).sum(1).mean()
    log_p_t = F.log_softmax(t / T, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)


# --- logit terms ---------------------------------------------------------------------------------


def hinton_kd(s_logits: Tensor, t_logits: Tensor, T: float = 4.0) -> Tensor:
    """Hinton KD term (protocol § Hinton): T² · (1/B) Σ_b Σ_k p_t,k (log p_t,k − log p_s,k),
    with p = softmax(z/T). The (1 − α)/α mixing with CE is done by the method."""
    return T * T * _kl(s_logits, t_logits, T)


def mutual(logits: Tensor, peer_logits: Tensor, T: float = 4.0) -> Tensor:
    """DML term for one cohort member (protocol § DML): T² · KL(softmax(peer/T) ‖ softmax(z/T)),
    batch-mean, with the peer detached."""
    return T * T * _kl(logits, peer_logits, T)


def soft_cross_entropy(s_logits: Tensor, t_logits: Tensor, T: float) -> Tensor:
    """BSS soft cross-entropy (protocol § BSS), no T² factor:
    SCE_T = −(1/B) Σ_b Σ_k softmax(t_b/T)_k · log softmax(s_b/T)_k  (= KL + H(p_t^T))."""
    s, t = _pair(s_logits, t_logits)
    return -(F.softmax(t / T, dim=1) * F.log_softmax(s / T, dim=1)).sum(1).mean()


def bss_weights(epoch: int, epochs: int) -> tuple[float, float]:
    """BSS weights for epoch e ∈ {1..E} (protocol § BSS):
    α_e = 1 + 3·max(0, 1 − e/E),  β_e = 2·max(0, 1 − (4/3)·e/E)  (β_e = 0 from e ≥ 0.75·E)."""
    alpha = 1.0 + 3.0 * max(0.0, 1.0 - epoch / epochs)
    beta = 2.0 * max(0.0, 1.0 - 4.0 * epoch / (3.0 * epochs))  # exact 0 at e = 0.75·E
    return float(alpha), float(beta)


def one(branch_logits: Tensor | Sequence[Tensor], gate: Tensor, targets: Tensor, T: float = 3.0,
        consistency_weight: float = 1.0, target_eps: float = 0.0) -> Tensor:
    """ONE loss (protocol § ONE):
    Σ_i CE(z_i, y) + CE(z_e, y) + w · T² · Σ_i KL(p_e^T ‖ p_i^T),  z_e = Σ_i gate_i · z_i.

    ``branch_logits`` is an (m, B, K) tensor or a sequence of m (B, K) tensors; ``gate`` is (B, m).
    p_e^T = softmax(z_e/T) is detached inside the KL, so the KL trains the branches only, while
    CE(z_e) reaches both gate and branches. ``target_eps`` = 1e-7 reproduces the official code.
    """
    z = branch_logits if isinstance(branch_logits, Tensor) else torch.stack(list(branch_logits))
    dtype = _dtype(z, gate)
    z, gate = z.to(dtype), gate.to(dtype)
    z_e = torch.einsum("bm,mbk->bk", gate, z)
    loss = sum(F.cross_entropy(z_i, targets) for z_i in z) + F.cross_entropy(z_e, targets)
    if consistency_weight:
        kl = sum(_kl(z_i, z_e, T, target_eps) for z_i in z)
        loss = loss + consistency_weight * T * T * kl
    return loss


def one_rampup(epoch: int, rampup_epochs: int = 80) -> float:
    """ONE consistency ramp-up (protocol § ONE): w(t) = exp(−5 (1 − min(t, L)/L)²) for the
    0-based epoch t and ramp length L; 1.0 when L = 0 (ramp disabled)."""
    if rampup_epochs == 0:
        return 1.0
    t = min(max(float(epoch), 0.0), float(rampup_epochs))
    return float(math.exp(-5.0 * (1.0 - t / rampup_epochs) ** 2))


# --- feature terms -------------------------------------------------------------------------------


def _attention_map(f: Tensor) -> Tensor:
    """q̂ = vec(mean_c f²) / max(‖·‖₂, 1e-12), shape (B, H·W) (protocol § AT, p = 2)."""
    return F.normalize(f.pow(2).mean(1).flatten(1), dim=1, eps=_EPS)


def attention(s_feats: Sequence[Tensor], t_feats: Sequence[Tensor]) -> Tensor:
    """Attention transfer (protocol § AT): Σ_j (1/(B·H_j W_j)) Σ_b Σ_hw (q̂_S^j − q̂_T^j)².
    No ½ and no β (β is applied by the method). A single pair of tensors is also accepted."""
    if isinstance(s_feats, Tensor):
        s_feats, t_feats = [s_feats], [t_feats]
    terms = []
    for s, t in zip(s_feats, t_feats, strict=True):
        s, t = _pair(s, t)
        terms.append((_attention_map(s) - _attention_map(t)).pow(2).mean())
    return torch.stack(terms).sum()


def fitnet(s_feat: Tensor, t_feat: Tensor) -> Tensor:
    """FitNet hint loss (protocol § FitNet): mean over all elements of (F_S − F_T)².
    Any regressor is applied by the method before this call."""
    s, t = _pair(s_feat, t_feat)
    return F.mse_loss(s, t)


def fsp_matrix(f_in: Tensor, f_out: Tensor) -> Tensor:
    """FSP matrix (protocol § FSP), shape (B, C_in, C_out):
    G = bmm(f_in.flatten(2), f_out.flatten(2)ᵀ) / (h·w), with f_in adaptive-average-pooled to
    f_out's spatial size (h, w) first. Computed in the inputs' dtype."""
    h, w = f_out.shape[-2:]
    if f_in.shape[-2:] != f_out.shape[-2:]:
        f_in = F.adaptive_avg_pool2d(f_in, (h, w))
    return torch.bmm(f_in.flatten(2), f_out.flatten(2).transpose(1, 2)) / (h * w)


def fsp(s_pairs: Sequence[tuple[Tensor, Tensor]], t_pairs: Sequence[tuple[Tensor, Tensor]],
        weights: Sequence[float] = (1, 3, 1)) -> Tensor:
    """FSP stage-1 loss (protocol § FSP): Σ_i W_i · mean_{b,c1,c2} (G_i^S − G_i^T)², where each
    pair is (block input, block output) and G = fsp_matrix. Default W = (1, 3, 1)."""
    terms = []
    for (s_in, s_out), (t_in, t_out), w in zip(s_pairs, t_pairs, weights, strict=True):
        dtype = _dtype(s_in, s_out, t_in, t_out)
        g_s = fsp_matrix(s_in.to(dtype), s_out.to(dtype))
        g_t = fsp_matrix(t_in.detach().to(dtype), t_out.detach().to(dtype))
        terms.append(w * (g_s - g_t).pow(2).mean())
    return torch.stack(terms).sum()


def _sp_gram(f: Tensor) -> Tensor:
    """G̃ = row-L2-normalised Q·Qᵀ with Q = f flattened to (B, −1) (protocol § SP)."""
    q = f.flatten(1)
    return F.normalize(q @ q.T, dim=1, eps=_EPS)


def similarity_preserving(s_feat: Tensor, t_feat: Tensor) -> Tensor:
    """Similarity-preserving KD (protocol § SP): L_SP = ‖G̃_t − G̃_s‖²_F / B²."""
    s, t = _pair(s_feat, t_feat)
    return (_sp_gram(t) - _sp_gram(s)).pow(2).sum() / s.shape[0] ** 2


def _rkd_dist(e: Tensor) -> Tensor:
    """ψ_D = d / mean_{i≠j} d_ij, d_ij = sqrt(max(‖e_i‖² + ‖e_j‖² − 2 e_i·e_j, 1e-12)), d_ii = 0."""
    sq = e.pow(2).sum(1)
    d = (sq[:, None] + sq[None, :] - 2 * e @ e.T).clamp(min=_EPS).sqrt()
    eye = torch.eye(e.shape[0], dtype=torch.bool, device=e.device)
    d = d.masked_fill(eye, 0.0)
    n = e.shape[0]
    return d / (d.sum() / (n * (n - 1)))


def rkd_distance(s_emb: Tensor, t_emb: Tensor) -> Tensor:
    """RKD distance term (protocol § RKD): (1/B²) Σ_{i,j} huber_δ=1(ψ_D^s_ij − ψ_D^t_ij), inputs
    flattened to (B, D); the diagonal is included (it contributes 0)."""
    s, t = _pair(s_emb.flatten(1), t_emb.flatten(1))
    return F.smooth_l1_loss(_rkd_dist(s), _rkd_dist(t), beta=1.0)


def _rkd_cos(e: Tensor) -> Tensor:
    """cos[a, b, c] = u_ab · u_ac, u_ab = (e_b − e_a) / max(‖e_b − e_a‖, 1e-12), shape (B, B, B)."""
    u = F.normalize(e[None, :, :] - e[:, None, :], dim=2, eps=_EPS)  # u[a, b] = unit(e_b − e_a)
    return torch.bmm(u, u.transpose(1, 2))


def rkd_angle(s_emb: Tensor, t_emb: Tensor) -> Tensor:
    """RKD angle term (protocol § RKD): (1/B³) Σ_{a,b,c} huber_δ=1(cos^s_abc − cos^t_abc) over
    all ordered triplets (degenerate ones included), inputs flattened to (B, D)."""
    s, t = _pair(s_emb.flatten(1), t_emb.flatten(1))
    return F.smooth_l1_loss(_rkd_cos(s), _rkd_cos(t), beta=1.0)
