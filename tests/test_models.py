"""kdnb.models: parameter counts (spec part 1 §2.4), feature taps (§2.3), names, ONE (part 2 §3.1)."""

import re

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from kdnb import models as M

RESNETS = ["resnet8", "resnet14", "resnet20", "resnet26"]
WRNS = ["wrn10_2", "wrn16_2", "wrn28_2", "wrn40_2"]
ALL = RESNETS + [n + "x4" for n in RESNETS] + WRNS

# spec part 1 §2.4 (CIFAR-10, CIFAR-100)
SPEC_COUNTS = {
    ("resnet8", "A"): (75_290, 81_140),
    ("resnet14", "A"): (172_506, 178_356),
    ("resnet20", "A"): (269_722, 275_572),
    ("resnet26", "A"): (366_938, 372_788),
    ("resnet8", "B"): (78_042, 78_042 + 5_850),
    ("resnet14", "B"): (175_258, 175_258 + 5_850),
    ("resnet20", "B"): (272_474, 272_474 + 5_850),
    ("resnet26", "B"): (369_690, 369_690 + 5_850),
    ("wrn10_2", None): (303_706, 315_316),
    ("wrn16_2", None): (691_674, 703_284),
    ("wrn28_2", None): (1_467_610, 1_479_220),
    ("wrn40_2", None): (2_243_546, 2_255_156),
}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def resnet_count(depth: int, k: int, classes: int, shortcut: str) -> int:
    """Hand count of a CIFAR ResNet: conv weights, BN gamma/beta, fc weight and bias."""
    n, (c1, c2, c3) = (depth - 2) // 6, (16 * k, 32 * k, 64 * k)
    total = 27 * c1 + 2 * c1  # stem conv + BN
    for cin, c in ((c1, c1), (c1, c2), (c2, c3)):
        total += 9 * cin * c + 9 * c * c + 4 * c + (n - 1) * (18 * c * c + 4 * c)
        if cin != c and shortcut == "B":
            total += cin * c + 2 * c
    return total + c3 * classes + classes


def wrn_count(depth: int, k: int, classes: int) -> int:
    n, (c1, c2, c3) = (depth - 4) // 6, (16 * k, 32 * k, 64 * k)
    total = 27 * 16  # bare stem conv
    for cin, c in ((16, c1), (c1, c2), (c2, c3)):
        total += 2 * cin + 9 * cin * c + 2 * c + 9 * c * c + (cin * c if cin != c else 0)
        total += (n - 1) * (4 * c + 18 * c * c)
    return total + 2 * c3 + c3 * classes + classes


def test_count_formulas_reproduce_spec():
    for (name, sc), counts in SPEC_COUNTS.items():
        depth = int(re.search(r"\d+", name).group())
        got = [wrn_count(depth, 2, K) if sc is None else resnet_count(depth, 1, K, sc) for K in (10, 100)]
        assert tuple(got) == counts, name


@pytest.mark.parametrize("classes", [10, 100])
def test_param_counts_spec(classes):
    for (name, sc), counts in SPEC_COUNTS.items():
        opts = {} if sc is None else {"shortcut": sc}
        assert n_params(M.build(name, classes, **opts)) == counts[classes == 100], (name, sc)


@pytest.mark.parametrize("classes", [10, 100])
@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_param_counts_x4(classes, shortcut):
    for depth in (8, 14, 20, 26):
        model = M.build(f"resnet{depth}x4", classes, shortcut=shortcut)
        assert n_params(model) == resnet_count(depth, 4, classes, shortcut)
    if shortcut == "B" and classes == 10:  # hand-derived anchor for ResNet-8x4
        assert resnet_count(8, 4, 10, "B") == 1_227_594


@pytest.mark.parametrize("name", ALL)
def test_feature_taps(name):
    torch.manual_seed(0)
    model = M.build(name).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        plain = model(x)
        logits, feats = model(x, features=True)
    assert plain.shape == (2, 10) and torch.equal(plain, logits)
    assert list(feats) == ["stem", "block1", "block2", "block3", "pool"]
    k = 4 if name.endswith("x4") else 1
    widths = (16 * k, 16 * k, 32 * k, 64 * k) if name.startswith("resnet") else (16, 32, 64, 128)
    for tap, c, s in zip(("stem", "block1", "block2", "block3"), widths, (32, 32, 16, 8), strict=True):
        assert feats[tap].shape == (2, c, s, s), tap
        assert model.feature_shapes[tap] == (c, s, s) and model.feature_channels[tap] == c
    assert feats["pool"].shape == (2, widths[3]) and model.feature_shapes["pool"] == (widths[3],)
    assert torch.allclose(model.fc(feats["pool"]), logits, atol=1e-5)
    if name.startswith("resnet"):  # §2.3: post-ReLU stage outputs
        assert all((feats[t] >= 0).all() for t in ("stem", "block1", "block2", "block3"))
        assert torch.allclose(feats["pool"], feats["block3"].mean((2, 3)), atol=1e-6)
    else:  # raw residual sums; pool after the final BN-ReLU
        assert (feats["block3"] < 0).any() and (feats["stem"] < 0).any()
        ref = F.adaptive_avg_pool2d(F.relu(model.bn_final(feats["block3"])), 1).flatten(1)
        assert torch.allclose(feats["pool"], ref, atol=1e-6)


def test_attribute_names_and_init():
    res, wrn = M.build("resnet8"), M.build("wrn16_2")
    assert [n for n, _ in res.named_children()] == ["stem", "layer1", "layer2", "layer3", "fc"]
    assert [n for n, _ in wrn.named_children()] == ["stem", "layer1", "layer2", "layer3", "bn_final", "fc"]
    assert isinstance(wrn.stem, torch.nn.Conv2d)  # §2.2: no BN/ReLU after the WRN stem
    assert res.bn_final is None and torch.all(res.fc.bias == 0) and torch.all(wrn.fc.bias == 0)
    bn = res.layer1[0].bn1
    assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    w = wrn.layer3[0].conv2.weight  # He-normal fan_out: std sqrt(2 / (9 * 128))
    assert abs(w.std().item() / (2 / (9 * 128)) ** 0.5 - 1) < 0.05


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [("ResNet-8", "resnet8"), ("ResNet8", "resnet8"), ("resnet-8x4", "resnet8x4"),
     ("ResNet-26x4", "resnet26x4"), ("WRN-16-2", "wrn16_2"), ("wrn_16_2", "wrn16_2"), ("wrn16_2", "wrn16_2"),
     ("WRN-40-2", "wrn40_2")],
)
def test_paper_spellings(spelling, canonical):
    assert M.canonical_name(spelling) == canonical
    assert M.build(spelling).arch == canonical


def test_names_and_unknown():
    assert set(M.MODELS) == set(ALL) and M.names() == list(M.MODELS) and set(M.REGISTRY) == set(ALL)
    for bad in ("resnet9", "vgg16", "wrn16", "wrn15_2"):
        with pytest.raises(ValueError, match=bad) as err:
            M.build(bad)
        assert "resnet8" in str(err.value) and "wrn40_2" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ValueError, match="shortcut"):
        M.build("resnet8", shortcut="C")
    assert M.build("wrn16_4").arch == "wrn16_4" and M.build("resnet32").arch == "resnet32"


def test_option_a_shortcut():
    model = M.build("resnet8", shortcut="A")
    sc = model.layer2[0].shortcut
    assert isinstance(sc, M.ZeroPadShortcut) and not list(sc.parameters())
    x = torch.randn(1, 16, 4, 4)
    ref = torch.cat([x[:, :, ::2, ::2], torch.zeros(1, 16, 2, 2)], dim=1)
    assert torch.equal(sc(x), ref)
    assert isinstance(M.build("resnet8").layer2[0].shortcut[0], torch.nn.Conv2d)  # B by default


def test_vmap_functional_call():
    torch.manual_seed(0)
    nets = [M.build("resnet8").eval() for _ in range(2)]
    params, buffers = stack_module_state(nets)
    x = torch.rand(2, 3, 32, 32)

    def f(p, b):
        return functional_call(nets[0], (p, b), (x,), {"features": True})

    logits, feats = vmap(f)(params, buffers)
    with torch.no_grad():
        for i, net in enumerate(nets):
            assert torch.allclose(logits[i], net(x), atol=1e-5)
    assert feats["block2"].shape == (2, 2, 32, 16, 16)


@pytest.mark.parametrize("name", ["resnet8", "wrn10_2"])
def test_one(name):
    torch.manual_seed(0)
    one = M.build_one(name, 10, branches=3)
    x = torch.rand(2, 3, 32, 32)
    zs, gate = one(x)  # train mode: BN1d of the gate uses batch statistics
    assert zs.shape == (3, 2, 10) and gate.shape == (2, 3)
    assert torch.allclose(gate.sum(1), torch.ones(2)) and (gate >= 0).all()
    ze = M.ensemble_logits(zs, gate)
    assert torch.allclose(ze, (gate.T[:, :, None] * zs).sum(0), atol=1e-6)
    assert one.gate_fc.in_features == (32 if name == "resnet8" else 64)
    one.eval()
    with torch.no_grad():
        zs, _ = one(x)
    ref = M.build(name).state_dict()
    for i in range(3):
        student = M.extract_branch(one, i)
        state = student.state_dict()
        assert type(student) is type(M.build(name)) and not student.training
        assert list(state) == list(ref) and all(state[k].shape == ref[k].shape for k in ref)
        with torch.no_grad():
            assert torch.allclose(student(x), zs[i], atol=1e-5)
    assert not torch.allclose(zs[0], zs[1])  # independent branch weights


@pytest.mark.parametrize("name", ["resnet8", "resnet8x4", "wrn16_2"])
def test_feature_shapes_come_from_the_name_alone(name):
    model = M.build(name)
    assert M.feature_shapes(name) == model.feature_shapes
    _, feats = model(torch.rand(2, 3, 32, 32), features=True)
    assert {k: tuple(v.shape[1:]) for k, v in feats.items()} == M.feature_shapes(name)
    assert M.family(name) == ("wrn" if name.startswith("wrn") else "resnet")


@pytest.mark.parametrize("name", ["resnet8", "wrn16_2"])
def test_forward_intermediates_stops_after_the_last_tap_asked_for(name):
    torch.manual_seed(0)
    model = M.build(name)  # train mode: a layer that runs updates its BN statistics
    x = torch.rand(4, 3, 32, 32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    early = model.forward_intermediates(x, ["block1"])
    assert list(early) == ["stem", "block1"]
    after = model.state_dict()
    ran = {k.split(".")[0] for k in after if not torch.equal(before[k], after[k])}
    assert ran == ({"stem", "layer1"} if name.startswith("resnet") else {"layer1"})  # the WRN stem has no BN
    model.eval()
    with torch.no_grad():
        _, feats = model(x, features=True)
        assert all(torch.equal(v, feats[k]) for k, v in model.forward_intermediates(x, ["block2"]).items())
    assert [type(m) for m in model.tap_modules("block2")] == [type(model.stem), torch.nn.Sequential,
                                                              torch.nn.Sequential]
    with pytest.raises(ValueError, match="'block4'.*stem, block1"):
        model.forward_intermediates(x, ["block4"])
