"""Tests for kdnb.losses: hand-computed values, loop-based reference formulations (values and
gradients), teacher detachment, low-precision inputs and the invariances each term should have."""

import math

import pytest
import torch

from kdnb import losses as L

F64 = torch.float64
LN2, LN3, LN9 = math.log(2), math.log(3), math.log(9)


def rnd(*shape, seed, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=F64) * scale


def t64(x):
    return torch.tensor(x, dtype=F64)


def close(a, b, tol=1e-10):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def huber(x):
    """Smooth-L1 with δ = 1, for python floats or 0-d tensors."""
    small = abs(float(x.detach() if torch.is_tensor(x) else x)) <= 1
    return 0.5 * x * x if small else abs(x) - 0.5


# --- independent reference formulations (explicit loops and sums) --------------------------------


def ref_softmax_row(z, T):
    e = [torch.exp(v / T) for v in z]
    total = sum(e)
    return [v / total for v in e]


def ref_kl(s, t, T, eps=0.0):
    """(1/B) Σ_b Σ_k p_t,k (log p_t,k − log p_s,k), class by class."""
    out = 0
    for s_b, t_b in zip(s, t.detach(), strict=True):
        p_s, p_t = ref_softmax_row(s_b, T), ref_softmax_row(t_b, T)
        for ps, pt in zip(p_s, p_t, strict=True):
            pt = pt + eps
            out = out + pt * (torch.log(pt) - torch.log(ps))
    return out / s.shape[0]


def ref_sce(s, t, T):
    out = 0
    for s_b, t_b in zip(s, t.detach(), strict=True):
        for ps, pt in zip(ref_softmax_row(s_b, T), ref_softmax_row(t_b, T), strict=True):
            out = out - pt * torch.log(ps)
    return out / s.shape[0]


def ref_attention(s_feats, t_feats):
    def q(f, b):  # mean over channels of f², position by position
        C, H, W = f.shape[1:]
        return [sum(f[b, c, h, w] ** 2 for c in range(C)) / C for h in range(H) for w in range(W)]

    out = 0
    for s, t in zip(s_feats, t_feats, strict=True):
        B, _, H, W = s.shape
        for b in range(B):
            qs, qt = q(s, b), q(t.detach(), b)
            ns, nt = torch.sqrt(sum(x * x for x in qs)), torch.sqrt(sum(x * x for x in qt))
            out = out + sum((a / ns - c / nt) ** 2 for a, c in zip(qs, qt, strict=True)) / (B * H * W)
    return out


def ref_fsp_matrix(f_in, f_out):
    if f_in.shape[-1] != f_out.shape[-1]:  # 2×2 average pooling by slicing
        f_in = (f_in[..., ::2, ::2] + f_in[..., 1::2, ::2] + f_in[..., ::2, 1::2] + f_in[..., 1::2, 1::2]) / 4
    h, w = f_out.shape[-2:]
    return torch.einsum("bihw,bjhw->bij", f_in, f_out) / (h * w)


def ref_fsp(s_pairs, t_pairs, weights):
    out = 0
    for (si, so), (ti, to), wt in zip(s_pairs, t_pairs, weights, strict=True):
        d = ref_fsp_matrix(si, so) - ref_fsp_matrix(ti.detach(), to.detach())
        out = out + wt * (d * d).sum() / d.numel()
    return out


def ref_sp_gram(f):
    q = [row.reshape(-1) for row in f]
    G = [[(a * b).sum() for b in q] for a in q]
    return [[g / torch.sqrt(sum(x * x for x in row)) for g in row] for row in G]


def ref_sp(s, t):
    Gs, Gt = ref_sp_gram(s), ref_sp_gram(t.detach())
    B = len(Gs)
    return sum((Gt[i][j] - Gs[i][j]) ** 2 for i in range(B) for j in range(B)) / B**2


def ref_psi_d(e):
    e = [row.reshape(-1) for row in e]
    B = len(e)
    d = [[torch.sqrt(((e[i] - e[j]) ** 2).sum()) if i != j else t64(0.0) for j in range(B)] for i in range(B)]
    mu = sum(d[i][j] for i in range(B) for j in range(B) if i != j) / (B * (B - 1))
    return [[x / mu for x in row] for row in d]


def ref_rkd_distance(s, t):
    ps, pt = ref_psi_d(s), ref_psi_d(t.detach())
    B = len(ps)
    return sum(huber(ps[i][j] - pt[i][j]) for i in range(B) for j in range(B)) / B**2


def unit(v):
    return v / torch.clamp(torch.sqrt((v * v).sum()), min=1e-12)


def ref_cos(e):
    e = [row.reshape(-1) for row in e]
    B = len(e)
    # u_ab = unit(e_b − e_a); the zero vector for b = a
    u = [[unit(e[b] - e[a]) if b != a else torch.zeros_like(e[a]) for b in range(B)] for a in range(B)]
    return [[[(u[a][b] * u[a][c]).sum() for c in range(B)] for b in range(B)] for a in range(B)]


def ref_rkd_angle(s, t):
    cs, ct = ref_cos(s), ref_cos(t.detach())
    B = len(cs)
    r = range(B)
    return sum(huber(cs[a][b][c] - ct[a][b][c]) for a in r for b in r for c in r) / B**3


def ref_ce(z, y):
    """Mean over the batch of −log softmax(z_b)[y_b]."""
    nll = [-torch.log(ref_softmax_row(z_b, 1.0)[int(y_b)]) for z_b, y_b in zip(z, y, strict=True)]
    return sum(nll) / z.shape[0]


def ref_one(zs, gate, y, T, w, eps=0.0):
    z_e = sum(gate[:, i : i + 1] * z for i, z in enumerate(zs))
    loss = sum(ref_ce(z, y) for z in zs) + ref_ce(z_e, y)
    return loss + w * T * T * sum(ref_kl(z, z_e, T, eps) for z in zs)


# --- the loss cases: (loss(s, t), reference(s, t), make() -> (student list, teacher list)) -------

Y = torch.tensor([0, 3, 1, 2, 3])
FSP_W = (1.0, 3.0, 0.5)


def fsp_inputs(seed):
    shapes = [((3, 2, 4, 4), (3, 2, 4, 4)), ((3, 2, 4, 4), (3, 3, 2, 2)), ((3, 3, 2, 2), (3, 4, 1, 1))]
    return [rnd(*shape, seed=seed + i) for i, shape in enumerate(x for pair in shapes for x in pair)]


def as_pairs(xs):
    return list(zip(xs[::2], xs[1::2], strict=True))


CASES = {
    "hinton_kd": (
        lambda s, t: L.hinton_kd(s[0], t[0], T=3.0),
        lambda s, t: 9.0 * ref_kl(s[0], t[0], 3.0),
        lambda: ([rnd(6, 5, seed=1, scale=3)], [rnd(6, 5, seed=2, scale=3)]),
    ),
    "mutual": (
        lambda s, t: L.mutual(s[0], t[0]),
        lambda s, t: 16.0 * ref_kl(s[0], t[0], 4.0),
        lambda: ([rnd(6, 5, seed=3, scale=4)], [rnd(6, 5, seed=4, scale=4)]),
    ),
    "soft_cross_entropy": (
        lambda s, t: L.soft_cross_entropy(s[0], t[0], T=4.0),
        lambda s, t: ref_sce(s[0], t[0], 4.0),
        lambda: ([rnd(6, 5, seed=5, scale=4)], [rnd(6, 5, seed=6, scale=4)]),
    ),
    "attention": (
        lambda s, t: L.attention(s, t),
        ref_attention,
        lambda: (
            [rnd(3, 2, 4, 4, seed=7), rnd(3, 3, 2, 2, seed=8)],
            [rnd(3, 4, 4, 4, seed=9), rnd(3, 2, 2, 2, seed=10)],
        ),
    ),
    "fitnet": (
        lambda s, t: L.fitnet(s[0], t[0]),
        lambda s, t: ((s[0] - t[0].detach()) ** 2).sum() / s[0].numel(),
        lambda: ([rnd(3, 2, 4, 4, seed=11)], [rnd(3, 2, 4, 4, seed=12)]),
    ),
    "fsp": (
        lambda s, t: L.fsp(as_pairs(s), as_pairs(t), weights=FSP_W),
        lambda s, t: ref_fsp(as_pairs(s), as_pairs(t), FSP_W),
        lambda: (fsp_inputs(100), fsp_inputs(200)),
    ),
    "similarity_preserving": (
        lambda s, t: L.similarity_preserving(s[0], t[0]),
        lambda s, t: ref_sp(s[0], t[0]),
        lambda: ([rnd(5, 2, 2, 2, seed=13)], [rnd(5, 3, 2, 2, seed=14)]),
    ),
    "rkd_distance": (
        lambda s, t: L.rkd_distance(s[0], t[0]),
        lambda s, t: ref_rkd_distance(s[0], t[0]),
        lambda: ([rnd(6, 2, 2, 2, seed=15)], [rnd(6, 5, seed=16, scale=3)]),
    ),
    "rkd_angle": (
        lambda s, t: L.rkd_angle(s[0], t[0]),
        lambda s, t: ref_rkd_angle(s[0], t[0]),
        lambda: ([rnd(5, 2, 2, 2, seed=17)], [rnd(5, 6, seed=18)]),
    ),
    "one": (
        lambda s, t: L.one(s[0], s[1], Y, T=3.0, consistency_weight=0.7),
        lambda s, t: ref_one(list(s[0]), s[1], Y, 3.0, 0.7),
        lambda: ([rnd(3, 5, 4, seed=19, scale=2), torch.softmax(rnd(5, 3, seed=20), 1)], []),
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_matches_reference_values_and_gradients(name):
    loss, ref, make = CASES[name]
    s, t = make()
    s = [x.requires_grad_() for x in s]
    a, b = loss(s, t), ref(s, t)
    assert a.dim() == 0 and a.dtype == F64
    close(a, b)
    for ga, gb in zip(torch.autograd.grad(a, s), torch.autograd.grad(b, s), strict=True):
        close(ga, gb)


@pytest.mark.parametrize("name", CASES)
def test_teacher_gets_no_gradient(name):
    loss, _, make = CASES[name]
    s, t = make()
    s, t = [x.requires_grad_() for x in s], [x.requires_grad_() for x in t]
    loss(s, t).backward()
    assert all(x.grad is not None and x.grad.abs().sum() > 0 for x in s)
    assert all(x.grad is None for x in t)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("name", CASES)
def test_low_precision_inputs(name, dtype):
    loss, _, make = CASES[name]
    s, t = make()
    s_lo = [x.to(dtype).requires_grad_() for x in s]
    t_lo = [x.to(dtype) for x in t]
    val = loss(s_lo, t_lo)
    assert val.dtype == torch.float32 and torch.isfinite(val)
    # computed in float32: agrees with float64 on the same (rounded) inputs
    exact = loss([x.detach().double() for x in s_lo], [x.double() for x in t_lo])
    close(val.double(), exact, tol=1e-4)
    # and stays near the float64 value of the unrounded inputs
    close(val.double(), loss(s, t), tol=1e-4 if dtype == torch.float32 else 5e-2)
    assert all(torch.isfinite(g).all() for g in torch.autograd.grad(val, s_lo))


def test_mixed_student_teacher_dtypes():
    s, t = rnd(4, 3, seed=21).to(torch.bfloat16), rnd(4, 3, seed=22)
    assert L.hinton_kd(s, t).dtype == F64
    assert L.hinton_kd(s, t.float()).dtype == torch.float32


# --- logit terms ---------------------------------------------------------------------------------


def test_hinton_kd_by_hand():
    # sample 1, T = 2: p_t = softmax([ln 3, 0]) = (3/4, 1/4), p_s = (1/2, 1/2); sample 2: s = t
    s = t64([[0.0, 0.0], [0.3, -0.2]])
    t = t64([[2 * LN3, 0.0], [0.3, -0.2]])
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    close(L.hinton_kd(s, t, T=2.0), t64(4 * kl / 2))


def test_hinton_kd_zero_when_equal_and_is_t2_kl():
    s, t = rnd(7, 10, seed=23, scale=3), rnd(7, 10, seed=24, scale=3)
    assert abs(float(L.hinton_kd(s, s))) < 1e-14
    close(L.hinton_kd(s, t, T=4.0), 16 * ref_kl(s, t, 4.0))
    close(L.hinton_kd(s, t, T=1.0), ref_kl(s, t, 1.0))


def test_mutual_by_hand():
    # T = 2: softmax([0, 2 ln 2, 2 ln 3] / 2) = (1/6, 2/6, 3/6); the peer is uniform
    z, peer = t64([[0.0, 2 * LN2, 2 * LN3]]), t64([[5.0, 5.0, 5.0]])
    kl = sum((1 / 3) * math.log((1 / 3) / (k / 6)) for k in (1, 2, 3))
    close(L.mutual(z, peer, T=2.0), t64(4 * kl))


def test_soft_cross_entropy_by_hand():
    # T = 2; p_t = (3/4, 1/4) for both samples; p_s = (1/2, 1/2) and (1/4, 3/4)
    s = t64([[0.0, 0.0], [0.0, 2 * LN3]])
    t = t64([[2 * LN3, 0.0], [2 * LN3, 0.0]])
    sce1 = -(0.75 * math.log(0.5) + 0.25 * math.log(0.5))
    sce2 = -(0.75 * math.log(0.25) + 0.25 * math.log(0.75))
    close(L.soft_cross_entropy(s, t, T=2.0), t64((sce1 + sce2) / 2))


def test_soft_cross_entropy_is_kl_plus_teacher_entropy():
    s, t, T = rnd(6, 5, seed=25, scale=3), rnd(6, 5, seed=26, scale=3), 4.0
    entropy = sum(-p * torch.log(p) for row in t for p in ref_softmax_row(row, T)) / t.shape[0]
    close(L.soft_cross_entropy(s, t, T) - L.hinton_kd(s, t, T) / T**2, entropy)


def test_bss_weights():
    assert L.bss_weights(1, 200) == pytest.approx((1 + 3 * 199 / 200, 2 * (1 - 4 / 600)), abs=1e-15)
    assert L.bss_weights(100, 200) == pytest.approx((2.5, 2 / 3), abs=1e-15)
    assert L.bss_weights(150, 200) == pytest.approx((1.75, 0.0), abs=1e-15)
    assert L.bss_weights(200, 200) == (1.0, 0.0)
    assert all(L.bss_weights(e, 200)[1] == 0.0 for e in range(150, 201))
    assert all(L.bss_weights(e, 200)[1] > 0.0 for e in range(1, 150))
    assert all(type(v) is float for v in L.bss_weights(7, 200))


def test_one_rampup():
    assert L.one_rampup(0) == pytest.approx(math.exp(-5.0), abs=1e-16)
    assert L.one_rampup(40) == pytest.approx(math.exp(-1.25), abs=1e-16)
    assert L.one_rampup(80) == L.one_rampup(81) == L.one_rampup(300) == 1.0
    assert L.one_rampup(0, rampup_epochs=0) == 1.0


@pytest.mark.parametrize("eps", [0.0, 1e-7])
def test_one_by_hand(eps):
    # two branches, gate (1/2, 1/2), label 0, T = 2, w = 0.5
    z = t64([[[0.0, 0.0]], [[2 * LN9, 0.0]]])  # z_e = [ln 9, 0]
    gate, y = t64([[0.5, 0.5]]), torch.tensor([0])
    ce = math.log(2) - math.log(81 / 82) - math.log(9 / 10)
    p_e = [0.75 + eps, 0.25 + eps]  # softmax(z_e / 2) = softmax([ln 3, 0])
    kl = sum(p * math.log(p / q) for p, q in zip(p_e, [0.5, 0.5], strict=True))
    kl += sum(p * math.log(p / q) for p, q in zip(p_e, [0.9, 0.1], strict=True))
    close(L.one(z, gate, y, T=2.0, consistency_weight=0.5, target_eps=eps), t64(ce + 0.5 * 4 * kl))


def test_one_eps_matches_reference_and_sequence_input():
    zs, gate = rnd(3, 5, 4, seed=27, scale=2), torch.softmax(rnd(5, 3, seed=28), 1)
    close(L.one(zs, gate, Y, target_eps=1e-7), ref_one(list(zs), gate, Y, 3.0, 1.0, 1e-7))
    close(L.one(list(zs), gate, Y), L.one(zs, gate, Y))


def test_one_without_consistency_is_sum_of_ces():
    zs, gate = rnd(3, 5, 4, seed=29, scale=2), torch.softmax(rnd(5, 3, seed=30), 1)
    z_e = sum(gate[:, i : i + 1] * zs[i] for i in range(3))
    expected = sum(ref_ce(z, Y) for z in zs) + ref_ce(z_e, Y)
    close(L.one(zs, gate, Y, consistency_weight=0.0), expected)


def test_one_kl_sends_no_gradient_to_gate():
    zs = rnd(3, 5, 4, seed=31, scale=2).requires_grad_()
    gate = torch.softmax(rnd(5, 3, seed=32), 1).requires_grad_()
    g_full = torch.autograd.grad(L.one(zs, gate, Y, consistency_weight=1.0), [zs, gate])
    g_ce = torch.autograd.grad(L.one(zs, gate, Y, consistency_weight=0.0), [zs, gate])
    close(g_full[1], g_ce[1], tol=1e-14)
    assert g_ce[1].abs().sum() > 0 and (g_full[0] - g_ce[0]).abs().max() > 1e-3


# --- feature terms -------------------------------------------------------------------------------


def test_attention_by_hand():
    # block 1: B = 1, C = 2, 1×2 map; positions have channels (1, 1) and (2, 0)
    s1 = t64([[[[1.0, 2.0]], [[1.0, 0.0]]]])  # q_s = (1, 2)
    t1 = t64([[[[1.0, 0.0]], [[1.0, 0.0]]]])  # q_t = (1, 0)
    block1 = ((1 / math.sqrt(5) - 1) ** 2 + (2 / math.sqrt(5)) ** 2) / 2
    # block 2: 1×1 maps; q̂_s = 1, the all-zero teacher map normalises to 0
    s2, t2 = t64([[[[3.0]]]]), t64([[[[0.0]]]])
    close(L.attention([s1, s2], [t1, t2]), t64(block1 + 1.0))
    close(L.attention(s1, t1), t64(block1))


def test_attention_invariant_to_feature_scaling():
    s, t = [rnd(3, 2, 4, 4, seed=33)], [rnd(3, 2, 4, 4, seed=34)]
    c = t64([0.5, 2.0, 7.0])[:, None, None, None]  # per sample, positive
    close(L.attention([s[0] * c], [t[0] * 3.0]), L.attention(s, t))


def test_fitnet_by_hand():
    s = t64([[[[1.0, 2.0], [3.0, 4.0]]]])
    close(L.fitnet(s, torch.zeros_like(s)), t64(7.5))
    close(L.fitnet(s, torch.ones_like(s)), t64((0 + 1 + 4 + 9) / 4))


def test_fsp_matrix_by_hand():
    # f_in 2×2 pooled to 1×1: (1 + 2 + 3 + 4)/4 = 2.5; f_out channels 5 and 6
    f_in, f_out = t64([[[[1.0, 2.0], [3.0, 4.0]]]]), t64([[[[5.0]], [[6.0]]]])
    close(L.fsp_matrix(f_in, f_out), t64([[[12.5, 15.0]]]))
    # same size 1×2: channels (1, 2) and (0, 1) against (3, 4), divided by h·w = 2
    f_in, f_out = t64([[[[1.0, 2.0]], [[0.0, 1.0]]]]), t64([[[[3.0, 4.0]]]])
    close(L.fsp_matrix(f_in, f_out), t64([[[(3 + 8) / 2], [(0 + 4) / 2]]]))


def test_fsp_matrix_matches_einsum():
    f_in, f_out = rnd(3, 4, 8, 8, seed=35).requires_grad_(), rnd(3, 5, 4, 4, seed=36)
    proj = rnd(3, 4, 5, seed=37)
    a, b = (L.fsp_matrix(f_in, f_out) * proj).sum(), (ref_fsp_matrix(f_in, f_out) * proj).sum()
    close(a, b)
    close(*(torch.autograd.grad(x, f_in)[0] for x in (a, b)))


def test_fsp_by_hand():
    s_pairs = [
        (t64([[[[1.0, 2.0], [3.0, 4.0]]]]), t64([[[[5.0]], [[6.0]]]])),  # G_s = [[12.5, 15]]
        (t64([[[[1.0, 2.0]], [[0.0, 1.0]]]]), t64([[[[3.0, 4.0]]]])),  # G_s = [[5.5], [2]]
    ]
    t_pairs = [
        tuple(torch.zeros_like(x) for x in s_pairs[0]),  # G_t = 0
        tuple(torch.ones_like(x) for x in s_pairs[1]),  # G_t = [[1], [1]]
    ]
    expected = 1 * (12.5**2 + 15**2) / 2 + 3 * (4.5**2 + 1**2) / 2
    close(L.fsp(s_pairs, t_pairs, weights=(1, 3)), t64(expected))


def test_similarity_preserving_by_hand():
    # G_s = I (already row-normalised); G_t = all ones, rows normalised to 1/√2
    s = t64([[1.0, 0.0], [0.0, 1.0]]).reshape(2, 2, 1, 1)
    t = t64([[1.0, 0.0], [1.0, 0.0]]).reshape(2, 2, 1, 1)
    r = 1 / math.sqrt(2)
    close(L.similarity_preserving(s, t), t64((2 * (1 - r) ** 2 + 2 * r**2) / 4))


def test_similarity_preserving_scaling():
    s, t = rnd(5, 3, 2, 2, seed=38), rnd(5, 4, 2, 2, seed=39)
    close(L.similarity_preserving(4.0 * s, 0.1 * t), L.similarity_preserving(s, t))
    # per-sample scaling c_i is not removed: row i of G̃ keeps the factors c_j of the other samples
    c = t64([0.5, 2.0, 7.0, 1.0, 3.0])[:, None, None, None]
    assert abs(float(L.similarity_preserving(s * c, t) - L.similarity_preserving(s, t))) > 1e-3


def py_rkd_distance(s, t):
    """Pure-python RKD-D for 1-D points (python lists)."""

    def psi(x):
        n = len(x)
        d = [[abs(a - b) for b in x] for a in x]
        mu = sum(map(sum, d)) / (n * (n - 1))
        return [[v / mu for v in row] for row in d]

    ps, pt = psi(s), psi(t)
    diffs = [a - b for ra, rb in zip(ps, pt, strict=True) for a, b in zip(ra, rb, strict=True)]
    return sum(huber(x) for x in diffs) / len(s) ** 2


def test_rkd_distance_by_hand():
    # s = 0, 1, 2: d = 1, 2, 1, mean 4/3, ψ = 3/4, 3/2, 3/4; t = 0, 1, 3: d = 1, 3, 2, mean 2,
    # ψ = 1/2, 3/2, 1; differences ±1/4 on two pairs, each counted twice, over 3² pairs
    s, t = t64([[0.0], [1.0], [2.0]]), t64([[0.0], [1.0], [3.0]])
    close(L.rkd_distance(s, t), t64(4 * 0.5 * 0.25**2 / 9))
    # a case reaching the linear part of the Huber loss (ψ difference ≈ −1.16 for the pair 0, 2)
    s, t = [0.0, 1.0, 2.0, 100.0], [0.0, 100.0, 200.0, 300.0]
    close(L.rkd_distance(t64(s)[:, None], t64(t)[:, None]), t64(py_rkd_distance(s, t)))


def test_rkd_angle_by_hand():
    # right isosceles triangle vs equilateral: angles 90°, 45°, 45° vs 60° (cos 0.5); each angle
    # appears in two ordered triplets; triplets with b = c have cos 1 in both, degenerate ones 0
    s = t64([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    t = t64([[0.0, 0.0], [1.0, 0.0], [0.5, math.sqrt(3) / 2]])
    expected = 2 * huber(0 - 0.5) + 4 * huber(math.sqrt(2) / 2 - 0.5)
    close(L.rkd_angle(s, t), t64(expected / 27))
    # collinear points vs equilateral: the middle vertex has cos −1, so the difference is −1.5 (linear)
    s = t64([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    expected = 2 * (huber(1 - 0.5) + huber(-1 - 0.5) + huber(1 - 0.5))
    close(L.rkd_angle(s, t), t64(expected / 27))


@pytest.mark.parametrize("fn", [L.rkd_distance, L.rkd_angle])
def test_rkd_scale_invariance(fn):
    s, t = rnd(6, 5, seed=40), rnd(6, 5, seed=41)
    assert abs(float(fn(3.0 * t, t))) < 1e-12
    close(fn(3.0 * s, t), fn(s, t))
