import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdnb import attacks
from kdnb.attacks import (
    bss_attack,
    bss_select,
    bss_targets,
    pgd,
    transfer_matrix,
    transfer_rate,
    transfer_rate_from,
)

EPS, STEP = 0.031, 0.003


# ---------------------------------------------------------------------------------------------------
# a tiny network trained on a separable synthetic problem: 3 classes, ±1 pixel patterns of amplitude 0.04


def _synthetic(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    patterns = torch.randint(0, 2, (3, 3, 8, 8), generator=torch.Generator().manual_seed(0)) * 2.0 - 1
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    x = (0.5 + 0.04 * patterns[y] + 0.1 * torch.randn(n, 3, 8, 8, generator=g)).clamp(0, 1)
    return x, y


def _net() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(192, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 3))


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: extra threads only add contention
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = _net()
    x, y = _synthetic(1024, seed=1)
    for s in range(200):  # plain SGD
        idx = torch.arange(s * 64, (s + 1) * 64) % len(x)
        grads = torch.autograd.grad(F.cross_entropy(model(x[idx]), y[idx]), list(model.parameters()))
        with torch.no_grad():
            for p, g in zip(model.parameters(), grads, strict=True):
                p -= 0.1 * g
    model.eval()
    x_test, y_test = _synthetic(256, seed=2)
    return model, x_test, y_test


def _acc(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return (attacks.predict(model, x) == y).float().mean().item()


# ---------------------------------------------------------------------------------------------------
# PGD


def test_pgd_stays_in_ball_and_box(trained):
    model, x, y = trained
    x = x.clone()
    x[:16] = x[:16].round()  # pixels on the box edges 0 and 1
    for kw in ({}, {"clamp_init": True}, {"eps": 0.1, "step": 0.02}):
        x_adv = pgd(model, x, y, generator=torch.Generator().manual_seed(0), **kw)
        assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
        assert (x_adv - x).abs().max() <= kw.get("eps", EPS) + 1e-6
        assert x_adv.min() >= 0 and x_adv.max() <= 1


def test_pgd_without_random_start_equals_plain_loop(trained):
    model, x, y = trained
    ref = x.clone()
    for _ in range(20):
        ref.requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(ref), y), ref)
        ref = ref.detach() + STEP * g.sign()
        ref = torch.min(torch.max(ref, x - EPS), x + EPS).clamp(0, 1)
    assert torch.equal(pgd(model, x, y, random_start=False), ref)


def test_pgd_generator_reproducible(trained):
    model, x, y = trained
    a = pgd(model, x, y, generator=torch.Generator().manual_seed(3))
    b = pgd(model, x, y, generator=torch.Generator().manual_seed(3))
    c = pgd(model, x, y, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    chunked = pgd(model, x, y, generator=torch.Generator().manual_seed(3), batch_size=100)
    assert torch.isclose(chunked, a).float().mean() > 0.99  # same noise; chunking only changes float rounding


def test_pgd_lowers_accuracy(trained):
    model, x, y = trained
    clean = _acc(model, x, y)
    adv = _acc(model, pgd(model, x, y, generator=torch.Generator().manual_seed(0)), y)
    assert clean > 0.9 and adv < clean - 0.3


def test_pgd_bf16_autocast_keeps_meaning(trained):
    model, x, y = trained
    x, y = x[:128], y[:128]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x_adv = pgd(model, x, y, generator=torch.Generator().manual_seed(0))
    assert x_adv.dtype == torch.float32
    assert (x_adv - x).abs().max() <= EPS + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert _acc(model, x_adv, y) < _acc(model, x, y) - 0.3
    xb = x.bfloat16()  # a bf16 input is attacked in float32 and returned in bf16
    assert torch.equal(
        pgd(model, xb, y, random_start=False), pgd(model, xb.float(), y, random_start=False).bfloat16()
    )


class _Probe(nn.Module):
    """Records the training flag it sees in forward."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(self.training)
        return x


def test_pgd_eval_mode_restored_and_no_param_grads(trained):
    _, x, y = trained
    torch.manual_seed(0)
    probe = _Probe()
    model = nn.Sequential(_net(), probe)
    model.train()
    model[0][1].eval()  # a mixed state must come back as it was
    modes = [m.training for m in model.modules()]
    with torch.no_grad():  # works when called under no_grad too
        x_adv = pgd(model, x[:32], y[:32], steps=3)
    assert not any(probe.seen) and len(probe.seen) == 3
    assert [m.training for m in model.modules()] == modes
    assert all(p.grad is None for p in model.parameters())
    assert not x_adv.requires_grad


# ---------------------------------------------------------------------------------------------------
# transfer rate: 1-D linear "threshold" models, class 1 iff x > t; PGD (no random start, 20 × 0.003 > ε)
# moves every x by exactly ε towards the wrong class: +ε for y = 0, −ε for y = 1.


def _threshold(t: float) -> nn.Module:
    lin = nn.Linear(1, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.0], [20.0]]))
        lin.bias.copy_(torch.tensor([0.0, -20.0 * t]))
    return lin


# x, y, and the fate of each image for source S (t = 0.50) and target T (t = 0.55):
X1 = torch.tensor([0.10, 0.45, 0.53, 0.52, 0.57, 0.56, 0.60, 0.90, 0.40])[:, None]
Y1 = torch.tensor([0, 0, 0, 1, 1, 1, 1, 1, 1])
# 0.10/0: both ok, 0.131 not fooled | 0.45/0: both ok, 0.481 no | 0.53/0: S wrong (T would be fooled: 0.561)
# 0.52/1: T wrong (0.489 would count) | 0.57/1: both ok, 0.539 fooled | 0.56/1: both ok, 0.529 fooled
# 0.60/1, 0.90/1: both ok, not fooled | 0.40/1: both wrong.  S -> T: 2 of 6 jointly correct.
# T -> S: the same 6 jointly correct; S is fooled by none of them (0.131, 0.481, 0.539, 0.529, ...).


def test_transfer_rate_counts_only_jointly_correct():
    S, T = _threshold(0.50), _threshold(0.55)
    assert transfer_rate(S, T, X1, Y1, random_start=False) == pytest.approx(100 * 2 / 6)
    assert transfer_rate(T, S, X1, Y1, random_start=False) == pytest.approx(0.0)
    x_adv = X1 + EPS * (1 - 2 * Y1[:, None].float())
    source_correct = attacks.predict(S, X1) == Y1
    assert transfer_rate_from(x_adv, T, X1, Y1, source_correct) == pytest.approx(100 * 2 / 6)
    nobody = torch.zeros_like(source_correct)
    assert math.isnan(transfer_rate_from(x_adv, T, X1, Y1, nobody))


def test_transfer_matrix_real_pgd_orientation():
    S, T = _threshold(0.50), _threshold(0.55)
    df = transfer_matrix({"S": [S], "T": [T]}, X1, Y1, random_start=False, progress=False)
    assert df.index.name == "target" and df.columns.name == "source"
    assert df.loc["T", "S"] == pytest.approx(100 * 2 / 6) and df.loc["S", "T"] == pytest.approx(0.0)
    # single seeds: the diagonal is white-box. S -> S: 7 correct, fooled 0.52 -> 0.489; T -> T: 7 correct,
    # fooled 0.53 -> 0.561, 0.57 -> 0.539, 0.56 -> 0.529
    assert df.loc["S", "S"] == pytest.approx(100 / 7) and df.loc["T", "T"] == pytest.approx(300 / 7)


# ---------------------------------------------------------------------------------------------------
# transfer matrix: stub models whose predictions are looked up. An input row is (image id, code), code 0
# for clean images and the source's code for images "crafted" by the fake PGD below. Labels are all 0.


class _Stub(nn.Module):
    def __init__(self, code: int, wrong: set, fooled_by: dict):
        super().__init__()
        self.code, self.wrong, self.fooled_by = code, wrong, fooled_by
        self.w = nn.Parameter(torch.tensor(float(code)))  # distinct weights: the PGD cache is keyed by them

    def forward(self, x):
        ids, codes = x[:, 0].long().tolist(), x[:, 1].long().tolist()
        bad = [
            (c == 0 and i in self.wrong) or i in self.fooled_by.get(c, ())
            for i, c in zip(ids, codes, strict=True)
        ]
        return F.one_hot(torch.tensor(bad).long(), 2).float() + 0 * self.w


N = 10
X2 = torch.stack([torch.arange(N).float(), torch.zeros(N)], 1)
Y2 = torch.zeros(N, dtype=torch.long)
ALL = set(range(N))


def _stubs():
    a0 = _Stub(1, {0}, {2: {5}, 3: ALL, 4: {1, 2}})
    a1 = _Stub(2, set(), {1: {0, 2, 3, 4}, 3: {2}})
    b0 = _Stub(3, {1}, {1: ALL, 2: {1, 2, 3, 4, 5, 6}, 3: ALL, 4: {0, 2, 9}})
    teacher = _Stub(4, {9}, {})
    return {"A": [a0, a1], "B": [b0]}, teacher


@pytest.fixture
def fake_pgd(monkeypatch):
    calls = []

    def fake(model, x, y, **kw):
        calls.append((model.code, kw.get("eps", EPS)))
        out = x.clone()
        out[:, 1] = model.code
        return out

    monkeypatch.setattr(attacks, "pgd", fake)
    return calls


# Hand-computed cells (joint = correct on clean for both; rate = fooled ∩ joint / joint):
# [A, A]: A0->A1 joint 1..9, fooled {2,3,4} = 3/9; A1->A0 joint 1..9, fooled {5} = 1/9   -> 22.22
# [B, A]: pairs i != j only: A1->B0 joint ≠1 (9), fooled {2..6} = 5/9 (A0->B0 = 100 is excluded) -> 55.56
# [A, B]: B0->A1 joint ≠1 (9), fooled {2} = 1/9 (B0->A0 excluded)                              -> 11.11
# [B, B]: one seed each: white-box B0->B0, joint ≠1 (9), all fooled                           -> 100
# Teacher: T->A0 joint 1..8, fooled {1,2} = 2/8; T->A1 joint 0..8, none -> 12.5;  T->B0 joint
# {0,2..8}, fooled {0,2} = 2/8 -> 25
EXPECTED = {
    "A": {"A": 200 / 9, "B": 100 / 9, "mean": 150 / 9, "Teacher": 12.5},
    "B": {"A": 500 / 9, "B": 100.0, "mean": 700 / 9, "Teacher": 25.0},
    "mean": {"A": 350 / 9, "B": 500 / 9, "mean": 425 / 9, "Teacher": 18.75},
}


def test_transfer_matrix_cells_means_and_teacher(fake_pgd):
    models, teacher = _stubs()
    df = transfer_matrix(models, X2, Y2, teacher=teacher, progress=False)
    assert list(df.index) == ["A", "B", "mean"] and list(df.columns) == ["A", "B", "mean", "Teacher"]
    for row, cells in EXPECTED.items():
        for col, value in cells.items():
            assert df.loc[row, col] == pytest.approx(value), (row, col)
    assert sorted(c for c, _ in fake_pgd) == [1, 2, 3, 4]  # each source attacked once


def test_transfer_matrix_cache_is_keyed_by_weights_settings_and_data(fake_pgd, tmp_path):
    models, teacher = _stubs()
    kw = dict(teacher=teacher, cache_dir=tmp_path, progress=False)
    first = transfer_matrix(models, X2, Y2, **kw)
    assert len(fake_pgd) == 4 and len(list(tmp_path.glob("*.pgd.pt"))) == 4
    assert not list(tmp_path.glob("*.tmp"))
    again = transfer_matrix(models, X2, Y2, **kw)
    assert len(fake_pgd) == 4 and again.equals(first)  # served from the cache
    transfer_matrix(models, X2, Y2, eps=0.05, **kw)
    assert len(fake_pgd) == 8 and all(e == 0.05 for _, e in fake_pgd[4:])
    transfer_matrix(models, X2, Y2, seed=1, **kw)
    assert len(fake_pgd) == 12
    transfer_matrix(models, X2[:8], Y2[:8], **kw)  # another test set
    assert len(fake_pgd) == 16
    transfer_matrix(models, X2, Y2, **kw)
    assert len(fake_pgd) == 16
    with torch.no_grad():
        models["B"][0].w += 10.0  # B0 retrained: new weights, same behaviour here, but never the old examples
    transfer_matrix(models, X2, Y2, **kw)
    assert [c for c, _ in fake_pgd[16:]] == [3]


def test_weights_hash_follows_the_weights_not_the_device_or_layout():
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    h = attacks.weights_hash(conv)
    assert len(h) == 64 and attacks.weights_hash(conv.to(memory_format=torch.channels_last)) == h
    twin = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    twin.load_state_dict(conv.state_dict())
    assert attacks.weights_hash(twin) == h
    with torch.no_grad():
        twin[1].running_mean[0] += 1e-3  # a buffer is part of the weights
    assert attacks.weights_hash(twin) != h


def test_transfer_matrix_takes_a_bare_module_as_one_seed(fake_pgd):
    models, teacher = _stubs()
    listed = transfer_matrix({"A": models["A"], "B": models["B"]}, X2, Y2, teacher=teacher, progress=False)
    bare = transfer_matrix({"A": nn.ModuleList(models["A"]), "B": models["B"][0]}, X2, Y2, teacher=teacher,
                           progress=False)
    assert bare.equals(listed)
    seq = nn.Sequential(nn.Flatten(), nn.Linear(2, 2))  # iterable as its layers, but one model
    assert attacks.as_seeds({"S": seq})["S"] == [seq]


@pytest.mark.parametrize("bad", [[], "resnet8", [nn.Linear(1, 2), "x"], 3])
def test_transfer_matrix_refuses_what_is_not_a_model_in_one_line(bad):
    with pytest.raises(ValueError, match=r"^models\['A'\] must be a module or a non-empty list of modules") as err:
        transfer_matrix({"A": bad}, X1, Y1, progress=False)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="reserved"):
        transfer_matrix({"mean": nn.Linear(1, 2)}, X1, Y1, progress=False)


# ---------------------------------------------------------------------------------------------------
# BSS


def test_bss_select_jointly_correct_top_scores():
    g = torch.Generator().manual_seed(0)
    t = torch.randn(300, 10, generator=g) * 3
    s = t + torch.randn(300, 10, generator=g)
    noisy = torch.randint(0, 10, (300,), generator=g)
    y = torch.where(torch.rand(300, generator=g) < 0.7, t.argmax(1), noisy)
    ok = (t.argmax(1) == y) & (s.argmax(1) == y)
    d = (t.softmax(1) - s.softmax(1)) ** 2
    score = torch.tensor([d[i].sum() - d[i, y[i]] for i in range(300)])
    assert ok.sum() > 32
    idx = bss_select(t, s, y, attack_size=32)
    assert len(idx) == 32 and ok[idx].all() and len(set(idx.tolist())) == 32
    assert (score[idx][:-1] >= score[idx][1:]).all()
    rest = torch.ones(300, dtype=torch.bool)
    rest[idx] = False
    assert score[idx].min() >= score[rest & ok].max()
    few = bss_select(t[:20], s[:20], y[:20], attack_size=32)  # fewer candidates: all of them
    assert sorted(few.tolist()) == ok[:20].nonzero().flatten().tolist()


def test_bss_targets_distribution():
    logits = torch.tensor([[0.5, 2.0, 1.0, 0.0, -1.0]])
    draws = bss_targets(logits.expand(6000, 5), generator=torch.Generator().manual_seed(0))
    assert not (draws == 1).any()
    p = logits.softmax(1)[0]
    expected = p.clone()
    expected[1] = 0
    expected = expected / expected.sum() * 6000
    counts = torch.bincount(draws, minlength=5).float()
    keep = expected > 0
    chi2 = ((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    assert chi2 < 16.3  # 99.9 % quantile of chi-square with 3 degrees of freedom
    mixed = torch.randn(2000, 7, generator=torch.Generator().manual_seed(1)) * 4
    k = bss_targets(mixed, generator=torch.Generator().manual_seed(2))
    assert not (k == mixed.argmax(1)).any() and k.min() >= 0 and k.max() < 7
    again = bss_targets(mixed, generator=torch.Generator().manual_seed(2))
    assert torch.equal(k, again)


def test_bss_attack_stops_at_crossing_linear():
    # 2 classes, z_1 − z_0 = v·(x − c) with ‖v‖ = 10, so η‖g‖ = 0.6 and the gap shrinks as
    # gap_{j+1} = gap_j − 0.6 (gap_j + 1e-4): from 1e-3, 0.05 and 1.0 it crosses after 3, 7 and > 10 steps
    eta, delta, D = 0.06, 1e-4, 4
    u = torch.full((D,), 0.5, dtype=torch.float64)  # unit vector
    lin = nn.Linear(D, 2).double()
    c = torch.full((D,), 0.5, dtype=torch.float64)
    with torch.no_grad():
        lin.weight.copy_(torch.stack([torch.zeros(D, dtype=torch.float64), 10 * u]))
        lin.bias.copy_(torch.tensor([0.0, -10 * (u @ c).item()]))
    gaps = torch.tensor([1e-3, 0.05, 1.0], dtype=torch.float64)
    x0 = c - gaps[:, None] / 10 * u
    target = torch.ones(3, dtype=torch.long)
    expected, crossed_at = [], []
    for gap in gaps.tolist():  # the per-sample reference loop
        pos, steps_taken = 0.0, 0
        for _ in range(10):
            if gap < 0:
                break
            pos, gap, steps_taken = pos + eta * (gap + delta), gap - 0.6 * (gap + delta), steps_taken + 1
        expected.append(pos)
        crossed_at.append(steps_taken if gap < 0 else None)
    assert crossed_at == [3, 7, None]
    out = bss_attack(lin, x0, target, steps=10, eta=eta)
    moved = (out - x0) @ u
    assert torch.allclose(moved, torch.tensor(expected, dtype=torch.float64), atol=1e-12, rtol=1e-9)
    assert torch.allclose(out - x0, moved[:, None] * u, atol=1e-12)  # along the unit gradient only
    for i, k in enumerate(crossed_at[:2]):  # no move after crossing: k steps give the same point as 10
        assert torch.equal(bss_attack(lin, x0, target, steps=k, eta=eta)[i], out[i])
        assert lin(out[i]).argmax().item() == 1
    assert not torch.equal(bss_attack(lin, x0, target, steps=9, eta=eta)[2], out[2])


def test_bss_attack_crosses_on_trained_net(trained):
    model, x, y = trained
    model.train()
    with torch.no_grad():
        t_logits = model.eval()(x)
    model.train()
    idx = bss_select(t_logits, t_logits, y, attack_size=64)
    k = bss_targets(t_logits[idx], generator=torch.Generator().manual_seed(0))
    x_hat = bss_attack(model, x[idx], k)
    assert model.training and all(p.grad is None for p in model.parameters())
    assert x_hat.min() >= 0 and x_hat.max() <= 1 and x_hat.dtype == x.dtype
    with torch.no_grad():
        after = model.eval()(x_hat).argmax(1)
    model.eval()
    assert (after != y[idx]).float().mean() > 0.8
    x3 = bss_attack(model, x[idx], k, steps=3)
    with torch.no_grad():
        crossed = model(x3).argmax(1) != y[idx]
    assert crossed.any() and torch.equal(x_hat[crossed], x3[crossed])  # crossed samples no longer move
    ones = torch.ones(1, 3, 1, 1)  # per-channel bounds as tensors
    assert torch.allclose(bss_attack(model, x[idx], k, lo=0 * ones, hi=ones), x_hat)
    edge = x[idx].round()  # pixels at 0 and 1, large steps: the clamp must hold them in the box
    free = bss_attack(model, edge, k, eta=1.0, lo=-math.inf, hi=math.inf)
    boxed = bss_attack(model, edge, k, eta=1.0)
    assert (free < 0).any() and (free > 1).any() and boxed.min() >= 0 and boxed.max() <= 1
