"""The summaries and paired differences behind the pages: hand-made stores whose answer is known."""

import math

import pandas as pd
import pytest

from kdnb.report import analysis
from kdnb.report.analysis import paired_interval


def _runs(accs: dict[tuple, list[float]], dataset: str = "cifar10") -> pd.DataFrame:
    """Finished student runs: {(method, student, noise, imbalance): [acc of seed 0, seed 1, ...]}."""
    rows = [dict(run_id=f"{dataset}-{m}-{s}-{n}-{g}-{seed}", role="student", status="done", method=m, student=s,
                 dataset=dataset, noise=n, imbalance=math.nan if g is None else g, seed=seed, final_acc=a,
                 wall_s=60.0)
            for (m, s, n, g), values in accs.items() for seed, a in enumerate(values)]
    return pd.DataFrame(rows)


def test_paired_interval_is_the_t_interval_of_the_differences():
    iv = paired_interval([1.0, 3.0])
    assert iv["mean"] == 2.0 and iv["n"] == 2
    half = 12.706 * math.sqrt(2.0) / math.sqrt(2)  # t(1) · sd / √n, sd of (1, 3) = √2
    assert iv["lo"] == pytest.approx(2.0 - half) and iv["hi"] == pytest.approx(2.0 + half)
    assert math.isnan(paired_interval([1.0])["lo"])


def test_two_data_sets_of_one_student_and_seed_are_never_averaged_or_paired():
    # WRN-16-2 is a student of Table III and of Table IV: +0.5 on CIFAR-10, −2.0 on CIFAR-100, both seeds. Grouped
    # by student alone, the baseline of one data set would pair with the method of the other, and the two gains
    # would average to −0.75.
    c10 = _runs({("baseline", "wrn16_2", 0.0, None): [90.0, 91.0], ("hinton", "wrn16_2", 0.0, None): [90.5, 91.5]})
    c100 = _runs({("baseline", "wrn16_2", 0.0, None): [70.0, 72.0], ("hinton", "wrn16_2", 0.0, None): [68.0, 70.0]},
                 dataset="cifar100")
    runs = pd.concat([c10, c100], ignore_index=True)
    d = analysis.paired_differences(runs, by=["student"]).set_index("dataset")
    assert len(d) == 2 and d.loc["cifar10", "mean"] == pytest.approx(0.5) and d.loc["cifar100", "mean"] == \
        pytest.approx(-2.0)
    assert d.loc["cifar10", "n"] == d.loc["cifar100", "n"] == 2
    s = analysis.summarize(runs, by=["student"]).set_index(["dataset", "method"])["mean"]
    assert s[("cifar10", "hinton")] == pytest.approx(91.0) and s[("cifar100", "hinton")] == pytest.approx(69.0)


def test_paired_between_pairs_only_the_shared_seeds():
    a = _runs({("baseline", "resnet8", 0.0, None): [60.0, 61.0, 70.0]})
    b = _runs({("baseline", "resnet8", 0.0, None): [54.0, 55.5]})
    d = analysis.paired_between(a, b)
    assert d["seeds"] == [0, 1] and d["n"] == 2 and d["mean"] == pytest.approx(5.75)
    assert d["a"] == pytest.approx(60.5) and d["b"] == pytest.approx(54.75)  # the means of the pair: its seeds
    alone = analysis.paired_between(a, b.iloc[:0])  # nothing pairs yet: each side's mean over its own seeds
    assert alone["n"] == 0 and alone["a"] == pytest.approx(191 / 3) and pd.isna(alone["b"])


def test_noise_fit_tells_a_baseline_that_fits_wrong_labels_from_one_that_does_not():
    """σ = 0.4 on 10 classes leaves 64 % of the labels right: a training accuracy above that can only come from
    fitting wrong labels. The clean partner is the σ = 0 baseline of the same seeds."""
    runs = _runs({("baseline", "resnet8", 0.0, None): [76.0, 78.0], ("baseline", "resnet8", 0.4, None): [65.0, 66.0],
                  ("baseline", "wrn16_2", 0.4, None): [60.0], ("hinton", "resnet8", 0.4, None): [70.0, 70.0]})
    # rows: the clean baselines (seeds 0, 1), the noisy ResNet-8 baselines (0, 1), the WRN baseline, Hinton (0, 1)
    runs["best_acc"] = runs["final_acc"] + [0.0, 0.0, 0.2, 0.4, 5.0, 0.0, 0.0]
    runs["history"] = [[{"epoch": 1, "train_acc": None}, {"epoch": 2, "train_acc": t}] if t else []
                       for t in (None, None, 48.0, 50.0, 90.0, None, None)]
    fit = analysis.noise_fit(runs).set_index("student")
    assert list(fit["noise"]) == [0.4, 0.4] and fit.loc["resnet8", "right"] == pytest.approx(64.0)
    r8, wrn = fit.loc["resnet8"], fit.loc["wrn16_2"]
    assert r8["seeds"] == [0, 1] and r8["train_acc"] == pytest.approx(49.0) and not r8["fits_wrong"]
    assert r8["best_minus_final"] == pytest.approx(0.3) and r8["acc"] == pytest.approx(65.5)
    assert r8["clean_acc"] == pytest.approx(77.0)
    assert wrn["fits_wrong"] and wrn["best_minus_final"] == pytest.approx(5.0) and math.isnan(wrn["clean_acc"])
    assert analysis.right_label_share(0.6, 100) == pytest.approx(40.6)
