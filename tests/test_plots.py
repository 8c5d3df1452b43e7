"""Tables, figures and widgets of the book on synthetic frames (kdnb.plots, kdnb.pages)."""

import math

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from kdnb import pages, paper, plots  # noqa: E402


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
    s = plots.summarize(RUNS).set_index(["student", "method"])
    assert s.loc[("resnet8", "baseline"), "mean"] == 81.0
    assert s.loc[("resnet8", "baseline"), "std"] == pytest.approx(math.sqrt(2.0))  # ddof = 1
    assert s.loc[("resnet8", "at"), "std"] == 0.0 and s.loc[("resnet8", "at"), "n"] == 2


def test_summarize_ignores_teachers_and_failed_runs():
    extra = pd.concat([RUNS, RUNS.iloc[:1].assign(run_id="t", role="teacher", final_acc=10.0),
                       RUNS.iloc[:1].assign(run_id="f", status="failed", final_acc=float("nan"))])
    pd.testing.assert_frame_equal(plots.summarize(extra), plots.summarize(RUNS))


def test_one_seed_has_no_std_and_shows_the_mean_only():
    s = plots.summarize(RUNS[RUNS["seed"] == 0])
    assert s["std"].isna().all()
    text = plots.table_text(s, "student", columns=["resnet8"])
    assert text.loc["baseline", "resnet8"] == "80.00"


def test_table_text_mean_std_and_not_run():
    text = plots.table_text(plots.summarize(RUNS), "student", columns=["resnet8", "resnet14", "wrn16_2"])
    assert list(text.index) == list(paper.METHODS)
    assert text.loc["baseline", "resnet8"] == "81.00 ± 1.41"
    assert text.loc["at", "resnet14"] == plots.NOT_RUN
    assert (text["wrn16_2"] == plots.NOT_RUN).all() and text.loc["dml", "resnet8"] == plots.NOT_RUN


def test_best_and_below_baseline_marks():
    means = plots.wide(plots.summarize(RUNS), "student")
    best, below = plots.best_mask(means), plots.below_mask(means)
    assert best.loc["hinton", "resnet8"] and not best.loc["baseline", "resnet8"]
    assert best.loc["hinton", "resnet14"] and best["resnet14"].sum() == 1
    assert below.loc["at", "resnet8"] and not below.loc["hinton", "resnet8"]
    assert not below.loc["baseline"].any() and not below.loc["dml"].any()  # not run is never below


def test_ties_are_all_bold():
    runs = _runs({("baseline", "resnet8"): [80.0], ("hinton", "resnet8"): [85.0], ("sp", "resnet8"): [85.0]})
    best = plots.best_mask(plots.wide(plots.summarize(runs), "student"))
    assert best.loc[["hinton", "sp"], "resnet8"].all() and best["resnet8"].sum() == 2


def test_styled_table_marks_cells():
    s = plots.summarize(RUNS)
    css = plots.table_css(s, "student", columns=["resnet8", "wrn16_2"], below_baseline=True)
    assert css.loc["hinton", "resnet8"] == plots.CSS_BEST
    assert css.loc["at", "resnet8"] == plots.CSS_BELOW
    assert css.loc["baseline", "resnet8"] == "" and css.loc["dml", "wrn16_2"] == plots.CSS_NOT_RUN
    no_blue = plots.table_css(s, "student", columns=["resnet8"], below_baseline=False)
    assert no_blue.loc["at", "resnet8"] == ""
    html = plots.style_table(s, "student", columns=["resnet8", "wrn16_2"], below_baseline=True).to_html()
    assert "ResNet-8" in html and "WRN-16-2" in html and "81.00 ± 1.41" in html and "not run" in html
    assert "font-weight: bold" in html and "#1f5fbf" in html


def test_difference_and_side_by_side():
    ours = plots.summarize(RUNS)
    theirs = plots.paper_summary(paper.generalization("cifar10"))
    d = plots.difference(ours, theirs, "student")
    assert set(d.columns) == {"resnet8", "resnet14"}
    assert d.loc["baseline", "resnet8"] == pytest.approx(81.0 - 87.64)
    assert d.loc["hinton", "resnet14"] == pytest.approx(91.0 - 92.50)
    assert pd.isna(d.loc["dml", "resnet8"])  # not run here
    html = plots.side_by_side(ours, theirs, "student", columns=["resnet8"]).to_html()
    assert "87.64 ± 0.25" in html and "-6.64" in html and "not run" in html and "Δ" in html


def test_side_by_side_column_missing_in_paper():
    ours = plots.summarize(_runs({("baseline", 0.5): [50.0], ("hinton", 0.5): [55.0]}, column="noise"), by=["noise"])
    theirs = plots.paper_summary(paper.label_noise())
    text = plots.side_by_side(ours, theirs, "noise").data
    assert (text[("σ = 0.5", "paper")] == "not in paper").all()


def test_gains_and_describe():
    ours = plots.summarize(RUNS)
    g = plots.gains(ours, "student").set_index(["student", "method"])["gain"]
    assert g[("resnet8", "hinton")] == pytest.approx(4.0) and g[("resnet8", "at")] == pytest.approx(-2.0)
    text = plots.describe(ours, plots.paper_summary(paper.generalization("cifar10")), "student")
    assert "best here Hinton (85.00 %)" in text and "in the paper ONE (89.54 %)" in text
    assert "Above the baseline here: 1 of 2 methods (Hinton)" in text
    assert "agrees with the paper for 2 of 2 methods" in text  # paper, ResNet-8: Hinton above, AT below
    # Hinton: gain 4 against 2 * sqrt(2/2 + 2/2) = 2.83: clear; with seeds 82 and 88 (gain 4 < 2 * 3.16) it is not
    assert "twice the standard error of the difference: 1 (Hinton)" in text
    wider = plots.summarize(_runs({("baseline", "resnet8"): [80.0, 82.0], ("hinton", "resnet8"): [82.0, 88.0]}))
    assert "standard error of the difference: 0 (none)" in plots.describe(wider, wider.iloc[:0], "student")
    assert plots.describe(ours.iloc[:0], ours.iloc[:0], "student") == "No finished runs to describe."


def test_teacher_gap_names_teacher_baseline_and_best_taught_student():
    runs = _runs({("baseline", 0.0): [60.0, 62.0], ("hinton", 0.0): [64.0, 66.0], ("dml", 0.0): [70.0, 70.0],
                  ("baseline", 0.4): [50.0, 50.0], ("hinton", 0.4): [49.0, 49.0]}, column="noise")
    runs["teacher_run"] = runs["method"].map({"hinton": "t"}).where(runs["noise"] == 0.0, runs["method"].map(
        {"hinton": "t4"}))
    teachers = pd.DataFrame([{"run_id": "t", "role": "teacher", "status": "done", "method": "baseline",
                              "final_acc": 75.0}, {"run_id": "t4", "role": "teacher", "status": "done",
                                                   "method": "baseline", "final_acc": 55.5}])
    text = plots.teacher_gap(pd.concat([runs, teachers], ignore_index=True), "noise")
    lines = [line for line in text.splitlines() if line.startswith("- ")]
    assert len(lines) == 2 and text.startswith("Teacher and student")
    # DML has no teacher: the best taught student is Hinton, not DML
    assert "σ = 0**: teacher 75.00 %, baseline student 61.00 % (gap +14.00" in lines[0] and "Hinton (65.00 %), " \
        "closes +4.00" in lines[0]
    assert "σ = 0.4**: teacher 55.50 %, baseline student 50.00 % (gap +5.50" in lines[1] and "closes -1.00" in lines[1]
    assert plots.teacher_gap(runs, "noise") == ""  # no teacher rows: nothing to say


def test_teacher_table_picks_the_best_seed():
    truns = pd.DataFrame([
        {"run_id": "a", "dataset": "cifar10", "student": "resnet26", "noise": 0.0, "imbalance": None, "seed": 0,
         "final_acc": 93.0},
        {"run_id": "b", "dataset": "cifar10", "student": "resnet26", "noise": 0.0, "imbalance": None, "seed": 1,
         "final_acc": 94.0},
        {"run_id": "c", "dataset": "cifar10", "student": "resnet26", "noise": 0.4, "imbalance": None, "seed": 0,
         "final_acc": 60.0}])
    t = plots.teacher_table(truns)
    assert len(t) == 2 and t.loc[0, "run_id"] == "b" and t.loc[0, "acc"] == 94.0 and t.loc[0, "n"] == 2
    cmp = plots.teacher_comparison(t, paper.teachers())
    row = cmp[(cmp["teacher"] == "resnet26") & (cmp["noise"] == 0.0) & (cmp["dataset"] == "cifar10")].iloc[0]
    assert row["paper"] == 93.83 and row["diff"] == pytest.approx(94.0 - 93.83)
    html = plots.style_teachers(cmp).to_html()
    assert "not in paper" in html and "not run" in html and "σ = 0.4" in html and "γ = 0.2" in html
    text = plots.describe_teachers(cmp)
    assert "1 of them matches a row of the paper's Table II; kdnb − paper is +0.17 points" in text


def test_figures_are_closed_figures():
    ours = plots.summarize(RUNS)
    theirs = plots.paper_summary(paper.generalization("cifar10"))
    assert isinstance(plots.plot_gains(ours, theirs, "student"), Figure)
    noise = _runs({("baseline", 0.0): [90, 91], ("baseline", 0.4): [60, 62], ("hinton", 0.4): [70, 71]}, "noise")
    assert isinstance(plots.plot_vs_condition(noise, plots.paper_summary(paper.label_noise()), "noise"), Figure)
    hist = pd.DataFrame([{"run_id": r, "method": m, "student": s, "seed": seed, "noise": 0.0, "imbalance": None,
                          "stage": "main", "epoch": e, "test_acc": 50 + e, "train_acc": 40 + e, "train_loss": 1 / e}
                         for r, m, s, seed in RUNS[["run_id", "method", "student", "seed"]].itertuples(index=False)
                         for e in (1, 2, 3)])
    cur = plots.curves(RUNS, hist)
    assert len(cur) == 3 * len(RUNS) and set(cur["setting"]) == {"ResNet-8", "ResNet-14"}
    assert isinstance(plots.plot_curves(cur), Figure) and isinstance(plots.curves_grid(cur), Figure)
    w = plots.explorer(cur, RUNS)
    names = [c.description for c in w.children[:-1]]
    assert names == ["data set", "architecture", "method", "metric"]


def test_curves_keep_the_final_stage_only():
    hist = pd.DataFrame([{"run_id": "x", "method": "fitnet", "student": "resnet8", "seed": 0, "noise": 0.0,
                          "imbalance": None, "stage": st, "epoch": e, "test_acc": 1.0}
                         for st, e in (("stage1", 1), ("stage1", 2), ("main", 1))]
                        + [{"run_id": "x", "stage": "stage1", "reused": "k"}])
    runs = pd.DataFrame([{"run_id": "x", "dataset": "cifar10", "role": "student", "status": "done"}])
    cur = plots.curves(runs, hist)
    assert list(cur["stage"]) == ["main"] and list(cur["epoch"]) == [1]


def test_transfer_observations_hold_on_the_paper():
    obs = pages.transfer_observations(paper.transfer())
    assert obs["holds"].tolist() == [True] * len(obs)


def test_transfer_observations_on_a_contrary_matrix():
    m = paper.transfer().copy()
    m.loc["hinton", "teacher"] = 99.0  # now Hinton, not AT, is the closest to the teacher
    obs = pages.transfer_observations(m).set_index("observation")["holds"]
    assert obs.iloc[0] is False or obs.iloc[0] == False  # noqa: E712
    small = paper.transfer().loc[["baseline", "hinton", "mean"], ["baseline", "hinton", "mean", "teacher"]]
    assert pages.transfer_observations(small)["holds"].isna().all()  # AT, BSS, FitNet... not run: cannot check


def test_transfer_difference_and_figures():
    theirs = paper.transfer()
    ours = theirs.loc[["baseline", "at", "mean"], ["baseline", "at", "mean", "teacher"]] + 1.0
    d = plots.transfer_difference(ours, theirs)
    assert d.shape == (3, 4) and (d == 1.0).all().all()
    assert isinstance(plots.plot_transfer({"kdnb": ours, "paper": theirs}, d), Figure)
    long = plots.transfer_long({"kdnb": ours, "paper": theirs})
    assert set(long["source"]) >= {"baseline", "at", "teacher"} and "mean" not in set(long["target"])
    assert isinstance(plots.transfer_grid(long), Figure)
    assert "n/a" in plots.style_transfer(ours.where(ours < 90)).to_html()


def test_banner_and_params():
    assert "not results" in pages.banner("smoke") and pages.banner("paper") == ""
    assert 'class="kdnb-banner"' in pages.banner("mini") and "not the paper" in pages.banner("other")
    p, dropped = pages.params_from({"methods": ["baseline", "no_such_method"], "store": "x", "train": True})
    assert p.methods == ["baseline"] and dropped == ["no_such_method"]
    assert "no_such_method" in pages.setting_text(p, dropped)


def test_teacher_grids_have_the_teachers_run_ids(tmp_path):
    from kdnb.study import Params, Study

    p = Params(store=str(tmp_path), dataset="synthetic", students=["resnet8"], teachers={"resnet8": "resnet14"},
               methods=["baseline", "hinton"], seeds=[0, 1], teacher_seeds=[0, 3], epochs=2, teacher_epochs=3,
               noise=[0.0, 0.4])
    expected = {c.run_id for cond in Study(p).conditions for cs in cond.teachers.values() for c in cs}
    got = {c.run_id for tp in pages.teacher_params(p) for cond in Study(tp).conditions for c in cond.students}
    assert got == expected and len(got) == 4
