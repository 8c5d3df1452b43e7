"""The book's numbers, tables, figures, widgets and prose on synthetic frames (kdnb.report.analysis, kdnb.report.tables,
kdnb.report.figures, kdnb.report.widgets, kdnb.report.pages)."""

import math
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from kdnb.report import analysis, figures, pages, paper, tables, widgets  # noqa: E402
from kdnb.report import claims as claims_mod  # noqa: E402
from kdnb.study import Params  # noqa: E402


def _runs(cells: dict[tuple[str, str], list[float]], column: str = "student") -> pd.DataFrame:
    """One finished student run per (method, column value, accuracy)."""
    rows = []
    for (method, value), accs in cells.items():
        for seed, acc in enumerate(accs):
            rows.append({"run_id": f"{method}{value}{seed}", "role": "student", "status": "done", "method": method,
                         "student": value if column == "student" else "resnet8", "dataset": "cifar10",
                         "noise": value if column == "noise" else 0.0, "imbalance": None, "seed": seed,
                         "final_acc": acc, "best_acc": acc + 1, "epochs": 2, "wall_s": 1.0})
    return pd.DataFrame(rows)


RUNS = _runs({("baseline", "resnet8"): [80.0, 82.0], ("hinton", "resnet8"): [84.0, 86.0],
              ("at", "resnet8"): [79.0, 79.0], ("baseline", "resnet14"): [90.0, 91.0],
              ("hinton", "resnet14"): [91.0, 91.0]})


def test_summarize_mean_and_sample_std():
    s = analysis.summarize(RUNS).set_index(["student", "method"])
    assert s.loc[("resnet8", "baseline"), "mean"] == 81.0
    assert s.loc[("resnet8", "baseline"), "std"] == pytest.approx(math.sqrt(2.0))  # ddof = 1
    assert s.loc[("resnet8", "at"), "std"] == 0.0 and s.loc[("resnet8", "at"), "n"] == 2


def test_summarize_ignores_teachers_and_failed_runs():
    extra = pd.concat([RUNS, RUNS.iloc[:1].assign(run_id="t", role="teacher", final_acc=10.0),
                       RUNS.iloc[:1].assign(run_id="f", status="failed", final_acc=float("nan"))])
    pd.testing.assert_frame_equal(analysis.summarize(extra), analysis.summarize(RUNS))


def test_one_seed_has_no_std_and_shows_the_mean_only():
    s = analysis.summarize(RUNS[RUNS["seed"] == 0])
    assert s["std"].isna().all()
    text = tables.table_text(s, "student", columns=["resnet8"])
    assert text.loc["baseline", "resnet8"] == "80.00"


def test_table_text_mean_std_and_not_run():
    text = tables.table_text(analysis.summarize(RUNS), "student", columns=["resnet8", "resnet14", "wrn16_2"])
    assert list(text.index) == list(paper.METHODS)
    assert text.loc["baseline", "resnet8"] == "81.00 ± 1.41"
    assert text.loc["at", "resnet14"] == tables.NOT_RUN
    assert (text["wrn16_2"] == tables.NOT_RUN).all() and text.loc["dml", "resnet8"] == tables.NOT_RUN


def test_best_and_below_baseline_marks():
    means = analysis.wide(analysis.summarize(RUNS), "student")
    best, below = analysis.best_mask(means), analysis.below_mask(means)
    assert best.loc["hinton", "resnet8"] and not best.loc["baseline", "resnet8"]
    assert best.loc["hinton", "resnet14"] and best["resnet14"].sum() == 1
    assert below.loc["at", "resnet8"] and not below.loc["hinton", "resnet8"]
    assert not below.loc["baseline"].any() and not below.loc["dml"].any()  # not run is never below


def test_ties_are_all_bold():
    runs = _runs({("baseline", "resnet8"): [80.0], ("hinton", "resnet8"): [85.0], ("sp", "resnet8"): [85.0]})
    best = analysis.best_mask(analysis.wide(analysis.summarize(runs), "student"))
    assert best.loc[["hinton", "sp"], "resnet8"].all() and best["resnet8"].sum() == 2


def test_styled_table_marks_cells():
    s = analysis.summarize(RUNS)
    css = tables.table_css(s, "student", columns=["resnet8", "wrn16_2"], below_baseline=True)
    assert css.loc["hinton", "resnet8"] == tables.CSS_BEST
    assert css.loc["at", "resnet8"] == tables.CSS_BELOW
    assert css.loc["baseline", "resnet8"] == "" and css.loc["dml", "wrn16_2"] == tables.CSS_NOT_RUN
    no_blue = tables.table_css(s, "student", columns=["resnet8"], below_baseline=False)
    assert no_blue.loc["at", "resnet8"] == ""
    html = tables.style_table(s, "student", columns=["resnet8", "wrn16_2"], below_baseline=True).to_html()
    assert "ResNet-8" in html and "WRN-16-2" in html and "81.00 ± 1.41" in html and "not run" in html
    assert "font-weight: bold" in html and "#1f5fbf" in html


def test_no_table_sets_a_reduced_profile_against_the_papers_accuracies():
    # like for like only: gains beside gains, never kdnb − paper (the helpers for it are gone)
    assert not hasattr(tables, "side_by_side") and not hasattr(analysis, "difference")
    assert not hasattr(analysis, "transfer_difference")
    runs = _runs({("baseline", "resnet8"): [50.0, 52.0], ("hinton", "resnet8"): [52.0, 54.2]})
    blocks = pages.comparison(runs, analysis.paper_summary(paper.generalization("cifar10")), "student", ["resnet8"],
                              "kdnb", "III")
    html = "".join(b.to_html() if hasattr(b, "to_html") else str(b.data) for b in blocks)
    assert "Δ" not in html and "kdnb − paper" not in html and "+2.10 [+0.8, +3.4]" in html


def test_gains_and_describe():
    ours = analysis.summarize(RUNS)
    g = analysis.gains(ours, "student").set_index(["student", "method"])["gain"]
    assert g[("resnet8", "hinton")] == pytest.approx(4.0) and g[("resnet8", "at")] == pytest.approx(-2.0)
    text = pages.describe(ours, analysis.paper_summary(paper.generalization("cifar10")), "student",
                          analysis.paired_differences(RUNS))
    assert "best here Hinton (85.00 %)" in text and "in the paper ONE." in text and "89.54" not in text
    assert "Above the baseline here: 1 of 2 methods (Hinton)" in text
    assert "agrees with the paper for 2 of 2 methods" in text  # paper, ResNet-8: Hinton above, AT below
    # Hinton's paired gains are 4 and 4: interval [4, 4], resolved; with seeds 82 and 88 they are 2 and 6, and
    # the interval 4 ± 12.71 * 2.83 / sqrt(2) spans zero
    assert "interval above zero: 1 (Hinton)" in text
    wide_runs = _runs({("baseline", "resnet8"): [80.0, 82.0], ("hinton", "resnet8"): [82.0, 88.0]})
    summary, none = analysis.summarize(wide_runs), RUNS.iloc[:0]
    assert "interval above zero: 0 (none)" in pages.describe(summary, none, "student",
                                                             analysis.paired_differences(wide_runs))
    assert "interval above zero" not in pages.describe(summary, none, "student")  # no pairs given
    assert pages.describe(ours.iloc[:0], ours.iloc[:0], "student") == "No finished runs to describe."


def test_teacher_gap_names_teacher_baseline_and_best_taught_student():
    runs = _runs({("baseline", 0.0): [60.0, 62.0], ("hinton", 0.0): [64.0, 66.0], ("dml", 0.0): [70.0, 70.0],
                  ("baseline", 0.4): [50.0, 50.0], ("hinton", 0.4): [49.0, 49.0]}, column="noise")
    runs["teacher_run"] = runs["method"].map({"hinton": "t"}).where(runs["noise"] == 0.0, runs["method"].map(
        {"hinton": "t4"}))
    teachers = pd.DataFrame([{"run_id": "t", "role": "teacher", "status": "done", "method": "baseline",
                              "final_acc": 75.0}, {"run_id": "t4", "role": "teacher", "status": "done",
                                                   "method": "baseline", "final_acc": 55.5}])
    text = pages.teacher_gap(pd.concat([runs, teachers], ignore_index=True), "noise")
    lines = [line for line in text.splitlines() if line.startswith("- ")]
    assert len(lines) == 2 and text.startswith("Teacher and student")
    # DML has no teacher: the best taught student is Hinton, not DML
    assert "σ = 0**: teacher 75.00 %, baseline student 61.00 % (gap +14.00" in lines[0] and "Hinton (65.00 %), " \
        "closes +4.00" in lines[0]
    assert "σ = 0.4**: teacher 55.50 %, baseline student 50.00 % (gap +5.50" in lines[1] and "closes -1.00" in lines[1]
    assert pages.teacher_gap(runs, "noise") == ""  # no teacher rows: nothing to say
    teachers.loc[1, "final_acc"] = 48.5  # a student above its teacher is said to be so, not to close the gap
    line = pages.teacher_gap(pd.concat([runs, teachers], ignore_index=True), "noise").splitlines()[-1]
    assert "(gap -1.50 points)" in line and "Hinton (49.00 %), is -1.00 over the baseline and +0.50 over its own " \
        "teacher" in line
    teachers.loc[1, "final_acc"] = 49.5
    runs.loc[(runs["noise"] == 0.4) & (runs["method"] == "hinton"), "final_acc"] = 52.0
    line = pages.teacher_gap(pd.concat([runs, teachers], ignore_index=True), "noise").splitlines()[-1]
    assert "is +2.00 over the baseline and +2.50 over its own teacher" in line


def test_teacher_table_reports_the_seed_the_students_learn_from():
    def row(run_id, noise, seed, acc, teaches):
        return {"run_id": run_id, "dataset": "cifar10", "student": "resnet26", "teacher": "resnet26", "noise": noise,
                "imbalance": None, "seed": seed, "final_acc": acc, "best_acc": acc + 0.5, "teaches": teaches}

    # the table never chooses a seed itself: at σ = 0.4 the study's mark is on the lower seed, and it is shown
    truns = pd.DataFrame([row("a", 0.0, 0, 93.0, False), row("b", 0.0, 1, 94.0, True),
                          row("c", 0.4, 0, 60.0, True), row("d", 0.4, 1, 61.0, False), row("e", 0.2, 0, 70.0, False)])
    t = analysis.teacher_table(truns).set_index("noise")
    assert t.loc[0.0, "run_id"] == "b" and t.loc[0.0, "acc"] == 94.0 and t.loc[0.0, "n"] == 2
    assert t.loc[0.0, "best"] == 94.5 and pd.isna(t.loc[0.2, "best"])  # the best epoch of the seed used
    assert t.loc[0.4, "run_id"] == "c" and t.loc[0.4, "acc"] == 60.0 and t.loc[0.4, "mean"] == 60.5
    assert pd.isna(t.loc[0.2, "acc"]) and pd.isna(t.loc[0.2, "run_id"]) and t.loc[0.2, "n"] == 1
    cmp = analysis.teacher_comparison(analysis.teacher_table(truns), paper.teachers())
    row0 = cmp[(cmp["teacher"] == "resnet26") & (cmp["noise"] == 0.0) & (cmp["dataset"] == "cifar10")].iloc[0]
    assert row0["paper"] == 93.83 and row0["diff"] == pytest.approx(94.0 - 93.83)
    html = tables.style_teachers(cmp).to_html()
    assert "not in paper" in html and "no student yet" in html and "not run" not in html  # rows that ran only
    assert "σ = 0.4" in html and "γ = 0.2" not in html and "best epoch (%)" in html and "94.50" in html
    assert "Δ" not in html and "mean over seeds" in html  # never kdnb − paper; the mean only where seeds are several
    one_seed = tables.style_teachers(analysis.teacher_comparison(analysis.teacher_table(truns.iloc[[1]]),
                                                                 paper.teachers())).to_html()
    assert "mean over seeds" not in one_seed  # one seed: the final accuracy again, not shown twice
    text = pages.describe_teachers(cmp)
    assert text.startswith("3 teacher configurations ran on this page, with final accuracies from 60.00 % to 94.00 %")
    assert "1 teacher (ResNet-26, σ = 0.2) taught no student yet" in text and "kdnb − paper" not in text
    assert "70.00, no student yet" in html  # its accuracy all the same
    # each teacher against the baseline of the students it teaches, beside the paper's lead (Table III: 87.64)
    led = cmp.assign(student="resnet8", baseline=[90.0 if n == 0.0 else 65.0 for n in cmp["noise"]])
    led["lead"], led["paper_lead"] = led["acc"] - led["baseline"], led["paper"] - 87.64
    text = pages.describe_teachers(led)
    assert "clean (94.00 %) leads the ResNet-8 baseline of its regime by +4.00 points" in text
    assert "in the paper the same teacher leads its ResNet-8 by +6.19" in text
    assert "σ = 0.4 (60.00 %) is **behind** the ResNet-8 baseline it teaches (65.00 %, -5.00 points)" in text
    html = tables.style_teachers(led).to_html()
    assert ">lead</th>" in html and ">paper lead</th>" in html and "+6.19" in html


def _two_way_residual_variance(y: np.ndarray) -> tuple[float, int]:
    """Residual variance of y ~ method + seed by least squares on dummy columns (an independent formulation)."""
    m, s = y.shape
    rows = [np.r_[1.0, np.eye(m)[i][1:], np.eye(s)[j][1:]] for i in range(m) for j in range(s)]
    X, v = np.array(rows), y.reshape(-1)
    resid = v - X @ np.linalg.lstsq(X, v, rcond=None)[0]
    df = m * s - X.shape[1]
    return float(resid @ resid) / df, df


def test_paired_differences_pair_by_seed_within_a_cell_with_the_seed_variance_pooled_over_its_methods():
    runs = pd.concat([RUNS, _runs({("sp", "resnet8"): [70.0, 71.0, 72.0]}).iloc[2:]], ignore_index=True)
    d = analysis.paired_differences(runs).set_index(["student", "method"])
    assert ("resnet8", "sp") not in d.index  # seed 2 has no baseline partner
    var, df = _two_way_residual_variance(np.array([[80.0, 82.0], [84.0, 86.0], [79.0, 79.0]]))
    assert df == 2 and var == pytest.approx(2 / 3)
    half = analysis.t975(2) * math.sqrt(2 * var / 2)  # a gain's variance: 2 sigma^2 / n pairs
    h = d.loc[("resnet8", "hinton")]
    assert (h["mean"], h["std"], h["n"], h["df"]) == (4.0, 0.0, 2, 2)
    assert (h["lo"], h["hi"]) == (pytest.approx(4 - half), pytest.approx(4 + half))
    a = d.loc[("resnet8", "at")]  # its own differences -1 and -3, its interval from the pool
    assert a["mean"] == -2.0 and a["std"] == pytest.approx(math.sqrt(2)) and a["hi"] == pytest.approx(-2 + half)
    # one method beside the baseline: the pooled interval is the paired t-interval of its differences
    assert d.loc[("resnet14", "hinton"), "hi"] == pytest.approx(0.5 + 12.706 * math.sqrt(0.5) / math.sqrt(2))
    one = analysis.paired_differences(RUNS[RUNS["seed"] == 0]).set_index(["student", "method"])
    assert one.loc[("resnet8", "hinton"), "mean"] == 4.0 and pd.isna(one.loc[("resnet8", "hinton"), "lo"])
    assert analysis.paired_differences(RUNS.iloc[:0]).empty


def test_t_quantiles():
    assert analysis.t975(1) == 12.706 and analysis.t975(30) == 2.042 and math.isnan(analysis.t975(0))
    assert analysis.t975(31) == pytest.approx(2.0395, abs=1e-3) and analysis.t975(120) == pytest.approx(1.980, abs=1e-3)
    assert analysis.t975(10**6) == pytest.approx(1.96, abs=1e-3)


def test_analysis_tables_pages_and_widgets_load_no_plotting_library():
    code = ("import sys, kdnb.report.analysis, kdnb.report.tables, kdnb.report.pages, kdnb.report.widgets; "
            "print([m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'seaborn', 'ipywidgets')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_figures_are_closed_figures():
    theirs = analysis.paper_summary(paper.generalization("cifar10"))
    assert isinstance(figures.plot_gains(analysis.paired_differences(RUNS), theirs, "student"), Figure)
    noise = _runs({("baseline", 0.0): [90, 91], ("baseline", 0.4): [60, 62], ("hinton", 0.4): [70, 71],
                   ("hinton", 0.0): [91, 93]}, "noise")
    trend = analysis.paired_differences(noise, by=["noise"])
    assert isinstance(figures.plot_gain_trend(trend, analysis.paper_summary(paper.label_noise()), "noise"), Figure)
    one = trend[trend["noise"] == 0.4]  # one noise rate: no trend to draw
    assert figures.plot_gain_trend(one, analysis.paper_summary(paper.label_noise()), "noise") is None
    hist = pd.DataFrame([{"run_id": r, "method": m, "student": s, "seed": seed, "noise": 0.0, "imbalance": None,
                          "stage": "main", "epoch": e, "test_acc": 50 + e, "train_acc": 40 + e, "train_loss": 1 / e}
                         for r, m, s, seed in RUNS[["run_id", "method", "student", "seed"]].itertuples(index=False)
                         for e in (1, 2, 3)])
    cur = analysis.curves(RUNS, hist)
    assert len(cur) == 3 * len(RUNS) and set(cur["setting"]) == {"ResNet-8", "ResNet-14"}
    carried = RUNS.assign(history=[[{"stage": "main", "epoch": e, "test_acc": 50 + e, "train_acc": 40 + e,
                                     "train_loss": 1 / e} for e in (1, 2, 3)]] * len(RUNS))
    pd.testing.assert_frame_equal(analysis.curves(carried), cur)  # the history the runs carry (Study.results)
    assert isinstance(figures.plot_curves(cur), Figure) and isinstance(figures.curves_grid(cur), Figure)
    w = widgets.explorer(cur, RUNS)
    names = [c.description for c in w.children[:-1]]
    assert names == ["architecture", "metric"]  # one data set: no control that chooses nothing


def test_curves_keep_the_final_stage_only():
    hist = pd.DataFrame([{"run_id": "x", "method": "fitnet", "student": "resnet8", "seed": 0, "noise": 0.0,
                          "imbalance": None, "stage": st, "epoch": e, "test_acc": 1.0}
                         for st, e in (("stage1", 1), ("stage1", 2), ("main", 1))]
                        + [{"run_id": "x", "stage": "stage1", "reused": "k"}])
    runs = pd.DataFrame([{"run_id": "x", "dataset": "cifar10", "role": "student", "status": "done"}])
    cur = analysis.curves(runs, hist)
    assert list(cur["stage"]) == ["main"] and list(cur["epoch"]) == [1]


def test_transfer_observations_hold_on_the_paper():
    obs = analysis.transfer_observations(paper.transfer())
    assert obs["holds"].tolist() == [True] * len(obs)


def test_transfer_observations_on_a_contrary_matrix():
    m = paper.transfer().copy()
    m.loc["hinton", "teacher"] = 99.0  # now Hinton, not AT, is the closest to the teacher
    obs = analysis.transfer_observations(m).set_index("observation")["holds"]
    assert obs.iloc[0] is False or obs.iloc[0] == False  # noqa: E712
    small = paper.transfer().loc[["baseline", "hinton", "mean"], ["baseline", "hinton", "mean", "teacher"]]
    assert analysis.transfer_observations(small)["holds"].isna().all()  # AT, BSS, FitNet... not run: cannot check


def test_transfer_figures():
    theirs = paper.transfer()
    ours = theirs.loc[["baseline", "at", "mean"], ["baseline", "at", "mean", "teacher"]] + 1.0
    fig = figures.plot_transfer(ours, theirs)
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["kdnb", "paper, Fig. 1"]  # no difference map
    assert any(ax.get_ylabel() == "success rate (%)" for ax in fig.axes)  # the colour bar
    long = analysis.transfer_long({"kdnb": ours, "paper": theirs})
    assert set(long["source"]) >= {"baseline", "at", "teacher"} and "mean" not in set(long["target"])
    assert isinstance(figures.transfer_grid(long), Figure)
    bars = figures.plot_transfer_bars(long, "at")
    assert bars.axes[0].get_legend() is None and len(bars.legends) == 1  # above the panel, off the bars


def test_banner_and_params():
    assert "not results" in pages.banner("smoke") and pages.banner("paper") == ""
    assert 'class="kdnb-banner"' in pages.banner("mini") and "not the paper" in pages.banner("other")
    p, dropped = pages.params_from({"methods": ["baseline", "no_such_method"], "store": "x", "train": True})
    assert p.methods == ["baseline"] and dropped == ["no_such_method"]
    assert "no_such_method" in pages.setting_text(p, dropped)
    several = pages.stores_banner(["subset60", "mini", "paper"], "64 findings")
    assert "<code>subset60</code>, <code>mini</code>, <code>paper</code>" in several and "Mini profile" not in several
    assert several.endswith("<br>64 findings</div>")


def test_a_regime_names_an_imbalanced_set_by_its_class_sizes():
    """An imbalanced set is named by its largest and smallest class, not by the cap of a subset it came from
    (subset60's γ = 1 section uses the paper's 5,000 → 250 over the full set; mini's 1,000 → 50)."""
    st = pd.DataFrame([dict(role="student", status="done", method="baseline", seed=0, epochs=60, train_per_class=tpc,
                            imbalance=g, imbalance_n_max=hi, imbalance_n_min=lo)
                       for tpc, g, hi, lo in [(None, 1.0, 5000, 250), (1000, None, None, None)]])
    assert pages.regime(st.iloc[:1]) == "class sizes 5,000 → 250, 60 epochs, seed 0"
    assert pages.regime(st.iloc[1:]) == "1,000 training images per class, 60 epochs, seed 0"
    assert [analysis.regime_label(r) for r in st.to_dict("records")] == ["5,000→250/class · 60 ep",
                                                                        "1,000/class · 60 ep"]
    assert analysis.regime_label({"train_per_class": None, "epochs": None}) == "all images"
    mini = Params(train_per_class=1000, imbalance=[None, 1.0], imbalance_n_max=1000, imbalance_n_min=50)
    assert analysis.params_images_text(mini) == "class sizes 1,000 → 50"
    assert analysis.params_images_text(Params(train_per_class=1000)) == "1,000 training images per class"


def test_teacher_grids_have_the_teachers_run_ids(tmp_path):
    from kdnb.study import Study, teacher_grids

    p = Params(store=str(tmp_path), dataset="synthetic", students=["resnet8"], teachers={"resnet8": "resnet14"},
               methods=["baseline", "hinton"], seeds=[0, 1], teacher_seeds=[0, 3], epochs=2, teacher_epochs=3,
               noise=[0.0, 0.4])
    expected = {c.run_id for cond in Study(p).conditions for cs in cond.teachers.values() for c in cs}
    got = {c.run_id for tp in teacher_grids(p) for cond in Study(tp).conditions for c in cond.students}
    assert got == expected and len(got) == 4


def test_gain_table_sets_the_paired_gain_beside_the_papers():
    runs = _runs({("baseline", "resnet8"): [50.0, 52.0], ("hinton", "resnet8"): [52.0, 54.2]})
    paired = analysis.paired_differences(runs, by=["student"])
    theirs = analysis.paper_summary(paper.generalization("cifar10"))
    text = tables.style_gains(paired, theirs, "student", ["resnet8", "wrn10_2"]).data
    assert text.loc["Hinton", ("ResNet-8", "kdnb")] == "+2.10 [+0.8, +3.4]"
    assert text.loc["Hinton", ("ResNet-8", "paper")] == "+1.16"
    assert text.loc["Hinton", ("WRN-10-2", "kdnb")] == tables.NOT_RUN
    assert text.loc["DML", ("WRN-10-2", "paper")] == "+0.98"
    labelled = tables.style_gains(paired, theirs, "student", ["resnet8"], ours_label="kdnb: 8 epochs",
                                  theirs_label="paper: 200 epochs").data
    assert list(labelled.columns) == [("ResNet-8", "kdnb: 8 epochs"), ("ResNet-8", "paper: 200 epochs")]


def test_a_gain_is_coloured_only_where_its_interval_excludes_zero():
    runs = _runs({("baseline", "resnet8"): [50.0, 52.0, 51.0], ("hinton", "resnet8"): [52.0, 54.2, 53.1],
                  ("at", "resnet8"): [45.0, 47.0, 46.2], ("sp", "resnet8"): [52.5, 51.0, 51.8]})
    paired = analysis.paired_differences(runs, by=["student"]).set_index("method")
    assert paired.loc["hinton", "lo"] > 0 and paired.loc["at", "hi"] < 0 and paired.loc["sp", "lo"] < 0 < \
        paired.loc["sp", "hi"] and paired.loc["sp", "mean"] > 0
    theirs = analysis.paper_summary(paper.generalization("cifar10"))
    styler = tables.style_gains(paired.reset_index(), theirs, "student", ["resnet8"])
    html = styler.to_html()
    css = {label: styler.data.index.get_loc(label) for label in ("Hinton", "AT", "SP")}
    ctx = styler._compute().ctx  # (row, column) -> [(property, value)]
    colours = {m: dict(ctx.get((i, 0), [])).get("color") for m, i in css.items()}
    assert colours == {"Hinton": "#1e8449", "AT": "#b03a2e", "SP": None}  # SP: +0.5 but its interval spans 0
    assert "#1e8449" in html


# ---------------------------------------------------------------------------------------------
# Legible figures, one series per configuration, per-class accuracy, provenance, the banner

COLUMN_PX = 676  # the book's output column (the page's images are shrunk to it above this width)


def _png_width(fig) -> int:
    """The width in px of the PNG a notebook shows (the inline backend: bbox_inches="tight", the figure's dpi)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return Image.open(buf).size[0]


def _smallest_font(fig) -> float:
    from matplotlib.text import Text

    return min(t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip())


def _history_runs(methods, seeds=(0, 1), noise=(0.0,), loss=lambda m: 1.0) -> pd.DataFrame:
    """Finished student runs with a 3-epoch history each."""
    return pd.DataFrame([{"run_id": f"{m}{n}{s}", "role": "student", "status": "done", "method": m,
                          "student": "resnet8", "dataset": "cifar10", "seed": s, "noise": n, "imbalance": None,
                          "final_acc": 50.0 + s, "best_acc": 51.0 + s, "wall_s": 60.0,
                          "history": [{"stage": "main", "epoch": e, "test_acc": 40 + e + s, "train_acc": 45 + e,
                                       "train_loss": loss(m) / e} for e in (1, 2, 3)]}
                         for m in methods for n in noise for s in seeds])


def test_every_figure_fits_the_text_column_in_readable_type():
    every = list(paper.METHODS)
    runs = _history_runs(every, noise=(0.0, 0.4))
    cur = analysis.curves(runs)
    theirs = analysis.paper_summary(paper.label_noise())
    long = analysis.transfer_long({"kdnb": paper.transfer(), "paper": paper.transfer()})
    seeds = pd.concat([runs[runs["noise"] == n].assign(final_acc=lambda d, n=n: 50.0 - 10 * n + d["seed"] +
                                                        0.1 * d["method"].map(every.index)) for n in (0.0, 0.4)])
    ev, sd, df = claims_mod.kdnb_evidence("mini", seeds.assign(dataset="cifar10"), "resnet8")
    claims = claims_mod.claims_table([claims_mod.Regime("mini", [Params(students=["resnet8"])], seeds, seeds, ev, sd,
                                                        df, None)])
    groups = pd.DataFrame([dict(method=m, group=g, mean=1.0, lo=0.0, hi=2.0) for m in every[1:]
                           for g in ("minority", "majority")])
    figs = {"gains": figures.plot_gains(analysis.paired_differences(runs, by=["noise"]), theirs, "noise"),
            "trend": figures.plot_gain_trend(analysis.paired_differences(runs, by=["noise"]), theirs, "noise"),
            "curves": figures.plot_curves(cur),
            "grid": figures.curves_grid(cur), "seeds": figures.plot_seed_curves(cur, "hinton", "test_acc", "t"),
            "transfer": figures.plot_transfer(paper.transfer(), paper.transfer()),
            "bars": figures.plot_transfer_bars(long, "at"), "transfer_grid": figures.transfer_grid(long),
            "claims": figures.plot_claims(claims), "class_gains": figures.plot_class_gains(groups),
            "teacher_leads": figures.plot_teacher_leads(LEADS)}
    for name, fig in figs.items():
        assert _png_width(fig) <= COLUMN_PX, name
        assert _smallest_font(fig) >= 9, name  # 12 px at 96 dpi


def test_teacher_curves_keep_one_series_per_configuration():
    # the clean and the γ = 1 ResNet-26 teachers share σ = 0 and seed 0: two configurations, never one series
    truns = pd.DataFrame([{"run_id": r, "role": "teacher", "status": "done", "method": "baseline",
                           "student": "resnet26", "dataset": "cifar10", "seed": 0, "noise": n, "imbalance": g,
                           "history": [{"stage": "main", "epoch": e, "test_acc": a + e} for e in (1, 2, 3)]}
                          for r, n, g, a in (("clean", 0.0, None, 50), ("imb", 0.0, 1.0, 20),
                                             ("noisy", 0.4, None, 30))])
    cur = analysis.curves(truns)
    assert cur.groupby("setting")["run_id"].unique().map(list).to_dict() == {
        "clean": ["clean"], "γ = 1": ["imb"], "σ = 0.4": ["noisy"]}
    fig = figures.plot_curves(cur, by="setting")
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert sorted(ax.get_title() for ax in panels) == ["clean", "γ = 1", "σ = 0.4"]
    assert all(len(ax.lines) == 1 for ax in panels)  # one series per teacher
    assert not any(ax.collections for ax in panels)  # one seed: no ± sd band
    imb = next(ax for ax in panels if ax.get_title() == "γ = 1").lines[0].get_ydata()
    assert list(imb) == [21, 22, 23]  # the γ = 1 teacher's own curve, not an average with the clean one


def test_learning_curves_are_small_multiples_with_the_baseline_in_each_panel():
    runs = _history_runs(["baseline", "hinton", "bss", "at"], loss=lambda m: 13.0 if m == "bss" else 1.5)
    cur = analysis.curves(runs)
    fig = figures.plot_curves(cur)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["Hinton", "BSS", "AT"]  # no panel of its own for the baseline
    for ax in panels:
        dashed, solid = [ln for ln in ax.lines if ln.get_linestyle() == "--"], [ln for ln in ax.lines
                                                                               if ln.get_linestyle() == "-"]
        assert len(dashed) == 1 and len(solid) == 1 and len(ax.collections) == 1  # baseline, method, its ± sd band
    assert panels[0].get_ylim() == panels[1].get_ylim()  # accuracies share a scale
    loss = [ax for ax in figures.plot_curves(cur, "train_loss").axes if ax.get_visible()]
    assert loss[1].get_ylim()[1] > 10 > 3 > loss[0].get_ylim()[1]  # BSS's loss does not flatten Hinton's
    grid = figures.curves_grid(cur)
    rows = {ax.get_ylabel(): ax for ax in grid.axes[::3]}  # first column: test accuracy
    assert list(rows) == ["Baseline", "Hinton", "BSS", "AT"]
    assert rows["Hinton"].get_ylim() == rows["BSS"].get_ylim()
    hinton_loss, bss_loss = grid.axes[3 * 1 + 2], grid.axes[3 * 2 + 2]
    assert bss_loss.get_ylim()[1] > 10 > 3 > hinton_loss.get_ylim()[1]


def test_gain_figure_draws_the_paired_interval_of_every_method():
    from matplotlib.container import ErrorbarContainer

    paired = analysis.paired_differences(RUNS)
    fig = figures.plot_gains(paired, analysis.paper_summary(paper.generalization("cifar10")), "student")
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title().split(":")[0] for ax in panels] == ["ResNet-8", "ResNet-14"]  # stacked, paper order
    bars = next(c for c in panels[0].containers if isinstance(c, ErrorbarContainer))
    spans = {(round(float(s[0][1]), 3), round(float(s[1][1]), 3)) for s in bars.lines[2][0].get_segments() if len(s)}
    cell = paired.set_index(["student", "method"])
    assert spans == {(round(cell.loc[("resnet8", m), "lo"], 3), round(cell.loc[("resnet8", m), "hi"], 3))
                     for m in ("at", "hinton")}


def test_one_seed_gains_are_not_said_to_have_an_interval():
    one = analysis.paired_differences(RUNS[RUNS["seed"] == RUNS["seed"].min()])
    fig = figures.plot_gains(one, analysis.paper_summary(paper.generalization("cifar10")), "student")
    labels = [t.get_text() for lg in fig.legends for t in lg.get_texts()]
    assert "kdnb: one seed, no interval" in labels and not any("CI" in t for t in labels), labels
    fig = figures.plot_gains(analysis.paired_differences(RUNS), analysis.paper_summary(
        paper.generalization("cifar10")), "student")
    assert not any("one seed" in t.get_text() for lg in fig.legends for t in lg.get_texts())


def _class_runs() -> pd.DataFrame:
    accs = {("baseline", 0): [90, 80, 70, 10, 20], ("baseline", 1): [92, 82, 72, 12, 18],
            ("hinton", 0): [90, 80, 70, 20, 30], ("hinton", 1): [92, 80, 72, 14, 26], ("at", 0): None}
    return pd.DataFrame([{"run_id": f"{m}{s}", "role": "student", "status": "done", "method": m,
                          "student": "resnet8", "imbalance": 1.0, "seed": s, "class_acc": a}
                         for (m, s), a in accs.items()])


def test_per_class_accuracy_and_the_minority_gain_pair_by_seed():
    counts = [100, 80, 60, 40, 20]  # median 60: classes 3 and 4 are the minority
    assert analysis.minority_classes(counts) == [3, 4]
    per_class = analysis.class_accuracy(_class_runs())
    assert len(per_class) == 4 * 5 and "at" not in set(per_class["method"])  # AT's record predates class_acc
    g = analysis.class_groups(per_class, {1.0: counts}).set_index(["method", "group"])
    h = g.loc[("hinton", "minority")]  # seed 0: 25 − 15 = +10, seed 1: 20 − 15 = +5
    assert (h["acc"], h["mean"], h["n"]) == (22.5, 7.5, 2)
    assert h["lo"] == pytest.approx(7.5 - 12.706 * math.sqrt(12.5) / math.sqrt(2))
    assert g.loc[("hinton", "majority"), "mean"] == pytest.approx((0 - 2 / 3) / 2)
    assert g.loc[("baseline", "minority"), "acc"] == 15.0 and g.loc[("baseline", "minority"), "n"] == 0
    cell = per_class[per_class["method"].isin(["baseline", "hinton"])]
    html = tables.style_class_acc(cell, counts, ["a", "b", "c", "d", "e"]).to_html()
    assert ">d</th>" in html and ">40</th>" in html and html.count(tables.CSS_MINORITY.rstrip(";")) >= 1
    text = tables.style_class_groups(g.reset_index()).data
    assert text.loc["Hinton", ("minority classes", "gain (points)")].startswith("+7.50 [")
    assert isinstance(figures.plot_class_gains(g.reset_index()), Figure)


def test_imbalance_page_says_when_records_predate_per_class_accuracy():
    from kdnb.study import Params

    p = Params(profile="mini", dataset="cifar10", train_per_class=1000, imbalance=[1.0], imbalance_n_max=1000,
               imbalance_n_min=50)
    counts = pages.class_counts(p)[1.0]
    assert len(counts) == 10 and counts[0] == 1000 and counts[-1] == 50
    (line,) = pages.class_tables(analysis.class_accuracy(RUNS), p)
    assert "hold no per-class accuracy" in line.data
    shown = pages.class_tables(analysis.class_accuracy(_class_runs().assign(
        class_acc=lambda d: d["class_acc"].map(lambda a: a and a * 2))), p)
    assert len(shown) == 3 and "below the median): dog, frog, horse, ship, truck" in shown[0].data


def test_provenance_names_machines_precision_wall_time_and_the_headline():
    runs = RUNS.assign(device=["NVIDIA H200"] + ["cpu"] * (len(RUNS) - 1), cpu="Intel Xeon", precision="bf16",
                       wall_s=[60.0] * (len(RUNS) - 1) + [7500.0])
    text = pages.provenance(runs)
    assert "10 finished runs on CPU Intel Xeon: 9 runs, NVIDIA H200: 1 run, in bf16" in text
    assert "2.2 h of training in total, median 60 s per run" in text
    assert "headline number is the final-epoch test accuracy** (`final_acc`)" in text and "best_acc" in text
    old = pages.provenance(RUNS.drop(columns=["wall_s"]))  # records without cpu, precision, wall time
    assert "CPU (model not recorded)" in old and "precision not recorded" in old and "no training time" in old
    block = pages.comparison(RUNS, analysis.paper_summary(paper.generalization("cifar10")), "student",
                             list(paper.STUDENTS), "kdnb", "III")
    captions = [b.caption for b in block if hasattr(b, "caption")]
    assert any("final-epoch test accuracy (%; the headline)" in c for c in captions)
    best = next(b.data for b in block if "best-epoch test accuracy" in str(getattr(b, "data", "")))
    assert "Its companion: the best-epoch accuracy" in best and "82.00 ± 1.41" in best  # best_acc = final_acc + 1
    assert "not run by this profile: ResNet-20" in block[2].data


def test_banner_carries_the_headline_numbers():
    assert pages.banner("mini") == pages.banner("mini", "")  # every old call still works
    assert "Mini profile" in pages.banner("mini", "Of the paper's 4") and "Of the paper's 4" in pages.banner(
        "mini", "Of the paper's 4")
    assert pages.banner("paper", "x") == '<div class="kdnb-headline">x</div>'



LEADS = pd.DataFrame({"dataset": ["cifar10", "cifar10", "cifar10"], "teacher": ["resnet26", "resnet26", "wrn40_2"],
                      "student": ["resnet8", "resnet8", None], "configuration": ["clean", "σ = 0.4", "clean"],
                      "lead": [5.9, 7.5, math.nan], "paper_lead": [6.19, math.nan, 2.0]})


def test_teacher_leads_draws_kdnb_and_paper_leads_of_taught_teachers_only():
    ax = figures.plot_teacher_leads(LEADS).axes[0]
    rows = [t.get_text() for t in ax.get_yticklabels()]
    assert rows == ["ResNet-26 → ResNet-8, clean", "ResNet-26 → ResNet-8, σ = 0.4"]  # no student: no lead
    widths = sorted(round(b.get_width(), 2) for b in ax.patches if b.get_height() > 0 and b.get_width() != 0)
    assert widths == [5.9, 6.19, 7.5]  # the paper has no σ = 0.4 lead for this pair: no bar
    empty = figures.plot_teacher_leads(LEADS.iloc[2:]).axes[0]
    assert "no teacher has taught a student yet" in [t.get_text() for t in empty.texts]


def test_a_teacher_lead_the_paper_lacks_for_the_pair_is_set_beside_its_own_pair_in_that_condition():
    """Under noise and imbalance the paper has one pair, WRN-40-2 → WRN-16-2 (Tables II, V, VI)."""
    lead, pair = pages.paper_lead("cifar10", "resnet8", 0.4, None, math.nan)
    assert pair == "WRN-40-2 → WRN-16-2" and lead == pytest.approx(66.34 - 64.47)
    assert pages.paper_lead("cifar10", "resnet8", 0.0, 1.0, math.nan)[0] == pytest.approx(81.13 - 80.09)
    assert pages.paper_lead("cifar10", "resnet8", 0.0, None, 93.83) == (pytest.approx(93.83 - 87.64), "")
    assert math.isnan(pages.paper_lead("cifar10", "resnet8", 0.0, None, math.nan)[0])  # clean: no stand-in
    leads = LEADS.assign(paper_lead=[6.19, lead, 2.0], paper_pair=["", pair, ""])
    ax = figures.plot_teacher_leads(leads).axes[0]
    row = [t.get_text() for t in ax.get_yticklabels()][1]
    assert row == "ResNet-26 → ResNet-8, σ = 0.4\n(paper: WRN-40-2 → WRN-16-2)"
    assert round(lead, 2) in {round(b.get_width(), 2) for b in ax.patches}
    html = tables.style_teachers(leads.assign(n=1, acc=[80.0, 70.0, 90.0], mean=math.nan, std=math.nan, best=math.nan,
                                              paper=[93.83, math.nan, 95.11])).to_html()
    assert "+1.87 (WRN-40-2 → WRN-16-2)" in html


def test_teacher_leads_keeps_two_regimes_of_one_pair_apart():
    two = LEADS.iloc[:1].assign(train_per_class=1000, epochs=60)
    two = pd.concat([two, two.assign(epochs=32, lead=21.8)], ignore_index=True)
    ax = figures.plot_teacher_leads(two).axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["ResNet-26 → ResNet-8, clean, 1,000/class · 60 ep",
                                                           "ResNet-26 → ResNet-8, clean, 1,000/class · 32 ep"]
    assert len(ax.lines) == 1  # the zero line only: a bar is one teacher, no interval across two


def test_table_vi_names_the_papers_imbalanced_set_and_table_v_its_full_one():
    from pandas.io.formats.style import Styler

    runs = _runs({("baseline", "resnet8"): [60.0, 61.0], ("hinton", "resnet8"): [63.0, 63.5]}).assign(imbalance=1.0)
    blocks = pages.condition_tables(runs, analysis.paper_summary(paper.imbalance()), "imbalance", ["resnet8"])
    gains = next(b for b in blocks if isinstance(b, Styler))
    assert ("γ = 1", "paper: class sizes 5,000 → 250, 200 epochs, 5 seeds") in list(gains.data.columns)
    noisy = _runs({("baseline", 0.4): [60.0, 61.0], ("hinton", 0.4): [63.0, 63.5]}, column="noise")
    blocks = pages.condition_tables(noisy, analysis.paper_summary(paper.label_noise()), "noise", ["resnet8"])
    gains = next(b for b in blocks if isinstance(b, Styler))
    assert ("σ = 0.4", "paper: 5,000 training images per class, 200 epochs, 5 seeds") in list(gains.data.columns)
