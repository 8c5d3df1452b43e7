"""The paper's findings: every encoding checked on the paper's own tables, the verdict rule, the pooled seed
variance, the transfer intervals and the choice of evidence, on stores whose answer is known."""

import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from kdnb.report import claims, figures, paper, tables
from kdnb.report.analysis import paired_interval, t975
from kdnb.report.claims import C10, C100, cell, diff, evaluate, gain, verdict
from kdnb.study import Params

PAPER = claims.paper_evidence()
BY_ID = {f.id: f for f in claims.FINDINGS}

# The verdict of every finding on the paper's own numbers (Tables III-VI: mean ± std over 5 seeds, an unpaired
# interval with Welch's df; Fig. 1: a binomial interval over PAPER_TRANSFER_N images). Worked by hand for a
# representative set (95 % t-intervals; se = √(Σ std² / 5)):
# - A1-AT8: AT − baseline on ResNet-8 = 86.07 − 87.64 = −1.57, se = √((0.32² + 0.25²)/5) = 0.182, df 7.6 → t(7)
#   = 2.365: [−2.00, −1.14] below zero: agrees.
# - A1-BSS-hi: BSS on WRN-10-2 (92.32 ± 0.21) minus the runner-up, FSP (91.70 ± 0.26): +0.62, se 0.149, df 7 →
#   [+0.27, +0.97]: agrees (every other method is further below).
# - A1-ONE-hi: ONE − BSS on ResNet-8 = 89.54 − 89.18 = +0.36, se √((0.17² + 0.43²)/5) = 0.207, df 5 → t 2.571:
#   [−0.17, +0.89] spans zero: too noisy.
# - A1-H: Hinton − baseline on ResNet-26 = 93.58 − 93.32 = +0.26, se √((0.10² + 0.37²)/5) = 0.171, df 4 →
#   [−0.22, +0.74]: the lowest-resolved cell of eight leaves "consistently" unshown: too noisy.
# - A3-1: ONE − baseline on CIFAR-100 WRN-10-2 = 57.38 − 67.99 = −10.61 (se 0.98): one cell wholly below zero
#   where "consistently" needs all 176 above: disagrees.
# - A3-3b: mean(SP, RKD-A) − RKD-D on ResNet-8 = (86.62 + 87.32)/2 − 87.48 = −0.51, se √((0.26² + 0.24²)/20 +
#   0.21²/5) = 0.123 → about [−0.79, −0.23], wholly below zero: disagrees (also −0.71 on CIFAR-100 WRN-10-2).
# - B-ONE-hi: ONE − baseline at σ = 0.6 = 40.49 − 47.84 = −7.35, se 0.95 → [−9.7, −5.0]: agrees.
# - C-HD: Hinton − AT at γ = 0.6 = 80.08 − 80.51 = −0.43, se √((0.25² + 0.23²)/5) = 0.152, df 7 → [−0.79, −0.07]:
#   Hinton does not rank right after RKD-A/DA: disagrees.
# - C-all: SP − baseline at γ = 2 = 83.08 − 83.33 = −0.25, se 0.168 → [−0.65, +0.15]; BSS − baseline at γ = 0.2
#   = +0.02: "all the other KD methods improve" is not shown: too noisy.
# - D-3b: teacher column, RKD-D − baseline = 75.69 − 76.51 = −0.82, se √(2 · 0.76 · 0.24 · 100² / 8000) = 0.68
#   → [−2.1, +0.5]: too noisy (RKD-A and RKD-DA sit below the baseline too).
# - D-7: as targets, BSS − SP under the other sources' examples = +4.3 (BSS is the least robust): disagrees.
PAPER_VERDICTS = {
    "A-0": "agrees", "A1-H": "too noisy", "A1-BSS-low": "agrees", "A1-BSS-hi": "agrees", "A1-BSS-cap": "agrees",
    "A1-FF-sim": "agrees", "A1-FF-gain": "too noisy", "A1-FF-occ": "agrees", "A1-AT-H": "agrees",
    "A1-AT8": "agrees", "A1-AT-W": "agrees", "A1-AT-top": "too noisy", "A1-REL-top": "too noisy",
    "A1-RKDDA": "too noisy", "A1-REL-gap": "too noisy", "A1-R8": "too noisy", "A1-ON": "too noisy",
    "A1-ONE-R": "too noisy", "A1-ONE-hi": "too noisy", "A1-ONE-W": "too noisy", "A1-DML": "too noisy",
    "A2-RESP": "agrees", "A2-H": "agrees", "A2-BSS": "agrees", "A2-FF": "agrees", "A2-AT": "too noisy",
    "A2-REL": "too noisy", "A2-SP": "too noisy", "A2-ONE": "too noisy", "A2-DML": "too noisy",
    "A3-1": "disagrees", "A3-1b": "too noisy", "A3-1c": "too noisy", "A3-2": "too noisy", "A3-3a": "disagrees",
    "A3-3b": "disagrees", "A3-4a": "agrees", "A3-4b": "agrees", "A3-5": "too noisy", "A3-6": "agrees",
    "B-maj": "too noisy", "B-H": "agrees", "B-H-hi": "too noisy", "B-FF": "agrees", "B-ONE-lo": "agrees",
    "B-ONE-hi": "agrees", "B-DML": "agrees", "B-DML-H": "agrees", "B-soft": "agrees", "B-SP": "agrees",
    "B-KD": "agrees", "C-all": "too noisy", "C-exc": "too noisy", "C-RKD": "too noisy", "C-HD": "disagrees",
    "C-KD": "too noisy", "D-1": "agrees", "D-2": "agrees", "D-3": "agrees", "D-3b": "too noisy", "D-4": "agrees",
    "D-5": "agrees", "D-6": "agrees", "D-7": "disagrees",
}


def test_every_finding_of_section_iv_is_a_row_with_the_papers_words():
    ids = [f.id for f in claims.FINDINGS]
    assert len(ids) >= 40 and len(set(ids)) == len(ids) and set(ids) == set(paper.FINDINGS) == set(PAPER_VERDICTS)
    assert {f.section for f in claims.FINDINGS} == {"IV-A", "IV-A1", "IV-A2", "IV-A3", "IV-B", "IV-C", "IV-D"}
    for f in claims.FINDINGS:
        assert f.words == paper.FINDINGS[f.id][1] and f.claim and f.test
        assert all(lf.expect in (">", "<", "≈") for lf in claims.leaves(f.tree))
        assert all(lf.reference for lf in claims.leaves(f.tree) if lf.expect == "≈")  # a margin to scale to
    a2 = [f for f in claims.FINDINGS if f.section == "IV-A2"]  # CIFAR-100 rows read only Table IV cells
    assert len(a2) >= 8 and all(k[0] == C100 for f in a2 for lf in claims.leaves(f.tree) for b in lf.blocks
                                for k, _ in b)


@pytest.mark.parametrize("fid", sorted(PAPER_VERDICTS))
def test_each_encoding_on_the_papers_own_numbers(fid):
    assert verdict(evaluate(BY_ID[fid].tree, PAPER)) == PAPER_VERDICTS[fid]


def test_the_audits_contradictions_are_not_supported_by_the_papers_tables():
    table = claims.claims_table([]).set_index("id")
    for fid in ("A3-3b", "C-HD", "C-all", "D-3b", "A3-1", "D-7"):
        assert table.loc[fid, "paper_verdict"] != "agrees", fid
        assert "do not show this" in claims.PAPER_TEXT[table.loc[fid, "paper_verdict"]]
    r8 = evaluate(diff(("sp", "rkd_a"), "rkd_d", cell("resnet8")), PAPER)  # angular − distance on ResNet-8
    assert r8["leaf"]["est"] == pytest.approx(-0.51) and r8["H"] < 0


def test_the_unpaired_interval_of_a_paper_contrast_by_hand():
    r = evaluate(gain("at", cell("resnet8"), "<"), PAPER)["leaf"]
    se = math.sqrt((0.32**2 + 0.25**2) / 5)
    df = se**4 / ((0.32**2 / 5) ** 2 / 4 + (0.25**2 / 5) ** 2 / 4)  # Welch: 7.56, read as 7 (t = 2.365)
    assert int(df) == 7 and r["se"] == pytest.approx(se) and r["df"] == pytest.approx(df)
    assert r["est"] == pytest.approx(-1.57) and r["lo"] == pytest.approx(-1.57 - 2.365 * se)


def test_quotas_say_what_all_highest_top_and_majority_mean():
    assert [claims._quota(q, 11) for q in ("all", "any", "majority", "top-third", "top-half")] == [11, 1, 6, 8, 6]
    assert claims._quota("top-third", 2) == 2  # beating both others of three is the top third


def _store(values: dict[tuple, list[float]], dataset: str = C10) -> pd.DataFrame:
    """Finished student runs {(method, student, noise, imbalance): [acc per seed]}."""
    return pd.DataFrame([dict(run_id=f"{dataset}-{m}-{s}-{n}-{g}-{k}", role="student", status="done", method=m,
                              student=s, dataset=dataset, noise=n, imbalance=math.nan if g is None else g, seed=k,
                              final_acc=a) for (m, s, n, g), accs in values.items() for k, a in enumerate(accs)])


def test_the_pooled_interval_by_hand():
    # one cell, 3 methods × 3 seeds; the two-way residuals y − row mean − column mean + grand mean are
    # (0 0 0 / 0 1 −1 / 0 −1 1): SS = 4 over (3 − 1)(3 − 1) = 4 df, so the pooled variance is 1
    runs = _store({("baseline", "resnet8", 0.0, None): [1.0, 2.0, 3.0],
                   ("hinton", "resnet8", 0.0, None): [2.0, 4.0, 3.0],
                   ("at", "resnet8", 0.0, None): [5.0, 5.0, 8.0]})
    var, df, means = claims.pooled_variance(runs)
    assert var == pytest.approx(1.0) and df == 4 and set(means["n"]) == {3}
    ev, sd, _ = claims.kdnb_evidence("x", runs, None)
    r = evaluate(gain("hinton", cell("resnet8")), ev)["leaf"]  # mean 3 − 2 = 1, se √(1 · (1/3 + 1/3)), t(4) = 2.776
    assert r["est"] == pytest.approx(1.0) and r["se"] == pytest.approx(math.sqrt(2 / 3))
    assert (r["lo"], r["hi"]) == pytest.approx((1 - 2.776 * math.sqrt(2 / 3), 1 + 2.776 * math.sqrt(2 / 3)))


def test_pooling_resolves_what_two_seeds_of_one_cell_cannot():
    # Hinton gains 1.7 and 2.3 on the two seeds: alone, t(1) = 12.7 spans zero; the other ten methods give the
    # residual 10 more df and a small pooled spread, so the pooled interval lies above zero
    accs = {("baseline", "resnet8", 0.0, None): [50.0, 51.0], ("hinton", "resnet8", 0.0, None): [51.7, 53.3]}
    for i, m in enumerate(claims.KD[1:]):
        accs[(m, "resnet8", 0.0, None)] = [45.0 + i, 46.0 + i + (0.2 if i % 2 else -0.2)]
    runs = _store(accs)
    alone = paired_interval([1.7, 2.3])
    assert alone["lo"] < 0 < alone["hi"]
    ev, sd, df = claims.kdnb_evidence("x", runs, None)
    assert df == 11 and sd < 0.3
    assert verdict(evaluate(BY_ID["A1-H"].tree, ev)) == "agrees"  # read on ResNet-8, the cell the store holds


def test_findings_group_by_data_set():
    # WRN-16-2 is in Tables III and IV: +0.5 on CIFAR-10 and −2.0 on CIFAR-100 must stay apart (not −0.75)
    c10 = _store({("baseline", "wrn16_2", 0.0, None): [90.0, 91.0], ("hinton", "wrn16_2", 0.0, None): [90.5, 91.5]})
    c100 = _store({("baseline", "wrn16_2", 0.0, None): [70.0, 72.0], ("hinton", "wrn16_2", 0.0, None): [68.0, 70.0]},
                  C100)
    ev, _, _ = claims.kdnb_evidence("x", pd.concat([c10, c100], ignore_index=True), None)
    assert evaluate(gain("hinton", cell("wrn16_2")), ev)["leaf"]["est"] == pytest.approx(0.5)
    assert evaluate(gain("hinton", cell("wrn16_2", C100)), ev)["leaf"]["est"] == pytest.approx(-2.0)
    a1 = evaluate(BY_ID["A1-H"].tree, ev)
    a2 = evaluate(BY_ID["A2-H"].tree, ev)
    assert a1["cells"] and all(k[0] == C10 for k in a1["cells"]) and all(k[0] == C100 for k in a2["cells"])


def test_only_complete_seeds_of_a_section_count():
    grid = Params(profile="x", section="generalization", students=["resnet8"], methods=["baseline", "hinton", "at"],
                  seeds=[0, 1, 2])
    runs = _store({("baseline", "resnet8", 0.0, None): [50.0, 51.0, 52.0],
                   ("hinton", "resnet8", 0.0, None): [52.0, 53.0, 54.0],
                   ("at", "resnet8", 0.0, None): [49.0, 50.0]})  # seed 2 of AT has not finished
    used = claims.complete_runs([grid], lambda g: runs)
    assert sorted(set(used["seed"])) == [0, 1] and len(used) == 6
    assert claims.complete_runs([grid], lambda g: runs.iloc[:0]).empty


def test_transfer_cells_get_a_binomial_interval_over_the_images():
    mat = paper.transfer()
    cells = claims._transfer_cells(mat, lambda t, s: 400.0)
    p = mat.loc["at", "teacher"]
    assert cells[claims.t_cell("at", "teacher")] == (p, pytest.approx(p * (100 - p) / 400), math.inf)
    ev = claims.Evidence("x", cells)
    r = evaluate(claims.t_diff("at", "bss"), ev)["leaf"]
    se = math.sqrt((p * (100 - p) + mat.loc["bss", "teacher"] * (100 - mat.loc["bss", "teacher"])) / 400)
    assert r["se"] == pytest.approx(se) and r["lo"] == pytest.approx(r["est"] - 1.959964 * se)


def _write_profile(root: Path, name: str, seeds: list[int]) -> None:
    d = root / "params" / name
    d.mkdir(parents=True)
    common = dict(profile=name, store=f"results/{name}", students=["resnet8"], methods=["baseline", "hinton"],
                  seeds=seeds, epochs=2)
    (d / "generalization.yaml").write_text(yaml.safe_dump({**common, "section": "generalization"}))


def test_a_profile_with_no_store_yet_is_read_as_no_data(tmp_path):
    _write_profile(tmp_path, "subset60", [0, 1, 2])
    regs = claims.regimes(tmp_path)
    assert [r.profile for r in regs] == ["subset60"] and regs[0].used.empty and regs[0].df == 0
    t = claims.claims_table(regs)
    assert (t["verdict"] == "no data").all() and (t["v_subset60"] == "no data").all()
    assert "no complete seed" in claims.resolution_text(regs)


def _regime(runs: pd.DataFrame, profile: str = "mini") -> claims.Regime:
    grid = Params(profile=profile, section="label_noise", students=["resnet8"], teachers={"resnet8": "resnet26"},
                  methods=list(paper.METHODS), seeds=[0, 1], epochs=8, train_per_class=1000, noise=[0.0, 0.4])
    ev, sd, df = claims.kdnb_evidence(profile, runs, "resnet8")
    return claims.Regime(profile, [grid], runs, runs, ev, sd, df, None)


def test_a_finding_names_the_images_of_its_own_section():
    """subset60's imbalance section trains on the paper's class sizes, its other sections on 1,000 per class."""
    clean = _store({(m, "resnet8", 0.0, None): [50.0 + i, 51.0 + i] for i, m in enumerate(paper.METHODS)})
    reg = _regime(clean, "subset60")
    imb = Params(profile="subset60", section="imbalance", students=["resnet8"], teachers={"resnet8": "resnet26"},
                 epochs=60, imbalance=[1.0], imbalance_n_max=5000, imbalance_n_min=250)
    reg.grids.append(imb)
    assert "class sizes 5,000 → 250" in reg.describe(section="imbalance")
    assert "1,000 training images per class" in reg.describe(section="label_noise")
    assert reg.describe(section="transferability") == reg.describe()  # no such grid: the first
    noisy = _store({(m, "resnet8", 0.4, None): [40.0 + i] for i, m in enumerate(paper.METHODS)})
    t = claims.claims_table([_regime(pd.concat([clean, noisy], ignore_index=True), "subset60")]).set_index("id")
    assert t.loc["B-H", "on"].endswith("fp32, seed 0") and t.loc["A1-AT8", "on"].endswith("seeds 0, 1")


def test_the_most_faithful_store_that_holds_the_cells_answers():
    clean = _store({(m, "resnet8", 0.0, None): [50.0 + i, 51.0 + i + 0.1 * (i % 3)] for i, m in
                    enumerate(paper.METHODS)})
    noisy = _store({(m, "resnet8", 0.4, None): [40.0 + i, 41.5 + i - 0.1 * (i % 2)] for i, m in
                    enumerate(paper.METHODS)})
    faithful, reduced = _regime(clean, "subset60"), _regime(pd.concat([clean, noisy], ignore_index=True))
    t = claims.claims_table([faithful, reduced]).set_index("id")
    assert t.loc["A1-AT8", "source"] == "subset60" and t.loc["B-H", "source"] == "mini"  # σ = 0.4 only in mini
    assert t.loc["A1-AT8", "v_mini"] == t.loc["A1-AT8", "verdict"] == "disagrees"  # AT is above the baseline here
    assert "ResNet-8 ← ResNet-26 (paper: ResNet-8 ← ResNet-26)" in t.loc["A1-AT8", "on"]
    assert "ResNet-8 ← ResNet-26 (paper: WRN-16-2 ← WRN-40-2); 8 epochs, 1,000 training images per class" in \
        t.loc["B-H", "on"]
    assert t.loc["A2-H", "verdict"] == "no data"
    html = tables.style_claims(t.reset_index()).to_html()
    assert paper.FINDINGS["A1-AT8"][1] in html and "not testable: no data" in html and "mini: disagrees" in html
    fig = figures.plot_claims(t.reset_index())
    labels = [x.get_text() for ax in fig.axes for x in ax.get_yticklabels()]
    assert any(lbl.startswith("A1-AT8 AT falls below") for lbl in labels)
    assert len(fig.axes) == 3  # the paper's tables, subset60, mini: one panel each
    assert figures.plot_claims(t.reset_index().assign(verdict="no data")) is None


def test_the_answer_and_the_coverage_state_numbers():
    runs = _store({(m, "resnet8", 0.0, None): [50.0 + i, 51.0 + i + 0.1 * (i % 3)] for i, m in
                   enumerate(paper.METHODS)})
    reg = _regime(runs)
    t = claims.claims_table([reg])
    prot = pd.DataFrame([dict(dataset=C10, student="resnet8", method="baseline", seed=s, acc=a, paper_mean=87.64,
                              paper_std=0.25, diff=a - 87.64, within=abs(a - 87.64) <= 0.5)
                         for s, a in ((0, 87.84), (1, 87.55))])
    text = claims.answer(t, [reg], prot)
    assert "2 ResNet-8 baselines (CIFAR-10) 87.84 and 87.55 vs the paper's 87.64 ± 0.25: 2 of 2 within ±2 std" in text
    counts = claims.verdict_counts(t["verdict"])
    assert f"{counts['agrees']} agree, {counts['disagrees']} disagree" in text and len(text.splitlines()) == 3
    cov = claims.coverage([reg], t).set_index("experiment")
    assert cov.loc["Table III: CIFAR-10", "mini"].startswith("ResNet-8; 24 finished runs, 12 methods; 2 complete")
    assert cov.loc["Table IV: CIFAR-100", "findings read from"] == "none of 9"


def test_what_the_seeds_resolve_is_told_per_seed_count_of_each_cell():
    """A clean cell with 2 complete seeds and a γ = 1 cell with 1: each gets its own smallest resolved gain,
    t(df) × sd × √(2 / n) with the store's pooled sd and df."""
    runs = _store({("baseline", "resnet8", 0.0, None): [50.0, 51.5], ("hinton", "resnet8", 0.0, None): [53.0, 54.0],
                   ("at", "resnet8", 0.0, None): [49.0, 51.0], ("baseline", "resnet8", 0.0, 1.0): [40.0],
                   ("hinton", "resnet8", 0.0, 1.0): [44.0], ("at", "resnet8", 0.0, 1.0): [41.0]})
    var, df, _ = claims.pooled_variance(runs)
    reg = claims.Regime("subset60", [], runs, runs, claims.Evidence("x", {}), math.sqrt(var), df, None)
    text = claims.resolution_text([reg])
    q = t975(df)
    assert df == 2 and f"{q * math.sqrt(var) * math.sqrt(2 / 2):.2f} points with 2 seeds (ResNet-8 clean; " in text
    assert f"{q * math.sqrt(var) * math.sqrt(2):.2f} points with 1 seed (ResNet-8 γ = 1)." in text


def test_the_summary_says_which_stores_baselines_memorised_the_wrong_labels():
    runs = _store({("baseline", "resnet8", 0.0, None): [76.0], ("baseline", "resnet8", 0.4, None): [65.0]})
    runs["best_acc"] = runs["final_acc"] + [0.0, 0.3]
    runs["history"] = [[{"epoch": 60, "train_acc": 82.0}], [{"epoch": 60, "train_acc": 48.0}]]
    wrn = runs.assign(student="wrn16_2", history=[[{"train_acc": 99.0}], [{"train_acc": 95.0}]])
    regs = [claims.Regime(p, [], r, r, claims.Evidence("x", {}), 1.0, 1, None)
            for p, r in (("subset60", runs), ("paper", wrn))]
    text = claims.memorisation_text(regs)
    assert "- **subset60 (results/subset60)**, ResNet-8 at σ = 0.4: the baseline ends at 48.0 % training " \
           "accuracy on its noisy labels, below the 64.0 % of them that are right, and its final test accuracy " \
           "is 0.30 below its best epoch's: no sign that it memorised the wrong labels." in text
    assert "WRN-16-2 at σ = 0.4" in text and "it fits at least 31.0 % of the labels that are wrong" in text
    assert claims.memorisation_text(regs[:0]) == "" and claims.memorisation_text(
        [claims.Regime("mini", [], runs.iloc[:1], runs.iloc[:1], claims.Evidence("x", {}), 1.0, 1, None)]) == ""
