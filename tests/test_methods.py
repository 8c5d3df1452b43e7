"""Distillation methods: each lowers its loss, trains the right parameters and computes the spec's loss."""

import copy
import shutil

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from kdnb import attacks, losses
from kdnb.config import ConfigError, RunConfig
from kdnb.methods import METHODS, FitNet, objectives, total
from kdnb.models import build, ensemble_logits, extract_branch
from kdnb.store import Store, safe_torch_load
from kdnb.study import Params, Study
from kdnb.train import train_run

SYNTH = {"dataset": "synthetic", "synthetic_train": 3, "synthetic_test": 2}
BLOCKS = ("block1", "block2", "block3")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def config(method, teacher="resnet8", **kw):
    d = {"method": method, "student": "resnet8", "teacher": teacher, "epochs": 4, "batch_size": 16, "data": SYNTH}
    return RunConfig.from_dict({**d, **kw})


def make(method, teacher="resnet8", **method_args):
    """A method on a random teacher (eval, frozen), in train mode, with its own generator."""
    cfg = config(method, teacher, method_args=method_args)
    torch.manual_seed(1)
    t = build(cfg.teacher).eval().requires_grad_(False) if cfg.teacher else None
    torch.manual_seed(0)
    m = METHODS[method](cfg, t)
    m.generator.manual_seed(0)
    m.train()
    return m


@pytest.fixture(scope="module")
def batch():
    g = torch.Generator().manual_seed(0)
    return torch.rand(16, 3, 32, 32, generator=g), torch.randint(0, 10, (16,), generator=g)


def loss_of(m, x, y, stage, epoch=0):
    """The summed loss of a batch (all models' objectives together)."""
    return total(m.loss(x, y, stage, epoch)[0])


# --- every method learns ----------------------------------------------------------------------


@pytest.mark.parametrize("name", list(METHODS))
def test_a_few_steps_lower_the_loss(name, batch):
    x, y = batch
    m = make(name)
    for stage in m.stages():
        opts = [torch.optim.SGD(g, lr=stage.lr, momentum=stage.momentum) for g in m.param_groups(stage)]

        def measure(stage=stage):
            m.generator.manual_seed(0)
            with torch.no_grad():
                return loss_of(m, x, y, stage).item()

        before = measure()
        for _ in range(8):
            m.step(x, y, stage, 0, opts)
        assert measure() < before, stage.name


def test_the_default_step_is_one_backward_and_sgd_step_of_the_summed_terms(batch):
    x, y = batch
    m, ref = make("hinton"), make("hinton")
    stage = m.stages()[0]
    opt, ref_opt = m.optimizers(stage), ref.optimizers(stage)
    terms, logits = m.step(x, y, stage, 0, opt)
    assert list(terms) == ["ce", "kd"] and torch.equal(logits, ref.models["student"](x).detach())
    ref_terms, _ = ref.loss(x, y, stage, 0)
    ref_opt[0].zero_grad()
    (ref_terms["ce"] + ref_terms["kd"]).backward()
    ref_opt[0].step()
    assert all(torch.equal(a, b) for a, b in zip(m.models.parameters(), ref.models.parameters(), strict=True))


def test_objectives_sum_each_models_terms_in_order():
    t = {k: torch.tensor(v) for k, v in {"a/ce": 1.0, "a/kd": 2.0, "b/ce": 4.0}.items()}
    assert [o.item() for o in objectives(t)] == [3.0, 4.0]
    assert [o.item() for o in objectives({"ce": torch.tensor(1.0), "kd": torch.tensor(0.5)})] == [1.5]


# --- the loss of each method, recomputed -------------------------------------------------------


def _sce(s, t, T=4.0):
    return -(F.softmax(t / T, 1) * F.log_softmax(s / T, 1)).sum(1).mean()


FEATURE_TERMS = {
    "at": ({}, lambda fs, ft: 1000 * losses.attention([fs[k] for k in BLOCKS], [ft[k] for k in BLOCKS])),
    "sp": ({}, lambda fs, ft: 3000 * losses.similarity_preserving(fs["block3"], ft["block3"])),
    "rkd_d": ({}, lambda fs, ft: 25 * losses.rkd_distance(fs["pool"], ft["pool"])),
    "rkd_a": ({}, lambda fs, ft: 50 * losses.rkd_angle(fs["pool"], ft["pool"])),
    "rkd_da": ({}, lambda fs, ft: 25 * losses.rkd_distance(fs["pool"], ft["pool"])
               + 50 * losses.rkd_angle(fs["pool"], ft["pool"])),
    "rkd_da/block3_flat": ({"rkd_feature": "block3_flat"},
                           lambda fs, ft: 25 * losses.rkd_distance(fs["block3"], ft["block3"])
                           + 50 * losses.rkd_angle(fs["block3"], ft["block3"])),
}


@pytest.mark.parametrize("case", list(FEATURE_TERMS))
def test_feature_method_loss_is_ce_plus_weighted_term(case, batch):
    x, y = batch
    args, term = FEATURE_TERMS[case]
    m = make(case.split("/")[0], **args)
    terms, logits = m.loss(x, y, m.stages()[0], 0)
    z, fs = m.models["student"](x, features=True)
    with torch.no_grad():
        _, ft = m.teacher(x, features=True)
    assert torch.equal(logits, z) and torch.equal(terms["ce"], F.cross_entropy(z, y))
    assert torch.allclose(total(terms), F.cross_entropy(z, y) + term(fs, ft), rtol=1e-5)


def test_stage1_losses_are_the_hint_and_fsp_terms(batch):
    x, y = batch
    fit, fsp = make("fitnet"), make("fsp")
    with torch.no_grad():
        _, ft = fit.teacher(x, features=True)
        _, fs = fit.models["student"](x, features=True)
        _, gs = fsp.models["student"](x, features=True)
    hint, logits = fit.loss(x, y, fit.stages()[0], 0)
    assert list(hint) == ["hint"] and logits is None  # stage 1 trains no classifier
    assert torch.allclose(hint["hint"], F.mse_loss(fs["block2"], ft["block2"]))
    pairs = [("stem", "block1"), ("block1", "block2"), ("block2", "block3")]
    expected = losses.fsp([(gs[a], gs[b]) for a, b in pairs], [(ft[a], ft[b]) for a, b in pairs], (1, 3, 1))
    assert torch.allclose(loss_of(fsp, x, y, fsp.stages()[0]), expected)
    main = fit.stages()[1]  # stage 2 is Hinton, α 0.9, T 4
    z = fit.models["student"](x)
    with torch.no_grad():
        zt = fit.teacher(x)
    assert torch.allclose(loss_of(fit, x, y, main), 0.1 * F.cross_entropy(z, y) + 0.9 * losses.hinton_kd(z, zt))


# --- FitNet and FSP: stage 1 trains its layers only ---------------------------------------------


@pytest.mark.parametrize("name, trained", [("fitnet", {"stem", "layer1", "layer2"}),
                                           ("fsp", {"stem", "layer1", "layer2", "layer3"})])
def test_stage1_changes_exactly_its_layers(name, trained, batch):
    x, y = batch
    m = make(name)
    student, stage = m.models["student"], m.stages()[0]
    assert m.stage_key(0, stage) and stage.lr == 1e-3 and stage.epochs == 2  # 100 of 200 epochs, scaled to 4
    assert m.stage_key(1, m.stages()[1]) is None  # stage 2 is the run's own
    (group,) = m.param_groups(stage)
    names = {n for n, p in student.named_parameters() if any(p is q for q in group)}
    assert names == {n for n, _ in student.named_parameters() if n.split(".")[0] in trained}
    before = copy.deepcopy(student.state_dict())
    opt = torch.optim.SGD(group, lr=0.01, momentum=0.9, weight_decay=5e-4)
    for _ in range(2):
        m.step(x, y, stage, 0, [opt])
    after, params = student.state_dict(), dict(student.named_parameters())
    for k in before:
        if k.split(".")[0] not in trained:
            assert torch.equal(before[k], after[k]), k  # parameters and BN buffers alike
        elif k in params:
            assert not torch.equal(before[k], after[k]), k


def test_fitnet_regressor_is_identity_or_a_conv_when_widths_differ():
    assert isinstance(make("fitnet").models["regressor"], nn.Identity)
    m = make("fitnet", teacher="resnet8x4")
    reg = m.models["regressor"]
    assert isinstance(reg, nn.Conv2d) and (reg.in_channels, reg.out_channels, reg.kernel_size) == (32, 128, (1, 1))
    group = m.param_groups(m.stages()[0])[0]
    assert any(p is reg.weight for p in group)
    assert not any(p is reg.weight for p in m.param_groups(m.stages()[1])[0])  # stage 1 only


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("store"))
    cfg = RunConfig.from_dict({"method": "baseline", "student": "resnet8", "epochs": 1, "batch_size": 16,
                               "data": SYNTH})
    return store, train_run(cfg, store, "cpu", progress=False)["run_id"]


def test_two_stage_run_fresh_optimiser_all_parameters_and_stage_reuse(teacher_run, monkeypatch):
    store, tid = teacher_run
    built, optimisers = [], []

    class Spy(FitNet):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            built.append((self, copy.deepcopy(self.models["student"].state_dict())))

    class SGD(torch.optim.SGD):
        def __init__(self, params, **kw):
            super().__init__(params, **kw)
            optimisers.append(self)

    monkeypatch.setitem(METHODS, "fitnet", Spy)
    monkeypatch.setattr(torch.optim, "SGD", SGD)
    cfg = config("fitnet", teacher_run=tid, epochs=2)  # stage 1: 1 epoch, stage 2: 2 epochs
    assert train_run(cfg, store, "cpu", progress=False)["status"] == "done"
    method, init = built[0]
    student = method.models["student"]
    names = {id(p): n for n, p in student.named_parameters()}
    assert len(optimisers) == 2  # one per stage: stage 2 starts afresh
    hint, main = ({names[id(p)] for g in o.param_groups for p in g["params"]} for o in optimisers)
    assert hint == {n for n in names.values() if n.split(".")[0] in ("stem", "layer1", "layer2")}
    assert main == set(names.values())

    stages = method.stages()
    key = method.stage_key(0, stages[0])
    after1 = safe_torch_load(store.stage_path(key))["models"]
    final = safe_torch_load(store.model_path(cfg.run_id))
    for k, v in init.items():
        moved = not torch.equal(v, after1[f"student.{k}"])
        assert moved == (k.split(".")[0] in ("stem", "layer1", "layer2")), k
    for k in names.values():
        assert not torch.equal(after1[f"student.{k}"], final[k]), k  # stage 2 trains everything

    other = cfg.replace(lr=0.05)  # a field only stage 2 reads
    assert FitNet(other).stage_key(0, stages[0]) == key
    changed = config("fitnet", teacher_run=tid, epochs=2, method_args={"stage1_lr": 0.01})
    assert FitNet(changed).stage_key(0, FitNet(changed).stages()[0]) != key
    rec = train_run(other, store, "cpu", progress=False)
    assert rec["history"][0] == {"stage": "hint", "reused": key}
    assert len(optimisers) == 3  # the second run trained stage 2 only
    reused = safe_torch_load(store.model_path(other.run_id))
    fresh_store = Store(store.root.parent / "fresh")  # same teacher: copy its record and weights
    shutil.copytree(store.run_dir(tid), fresh_store.run_dir(tid))
    train_run(other, fresh_store, "cpu", progress=False)
    scratch = safe_torch_load(fresh_store.model_path(other.run_id))
    assert all(torch.equal(reused[k], scratch[k]) for k in scratch)  # reuse is bit-identical to training it


# --- DML --------------------------------------------------------------------------------------


def test_dml_member_loss_sends_no_gradient_to_its_peer(batch):
    x, y = batch
    m = make("dml")
    terms, logits = m.loss(x, y, m.stages()[0], 0)
    assert list(terms) == ["member1/ce", "member1/mutual", "member2/ce", "member2/mutual"]
    objectives(terms)[0].backward()  # member 1's loss
    assert torch.equal(logits, m.models["member1"](x))
    assert all(p.grad is not None for p in m.models["member1"].parameters())
    assert all(p.grad is None for p in m.models["member2"].parameters())


@pytest.mark.parametrize("mode", ["alternating", "simultaneous"])
def test_dml_member2_sees_member1_after_its_update_when_alternating(mode, batch):
    x, y = batch
    m = make("dml", mode=mode)
    stage, m1 = m.stages()[0], m.models["member1"]
    member2 = copy.deepcopy(m.models["member2"])  # its weights in the step, before its own update
    with torch.no_grad():
        old = m1(x)
    terms, _ = m.step(x, y, stage, 0, [torch.optim.SGD(g, lr=0.5) for g in m.param_groups(stage)])
    with torch.no_grad():
        new, z2 = m1(x), member2(x)
    assert not torch.equal(new, old) and not torch.equal(member2.fc.weight, m.models["member2"].fc.weight)
    fresh = F.cross_entropy(z2, y) + losses.mutual(z2, new, 4.0)
    stale = F.cross_entropy(z2, y) + losses.mutual(z2, old, 4.0)
    assert not torch.allclose(fresh, stale)
    assert torch.allclose(terms["member2/ce"] + terms["member2/mutual"], fresh if mode == "alternating" else stale)


def test_dml_reports_and_deploys_the_better_member():
    m = make("dml")
    assert list(m.eval_models()) == ["member1", "member2"]
    assert m.report({"member1": 30.0, "member2": 40.0}) == 40.0
    assert m.deployed({"member1": 30.0, "member2": 40.0}) is m.models["member2"]
    assert not torch.equal(m.models["member1"].fc.weight, m.models["member2"].fc.weight)


# --- ONE --------------------------------------------------------------------------------------


def test_one_deploys_the_best_branch_as_exactly_the_student(batch):
    x, _ = batch
    m = make("one")
    one = m.models["one"]
    accs = {"branch1": 20.0, "branch2": 70.0, "branch3": 40.0, "ensemble": 90.0}
    assert m.report(accs) == 70.0  # the best single branch, not the ensemble
    sd, ref = m.deployed(accs).state_dict(), build("resnet8").state_dict()
    assert list(sd) == list(ref) and all(sd[k].shape == ref[k].shape for k in ref)
    assert torch.equal(sd["layer3.0.conv1.weight"], one.branches[1].layer3[0].conv1.weight)
    views = m.eval_models()
    assert list(views) == ["branch1", "branch2", "branch3", "ensemble"]
    one.eval()
    with torch.no_grad():
        out = {k: v(x) for k, v in views.items()}
        z, gate = one(x)
        for i in range(3):
            assert torch.allclose(out[f"branch{i + 1}"], extract_branch(one, i).eval()(x), atol=1e-6)
    assert torch.allclose(out["ensemble"], ensemble_logits(z, gate))


def test_one_recipe_and_rampup_scale_with_the_epochs(batch):
    x, y = batch
    stage = make("one").stages()[0]  # 300 epochs of 200 -> 6 of 4; milestones 150, 225 -> 3, 4
    assert (stage.epochs, stage.milestones, stage.weight_decay, stage.batch_size) == (6, (3, 4), 1e-4, 128)
    m = make("one")
    z, gate = m.models["one"](x)
    expected = losses.one(z, gate, y, 3.0, losses.one_rampup(1, 2))  # ramp 80 of 200 -> 2 epochs
    assert torch.allclose(loss_of(m, x, y, stage, 1), expected)


# --- BSS --------------------------------------------------------------------------------------


@pytest.fixture
def bss(batch):
    """BSS whose teacher is a copy of the student with BN statistics of the batch, so that most
    samples are classified alike; labels are the teacher's predictions."""
    x, _ = batch
    m = make("bss", attack_size=4)
    t = copy.deepcopy(m.models["student"])
    for mod in t.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.momentum = None
            mod.reset_running_stats()
    with torch.no_grad():
        t(x)
        m.teacher = t.eval().requires_grad_(False)
        y = m.teacher(x).argmax(1)
    return m, x, y


@pytest.fixture
def attack_calls(monkeypatch):
    calls = []

    def spy(teacher, x, target, *a, **kw):
        calls.append(x)
        return real(teacher, x, target, *a, **kw)

    real = attacks.bss_attack
    monkeypatch.setattr(attacks, "bss_attack", spy)
    return calls


def test_bss_loss_recomputed_by_hand(bss, attack_calls):
    m, x, y = bss
    stage = m.stages()[0]
    assert (stage.epochs, stage.lr, stage.milestones, stage.weight_decay, stage.batch_size) == \
        (4, 0.1, (2, 3), 1e-4, 256)
    m.generator.manual_seed(0)
    loss = loss_of(m, x, y, stage)

    student, teacher = m.models["student"], m.teacher
    zs = student(x)
    with torch.no_grad():
        zt = teacher(x)
    ok = (zt.argmax(1) == y) & (zs.argmax(1) == y)
    assert ok.sum() > 4  # more candidates than the attack size
    score = (zt.softmax(1) - zs.detach().softmax(1)).pow(2)
    score[torch.arange(len(y)), y] = 0
    idx = score.sum(1).masked_fill(~ok, -1).argsort(descending=True)[:4]
    assert len(attack_calls) == 1 and torch.equal(attack_calls[0], x[idx])  # only the selected samples
    target = attacks.bss_targets(zt[idx], torch.Generator().manual_seed(0))
    x_adv = attacks.bss_attack(teacher, x[idx], target, 10, 0.06)
    with torch.no_grad():
        zt_adv = teacher(x_adv)
    alpha, beta = 1 + 3 * (1 - 1 / 4), 2 * (1 - 4 * 1 / (3 * 4))
    expected = F.cross_entropy(zs, y) + alpha * _sce(zs, zt) + beta * _sce(student(x_adv), zt_adv)
    assert torch.allclose(loss, expected, rtol=1e-5)
    assert not torch.allclose(loss, F.cross_entropy(zs, y) + alpha * _sce(zs, zt))


def test_bss_skips_the_attack_when_beta_is_zero(bss, attack_calls):
    m, x, y = bss
    stage = m.stages()[0]
    terms, z = m.loss(x, y, stage, 3)  # e = 4 of 4 >= 0.75·E: β = 0, α = 1
    loss = total(terms)
    assert attack_calls == []
    with torch.no_grad():
        zt = m.teacher(x)
    assert torch.allclose(loss, F.cross_entropy(z, y) + _sce(z, zt))


def test_bss_skips_the_attack_when_no_sample_is_jointly_correct(bss, attack_calls):
    m, x, y = bss
    wrong = (y + 1) % 10  # the teacher is wrong everywhere
    terms, z = m.loss(x, wrong, m.stages()[0], 0)
    loss = total(terms)
    assert attack_calls == []
    with torch.no_grad():
        zt = m.teacher(x)
    assert torch.allclose(loss, F.cross_entropy(z, wrong) + 3.25 * _sce(z, zt))


def test_bss_standard_recipe():
    cfg = config("bss", method_args={"bss_recipe": "standard"})
    assert METHODS["bss"](cfg).stages() == METHODS["hinton"](config("hinton")).stages()


# --- configuration errors -----------------------------------------------------------------------


def test_fsp_rejects_teachers_of_other_widths():
    with pytest.raises(ConfigError, match="resnet8x4") as err:
        config("fsp", teacher="resnet8x4")
    assert "student resnet8 " in str(err.value) and "\n" not in str(err.value)
    config("fitnet", teacher="resnet8x4")  # FitNet bridges widths with its regressor


@pytest.mark.parametrize("method, args, teacher", [
    ("bss", {"bss_recipe": "official"}, "resnet26"),
    ("fitnet", {"fitnet_reduction": "sum"}, "resnet26"),
    ("rkd_d", {"rkd_feature": "block2"}, "resnet26"),
    ("at", {"layers": ["block1", "pool"]}, "resnet26"),
    ("dml", {"mode": "together"}, None),
    ("dml", {"cohort": 1}, None),
])
def test_bad_method_arguments_are_rejected(method, args, teacher):
    with pytest.raises(ConfigError, match=method):
        config(method, teacher=teacher, method_args=args)


def test_fitnet_paper_reduction_only_for_resnets():
    config("fitnet", teacher="resnet26", method_args={"fitnet_reduction": "paper"})
    with pytest.raises(ConfigError, match="paper.*WRN"):
        config("fitnet", student="wrn16_2", teacher="wrn40_2", method_args={"fitnet_reduction": "paper"})


# --- end to end -----------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["fp32", "bf16"])  # the mini profile trains in bf16 autocast
def test_every_method_finishes_a_study(tmp_path, precision):
    params = Params(dataset="synthetic", students=["resnet8"], teachers={"resnet8": "resnet14"},
                    methods=list(METHODS), seeds=[0], epochs=1, teacher_epochs=1, batch_size=32,
                    train_per_class=10, store=str(tmp_path), device="cpu", precision=precision)
    df = Study(params).run(progress=False, allow_emulated_bf16=True)  # bf16 is emulated on some CPUs
    assert sorted(df[df.role == "student"].method) == sorted(METHODS)
    records = {r["config"]["method"]: r for r in Store(tmp_path).records() if r["config"]["student"] == "resnet8"}
    assert sorted(records) == sorted(METHODS) and all(r["status"] == "done" for r in records.values())
    assert all(r["config"]["precision"] == precision for r in records.values())
    for name in ("one", "dml"):
        accs = records[name]["final_accs"]
        assert records[name]["final_acc"] == max(v for k, v in accs.items() if k != "ensemble")


# --- ownership ------------------------------------------------------------------------------------


def test_a_method_owns_its_random_stream_seeded_from_the_run_seed():
    cfg = config("bss", seed=3)
    m = METHODS["bss"](cfg)
    assert m.generator.initial_seed() == cfg.seed_for("method") != config("bss", seed=4).seed_for("method")
    assert m.to("cpu").generator.initial_seed() == cfg.seed_for("method")


def test_methods_do_not_import_the_config_that_builds_on_them():
    import subprocess
    import sys

    code = "import sys, kdnb.methods; assert 'kdnb.config' not in sys.modules, 'cycle'"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
