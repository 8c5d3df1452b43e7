"""The claims of "Does it reproduce?": verdicts computed from small hand-made stores whose answer is known."""

import math

import pandas as pd
import pytest

from kdnb.report import analysis
from kdnb.report.analysis import ALL, CONDITION, claim_verdict, claims_table, paired_interval, transfer_claims


def _runs(accs: dict[tuple, list[float]]) -> pd.DataFrame:
    """Finished student runs: {(method, student, noise, imbalance): [acc of seed 0, seed 1, ...]}."""
    rows = [dict(run_id=f"{m}-{s}-{n}-{g}-{seed}", role="student", status="done", method=m, student=s,
                 dataset="cifar10", noise=n, imbalance=math.nan if g is None else g, seed=seed, final_acc=a,
                 wall_s=60.0)
            for (m, s, n, g), values in accs.items() for seed, a in enumerate(values)]
    return pd.DataFrame(rows)


def _claim(terms, expect):
    return dict(id="x", section="IV-A", claim="c", words="w", terms=tuple(terms), expect=expect)


GAIN = [(1.0, ("hinton",), (ALL, 0.0, None)), (-1.0, ("baseline",), (ALL, 0.0, None))]


def test_paired_interval_is_the_t_interval_of_the_differences():
    iv = paired_interval([1.0, 3.0])
    assert iv["mean"] == 2.0 and iv["n"] == 2
    half = 12.706 * math.sqrt(2.0) / math.sqrt(2)  # t(1) · sd / √n, sd of (1, 3) = √2
    assert iv["lo"] == pytest.approx(2.0 - half) and iv["hi"] == pytest.approx(2.0 + half)
    assert math.isnan(paired_interval([1.0])["lo"])


@pytest.mark.parametrize("expect, lo, hi, n, verdict", [
    (">", 0.5, 2.0, 2, "agrees"), (">", -2.0, -0.5, 2, "disagrees"), (">", -1.0, 2.0, 2, "inconclusive"),
    ("<", -2.0, -0.5, 3, "agrees"), ("<", 0.1, 0.5, 3, "disagrees"), ("<", -0.1, 0.5, 3, "inconclusive"),
    ("≈", -0.5, 0.9, 2, "agrees"), ("≈", 1.2, 3.0, 2, "disagrees"), ("≈", -3.0, -1.1, 2, "disagrees"),
    ("≈", 0.5, 1.5, 2, "inconclusive"), (">", 1.0, 2.0, 1, "not testable"), (">", math.nan, math.nan, 2,
                                                                              "not testable")])
def test_claim_verdict_rule(expect, lo, hi, n, verdict):
    assert claim_verdict(expect, lo, hi, n) == verdict


def test_claim_verdict_names_a_bad_expectation():
    with pytest.raises(ValueError, match="'>='; valid: >, <, ≈"):
        claim_verdict(">=", 0, 1, 2)


def test_each_verdict_kind_from_a_store():
    # paired gains per seed: seed 0 +2.0, seed 1 +2.2 (tight: agrees); a wide one (inconclusive); a negative
    runs = _runs({("baseline", "resnet8", 0.0, None): [50.0, 52.0],
                  ("hinton", "resnet8", 0.0, None): [52.0, 54.2],
                  ("at", "resnet8", 0.0, None): [45.0, 47.2],
                  ("sp", "resnet8", 0.0, None): [49.0, 56.0]})
    claims = [_claim(GAIN, ">"),
              _claim([(1.0, ("at",), (ALL, 0.0, None)), (-1.0, ("baseline",), (ALL, 0.0, None))], "<"),
              _claim([(1.0, ("at",), (ALL, 0.0, None)), (-1.0, ("baseline",), (ALL, 0.0, None))], ">"),
              _claim([(1.0, ("sp",), (ALL, 0.0, None)), (-1.0, ("baseline",), (ALL, 0.0, None))], ">"),
              _claim([(1.0, ("one",), (ALL, 0.0, None)), (-1.0, ("baseline",), (ALL, 0.0, None))], ">"),
              _claim([(1.0, ("hinton",), ("wrn10_2", 0.0, None)), (-1.0, ("baseline",), ("wrn10_2", 0.0, None))],
                     ">")]
    t = claims_table(runs, claims)
    assert list(t["verdict"]) == ["agrees", "agrees", "disagrees", "inconclusive", "not testable", "not testable"]
    assert t.loc[0, "kdnb"] == pytest.approx(2.1) and t.loc[0, "n"] == 2 and t.loc[0, "kdnb_on"] == "ResNet-8"
    assert t.loc[0, "paper"] == pytest.approx(88.80 - 87.64)  # Table III, ResNet-8: same architecture
    assert "ONE" in t.loc[4, "missing"] and "WRN-10-2" in t.loc[5, "missing"]
    assert t.loc[5, "paper"] == pytest.approx(91.72 - 90.62)  # the paper's number is shown even when untestable


def test_a_trend_compares_gains_within_each_architecture():
    # kdnb's condition student is ResNet-8; the paper's is WRN-16-2 (Table V): each side's trend is its own
    cell, clean = (CONDITION, 0.4, None), (CONDITION, 0.0, None)
    trend = [(1.0, ("hinton",), cell), (-1.0, ("baseline",), cell), (-1.0, ("hinton",), clean),
             (1.0, ("baseline",), clean)]
    runs = _runs({("baseline", "resnet8", 0.0, None): [50.0, 51.0], ("hinton", "resnet8", 0.0, None): [51.0, 52.0],
                  ("baseline", "resnet8", 0.4, None): [40.0, 42.0], ("hinton", "resnet8", 0.4, None): [45.0, 47.1]})
    t = claims_table(runs, [_claim(trend, ">")])
    assert t.loc[0, "kdnb"] == pytest.approx(4.05)  # (5 − 1, 5.1 − 1) per seed
    assert t.loc[0, "paper"] == pytest.approx((76.32 - 64.47) - (94.28 - 93.95))
    assert (t.loc[0, "kdnb_on"], t.loc[0, "paper_on"], t.loc[0, "verdict"]) == ("ResNet-8", "WRN-16-2", "agrees")
    # the paper's student is preferred when kdnb has it, and a missing noise rate is not testable
    t2 = claims_table(runs, [_claim([(1.0, ("hinton",), (CONDITION, 0.6, None)),
                                     (-1.0, ("baseline",), (CONDITION, 0.6, None))], ">")])
    assert t2.loc[0, "verdict"] == "not testable" and "σ = 0.6" in t2.loc[0, "missing"]


def test_all_students_average_over_the_models_both_have_and_a_missing_seed_drops_its_pair():
    runs = _runs({("baseline", "resnet8", 0.0, None): [50.0, 50.0, 50.0],
                  ("hinton", "resnet8", 0.0, None): [51.0, 51.0, 51.0],
                  ("baseline", "wrn16_2", 0.0, None): [60.0, 60.0, 60.0],
                  ("hinton", "wrn16_2", 0.0, None): [63.0, 63.0],  # seed 2 missing
                  ("baseline", "tiny_net", 0.0, None): [10.0, 10.0, 10.0],  # not a paper model: left out
                  ("hinton", "tiny_net", 0.0, None): [90.0, 90.0, 90.0]})
    t = claims_table(runs, [_claim(GAIN, ">")])
    assert t.loc[0, "kdnb"] == pytest.approx(2.0) and t.loc[0, "n"] == 2
    assert t.loc[0, "kdnb_on"] == t.loc[0, "paper_on"] == "ResNet-8, WRN-16-2"
    assert t.loc[0, "paper"] == pytest.approx(((88.80 - 87.64) + (94.28 - 93.95)) / 2)
    assert t.loc[0, "verdict"] == "agrees"  # no spread between seeds: an interval of width 0 above 0


def test_the_listed_claims_cover_the_paper_and_every_one_has_a_verdict():
    assert len(analysis.CLAIMS) + len(transfer_claims(None)) >= 12
    assert {c["section"] for c in analysis.CLAIMS} >= {"IV-A1", "IV-A3", "IV-B", "IV-C"}
    assert len({c["id"] for c in analysis.CLAIMS}) == len(analysis.CLAIMS)
    t = claims_table(_runs({}))
    assert (t["verdict"] == "not testable").all() and t["paper"].notna().all()
    counts = analysis.verdict_counts(t, transfer_claims(None))
    assert counts["not testable"] == len(t) + 6 and sum(counts.values()) == len(t) + 6


def test_transfer_claims_read_the_observations():
    theirs = analysis.paper.transfer()
    same = transfer_claims(theirs)  # the paper's own matrix: every observation that holds there agrees
    holds = analysis.transfer_observations(theirs)["holds"]
    assert list(same["verdict"]) == ["agrees" if h else "disagrees" for h in holds]
    flipped = theirs.copy()
    flipped["teacher"] = -flipped["teacher"]  # AT now lowest from the teacher
    assert transfer_claims(flipped).loc[0, "verdict"] == "disagrees"


def test_paired_between_pairs_only_the_shared_seeds():
    a = _runs({("baseline", "resnet8", 0.0, None): [60.0, 61.0, 70.0]})
    b = _runs({("baseline", "resnet8", 0.0, None): [54.0, 55.5]})
    d = analysis.paired_between(a, b)
    assert d["seeds"] == [0, 1] and d["n"] == 2 and d["mean"] == pytest.approx(5.75)
    assert d["a"] == pytest.approx(191 / 3) and d["b"] == pytest.approx(54.75)
    assert analysis.paired_between(a, b.iloc[:0])["n"] == 0
