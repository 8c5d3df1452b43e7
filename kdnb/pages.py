"""What a page of the book says: its parameters, the profile banner, what it ran, the prose that reads
its numbers, and the blocks of tables that the results pages share. The numbers come from
``kdnb.analysis``, the styling from ``kdnb.tables``; nothing here draws a figure.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from IPython.display import HTML, Markdown

from kdnb import paper, tables
from kdnb.analysis import ORDER, column_label, gains, label, paper_summary, ranked, students, wide
from kdnb.methods import METHODS
from kdnb.study import Params, teacher_grids, transfer_path

PARAM_KEYS = tuple(f.name for f in dataclasses.fields(Params))
TEACHER_SECTIONS = ("generalization", "label_noise", "imbalance", "transferability")  # every section with students


# ---------------------------------------------------------------------------------------------
# Parameters, banner, setting


def params_from(ns: Mapping[str, Any]) -> tuple[Params, list[str]]:
    """Params from a notebook's variables (its parameters cell); methods not registered are dropped.

    Returns the Params and the dropped method names, which a page lists as not run.
    """
    d = copy.deepcopy({k: ns[k] for k in PARAM_KEYS if k in ns})
    if "methods" not in d:  # the default grid's methods
        return Params.from_dict(d), []
    methods = list(d["methods"] or [])
    d["methods"] = [m for m in methods if m in METHODS]
    return Params.from_dict(d), [m for m in methods if m not in METHODS]


def load_params_file(path: str | Path) -> tuple[Params, list[str]]:
    """A params YAML file read like a notebook's parameters (unregistered methods dropped)."""
    d = yaml.safe_load(Path(path).read_text()) or {}
    return params_from(d)


def load_grids(params_dir: str | Path, sections: Sequence[str], companions_only: bool = False,
               **overrides: Any) -> list[Params]:
    """The grids of ``sections`` in a profile's params folder (``section_files``), with ``overrides``
    (store, device, data_root: fields that do not change a run) applied."""
    files = [f for s in sections for f in section_files(params_dir, s, companions_only)]
    return [dataclasses.replace(load_params_file(f)[0], **overrides) for f in files]


def section_files(params_dir: str | Path, section: str, companions_only: bool = False) -> list[Path]:
    """``<section>.yaml`` and its companions ``<section>_*.yaml`` (e.g. the CIFAR-100 grid of Table IV)."""
    d = Path(params_dir)
    main = [d / f"{section}.yaml"] if (d / f"{section}.yaml").is_file() and not companions_only else []
    return main + sorted(d.glob(f"{section}_*.yaml"))


BANNERS = {
    "smoke": "Smoke profile: the numbers on this page are not results. It was executed with the <code>smoke</code> "
             "parameters (tiny synthetic data, one or two epochs) to test the code; this is not the paper's "
             "protocol.",
    "mini": "Mini profile: real CIFAR-10 runs on a reduced protocol (a subset of the training images, a shortened "
            "schedule, one student&ndash;teacher pair, two seeds). This is not the paper's protocol: compare "
            "trends, not values.",
}


def banner(profile: str) -> str:
    """The warning shown on every page of a book not built with the paper profile ('' for paper)."""
    if profile == "paper":
        return ""
    text = BANNERS.get(profile, f"Profile <code>{profile}</code>: not the paper's protocol; compare trends, "
                                "not values.")
    return f'<div class="kdnb-banner">{text}</div>'


def banner_html(profile: str) -> HTML:
    """``banner`` for a notebook's ``display``."""
    return HTML(banner(profile))


def _n(k: int, noun: str) -> str:
    return f"{k} {noun}{'' if k == 1 else 's'}"


def setting_text(p: Params, dropped: list[str] = ()) -> str:
    """One paragraph (markdown) stating what this page ran, from its parameters."""
    label = paper.LABELS.get
    pairs = ", ".join(f"{label(s, s)} ← {label(p.teacher_of(s), p.teacher_of(s))}" for s in p.students)
    per_class = f"the first {p.train_per_class} training images per class" if p.train_per_class else \
        "the full training set"
    test = f"the first {p.test_per_class} test images per class" if p.test_per_class else "the full test set"
    seeds = f"{_n(len(p.seeds), 'seed')} ({', '.join(map(str, p.seeds))})"
    t_ep = p.teacher_epochs or p.epochs
    if any(p.noise):
        per_class += f", labels corrupted with noise rates σ ∈ {{{', '.join(f'{n:g}' for n in p.noise)}}}"
    gammas = [g for g in p.imbalance if g is not None]
    if gammas:
        per_class += (f", made imbalanced with γ ∈ {{{', '.join(f'{g:g}' for g in gammas)}}} (class sizes "
                      f"{p.imbalance_n_max} down to {p.imbalance_n_min})")
    text = (f"**This page ran** profile `{p.profile}` on {label(p.dataset, p.dataset)} with {per_class} and {test}; "
            f"student ← teacher: {pairs}; {_n(p.epochs, 'epoch')} for the students and {t_ep} for the teachers; "
            f"{seeds} per cell, teacher seeds {p.teacher_seeds}; "
            + ("" if p.precision == "fp32" else f"{p.precision} autocast (convolutions and matrix products in "
               f"{p.precision}; weights, batch-norm statistics and loss reductions in fp32); ")
            + f"store `{p.store}`. **The paper** used the full CIFAR training sets, 200 epochs, fp32 and 5 seeds.")
    if dropped:
        text += (" Methods listed in the parameters but not available in this version of kdnb, shown as "
                 f"*not run*: {', '.join(label(m, m) for m in dropped)}.")
    return text


def teachers_text(grids: list[Params], params_dir: str | Path) -> str:
    """What the teachers page ran (markdown): the teachers of its grids (``study.teacher_runs``)."""
    label = paper.LABELS.get
    p = grids[0]
    grids = [t for g in grids for t in (teacher_grids(g) or [g])]
    archs = sorted({s for g in grids for s in g.students})
    conds = sorted({(g.dataset, n, -1.0 if i is None else i) for g in grids for n in g.noise for i in g.imbalance})
    seeds = sorted({s for g in grids for s in g.seeds})
    epochs = sorted({g.epochs for g in grids})
    return (f"**This page ran** profile `{p.profile}`: the teachers of every grid in `{params_dir}` "
            f"({', '.join(label(a, a) for a in archs)}; {len(conds)} data conditions), each a baseline run with "
            f"seeds {seeds} and {', '.join(map(str, epochs))} epoch{'' if epochs == [1] else 's'}; "
            f"store `{p.store}`. **The paper** trained its teachers on the full CIFAR training sets for 200 epochs "
            "with 5 seeds.")


# ---------------------------------------------------------------------------------------------
# Prose that reads the numbers


def _names(methods: Sequence[str]) -> str:
    return ", ".join(label(m) for m in methods) if len(methods) else "none"


def _clearly_above(cell: pd.DataFrame, methods: Sequence[str]) -> list[str] | None:
    """The methods whose mean beats the baseline's by more than 2 standard errors of the difference,
    sqrt(s_m²/n_m + s_b²/n_b): with few seeds a smaller gain is within seed-to-seed noise. None when
    the baseline has fewer than two seeds (no std)."""
    if "baseline" not in cell.index or not cell.loc["baseline", "n"] >= 2:
        return None
    b = cell.loc["baseline"]
    out = []
    for m in methods:
        r = cell.loc[m]
        if r["n"] >= 2 and r["mean"] - b["mean"] > 2 * math.sqrt(r["std"] ** 2 / r["n"] + b["std"] ** 2 / b["n"]):
            out.append(m)
    return out


def teacher_gap(runs: pd.DataFrame, column: str) -> str:
    """Markdown bullets, one per cell of ``column``: the teacher the students learned from, the
    baseline student, the gap between them, and how much of it the best distilled student closed."""
    st = students(runs)
    if st.empty or "teacher_run" not in st:
        return ""
    teacher_acc = runs[runs["role"] == "teacher"].drop_duplicates("run_id").set_index("run_id")["final_acc"]
    by = ["student"] if column == "student" else ["student", column]
    lines = []
    for key, cell in st.groupby(by, dropna=False, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        used = [t for t in cell["teacher_run"].dropna().unique() if t in teacher_acc.index]
        s = cell.groupby("method")["final_acc"].mean()
        if len(used) != 1 or "baseline" not in s:
            continue
        t_acc, base = float(teacher_acc[used[0]]), float(s["baseline"])
        best = s[cell.loc[cell["teacher_run"] == used[0], "method"].unique()].idxmax()
        name = label(key[0]) + (f", {column_label(column, key[1])}" if len(key) > 1 else "")
        lines.append(f"- **{name}**: teacher {t_acc:.2f} %, baseline student {base:.2f} % (gap {t_acc - base:+.2f} "
                     f"points); the best taught student, {label(best)} ({s[best]:.2f} %), closes "
                     f"{s[best] - base:+.2f} of them.")
    return "Teacher and student:\n\n" + "\n".join(lines) if lines else ""


def describe(ours: pd.DataFrame, theirs: pd.DataFrame, column: str) -> str:
    """Markdown bullets, one per column of ours: the best method, who beats the baseline, and how
    that compares with the paper (agreement on the sign of the gain, rank correlation of the means)."""
    lines = []
    for c in wide(ours, column).columns:
        o = ours[ours[column] == c].set_index("method")
        p = theirs[theirs[column] == c].set_index("method") if column in theirs else theirs.iloc[:0]
        if o["mean"].isna().all():
            continue
        best = o["mean"].idxmax()
        text = f"**{column_label(column, c)}**: best here {label(best)} ({o.loc[best, 'mean']:.2f} %)"
        if len(p):
            pb = p["mean"].idxmax()
            text += f", in the paper {label(pb)} ({p.loc[pb, 'mean']:.2f} %)"
        g = gains(ours[ours[column] == c], column).set_index("method")["gain"]
        if len(g):
            up = [m for m in ORDER if m in g and g[m] > 0]
            text += f". Above the baseline here: {len(up)} of {len(g)} methods ({_names(up)})"
            clear = _clearly_above(o, up)
            if clear is not None:
                text += (f"; by more than twice the standard error of the difference: {len(clear)} "
                         f"({_names(clear)})")
            if len(p):
                pg = gains(theirs[theirs[column] == c], column).set_index("method")["gain"]
                common = [m for m in g.index if m in pg.index]
                agree = [m for m in common if (g[m] > 0) == (pg[m] > 0)]
                text += (f"; the sign of the gain over the baseline agrees with the paper for {len(agree)} of "
                         f"{len(common)} methods")
                disagree = [m for m in ORDER if m in common and m not in agree]
                if disagree:
                    text += f" (not for {_names(disagree)})"
        common = [m for m in o.index if m in p.index and pd.notna(o.loc[m, "mean"])]
        if len(common) >= 4:
            rho = o.loc[common, "mean"].rank().corr(p.loc[common, "mean"].rank())
            text += (f". Rank correlation of the method means with the paper: {rho:+.2f} over {len(common)} methods"
                     if pd.notna(rho) else ". All methods tie here, so their ranking cannot be compared")
        std = o["std"].dropna()
        if len(std):
            text += f". Typical seed std here: {std.median():.2f} points"
        lines.append(f"- {text}.")
    return "\n".join(lines) if lines else "No finished runs to describe."


def describe_teachers(cmp: pd.DataFrame) -> str:
    """Markdown: how many teachers ran, and how far they are from the paper's where it has the same one."""
    ran = cmp.dropna(subset=["acc"])
    both = ran.dropna(subset=["paper"])
    text = f"{len(ran)} teacher configuration{'s' if len(ran) != 1 else ''} ran on this page"
    if len(ran):
        text += f", with final accuracies from {ran['acc'].min():.2f} % to {ran['acc'].max():.2f} %"
    if len(both):
        d = both["diff"]
        text += (f". {len(both)} of them match{'es' if len(both) == 1 else ''} a row of the paper's Table II; "
                 + (f"kdnb − paper is {d.iloc[0]:+.2f} points" if len(both) == 1 else
                    f"kdnb − paper ranges from {d.min():+.2f} to {d.max():+.2f} points (mean {d.mean():+.2f})"))
    else:
        text += ". None of them is a configuration of the paper's Table II, so there is nothing to compare"
    missing = cmp[cmp["acc"].isna()]
    if len(missing):
        text += f". {len(missing)} of the paper's teachers are not run by this profile"
    return text + "."


def transfer_text(student: str, rec: Mapping[str, Any], store: str | Path) -> str:
    """What the transfer matrix of ``student`` attacked and which code made its record."""
    st, wall = rec["settings"], rec["wall_s"]
    n_models = sum(len(v) for v in rec["sources"].values())
    took = f"{wall:.0f} s" if wall < 120 else f"{wall / 60:.0f} min"
    text = (f"**{label(student)}**: {rec['n_images']} test images, PGD ε = {st['eps']}, step {st['step']}, "
            f"{st['steps']} steps, seed {st['seed']}; {n_models} student models and the teacher; matrix record "
            f"`{transfer_path(store, rec['key'])}`, computed in {took} on {rec['device']} by kdnb "
            f"`{rec['code_version']}` ({rec['created'][:10]})")
    if rec.get("weights_checked"):
        return text + "; the weights it attacked are those in the store."
    if "weights" in rec:
        return text + "; the weights it attacked are not in this store (records only), so they cannot be checked."
    return text + ("; it was made before transfer records named the weights they attacked, and the weights are "
                   "not in this store, so it is matched by its run ids and attack settings.")


def rankings_text(mat: pd.DataFrame, student: str) -> str:
    """Markdown: the teacher column and the mean row of a matrix, highest first."""
    methods = [m for m in paper.TRANSFER_SOURCES if m in mat.index]
    parts = []
    if "teacher" in mat.columns:
        parts.append(f"- examples crafted on the teacher, by target: {ranked(mat.loc[methods, 'teacher'].dropna())}")
    if "mean" in mat.index:
        means = ranked(mat.loc["mean", methods].dropna())
        parts.append(f"- examples crafted on each method, mean over targets: {means}")
    return f"The rankings behind them, kdnb ({label(student)}):\n\n" + "\n".join(parts)


def agreement_text(obs: pd.DataFrame, student: str) -> str:
    """How many of the paper's observations (``analysis.observations_compared``) agree here."""
    checked = obs.dropna(subset=["kdnb"])
    agree = int((checked["kdnb"] == checked["paper"]).sum())
    rest = len(obs) - len(checked)
    return (f"{label(student)}: {agree} of {len(checked)} checkable observations agree with the paper"
            + (f"; {rest} cannot be checked (methods not run)." if rest else "."))


# ---------------------------------------------------------------------------------------------
# Blocks of the results pages: the paper's table, then per group of runs kdnb's table, kdnb beside the
# paper, and the prose

GENERALIZATION_TABLES = {"cifar10": ("III", paper.STUDENTS), "cifar100": ("IV", paper.STUDENTS_C100)}
CONDITION_TABLES = {"noise": ("V", paper.NOISE_RATES), "imbalance": ("VI", paper.IMBALANCE_RATES)}


def comparison(ours: pd.DataFrame, theirs: pd.DataFrame, runs: pd.DataFrame, column: str, columns: list[Any],
               caption: str, side_caption: str, below_baseline: bool = False, gain_caption: str = "") -> list[Any]:
    """The headline first: kdnb's gains over the baseline (paired per seed, 95 % CI) beside the paper's; then
    kdnb's table, kdnb beside the paper, what the numbers say, and the teacher-student gap."""
    from kdnb.analysis import paired_differences

    paired = paired_differences(runs, by=[column])
    ran = set(paired[column].dropna()) if not paired.empty else set()
    return [tables.style_gains(paired, theirs, column, [c for c in columns if c in ran] or columns,
                               caption=gain_caption or
                               "gain over the baseline (points): kdnb, mean of the paired per-seed differences "
                               "[95 % CI], beside the paper's"),
            Markdown("The absolute accuracies, and kdnb beside the paper cell by cell:"),
            tables.style_table(ours, column, columns=columns, below_baseline=below_baseline, caption=caption),
            tables.side_by_side(ours, theirs, column, caption=side_caption),
            Markdown(describe(ours, theirs, column)), Markdown(teacher_gap(runs, column))]


def generalization_tables(runs: pd.DataFrame, ours: pd.DataFrame, dataset: str) -> list[Any]:
    """Table III (``dataset`` cifar10) or IV (cifar100): the paper's, then kdnb's for each data set of
    ``ours`` (``summarize`` by data set and student) of that kind."""
    tab, archs = GENERALIZATION_TABLES[dataset]
    theirs = paper_summary(paper.generalization(dataset))
    out: list[Any] = [tables.details(f"The paper's Table {tab}", tables.style_table(
        theirs, "student", columns=list(archs), caption=f"paper, Table {tab}"))]
    shown = [d for d in ours["dataset"].unique() if (d == "cifar100") == (dataset == "cifar100")]
    if not shown:
        out.append(Markdown(f"{label(dataset)} is not part of this profile: *not run*."))
    for d in shown:
        o = ours[ours["dataset"] == d]
        cols = list(archs) + sorted(set(o["student"]) - set(archs))
        out += comparison(o, theirs, runs[runs["dataset"] == d], "student", cols,
                          f"kdnb, {label(d)}: final test accuracy (%), mean ± std over seeds; best of each column "
                          "in bold", f"kdnb ({label(d)}) beside the paper's Table {tab}, Δ = kdnb − paper",
                          gain_caption=f"kdnb ({label(d)}): gain over the baseline of the same architecture "
                          f"(points; mean of the paired per-seed differences [95 % CI]) beside the paper's "
                          f"Table {tab} gain for that architecture")
    return out


def condition_tables(runs: pd.DataFrame, ours: pd.DataFrame, theirs: pd.DataFrame, column: str,
                     students: Sequence[str]) -> list[Any]:
    """Table V (``column`` noise) or VI (imbalance): the paper's (WRN-16-2 ← WRN-40-2), then kdnb's for
    each of ``students`` from ``ours`` (``summarize`` by student and ``column``)."""
    tab, rates = CONDITION_TABLES[column]
    out: list[Any] = [tables.details(f"The paper's Table {tab} (WRN-16-2 ← WRN-40-2, CIFAR-10)", tables.style_table(
        theirs, column, below_baseline=True, caption=f"paper, Table {tab}"))]
    for s in students:
        o = ours[ours["student"] == s]
        cols = sorted(set(rates) | set(o[column].dropna()))
        out += comparison(o, theirs, runs[(runs["student"] == s) | (runs["role"] == "teacher")], column, cols,
                          f"kdnb, {label(s)}: final test accuracy (%), mean ± std over seeds",
                          f"kdnb ({label(s)}) beside the paper's Table {tab} (WRN-16-2), Δ = kdnb − paper",
                          below_baseline=True,
                          gain_caption=f"kdnb ({label(s)}): gain over its baseline (points; mean of the paired "
                          f"per-seed differences [95 % CI]) beside the paper's Table {tab} gain, which is "
                          + ("the same architecture" if s == "wrn16_2" else
                             f"WRN-16-2, not {label(s)}: compare how the gain moves across the columns, not "
                             "the cells"))
    return out


# ---------------------------------------------------------------------------------------------
# Does it reproduce?


def claims_summary(grids: Sequence[Params], runs: pd.DataFrame, counts: Mapping[str, int]) -> str:
    """The paragraph above the claims table (markdown): what was run, at what scale, how many claims hold."""
    st = students(runs)
    total = sum(counts.values())
    p = grids[0]
    archs = sorted(set(st["student"]), key=lambda s: (paper.STUDENTS.index(s) if s in paper.STUDENTS else 99, s))
    pairs = ", ".join(f"{label(s)} ← {label(p.teacher_of(s))}" for s in archs) or "none"
    epochs = sorted({g.epochs for g in grids})
    seeds = sorted(set(st["seed"])) if not st.empty else []
    conds = sorted({(float(n), -1.0 if pd.isna(i) else float(i)) for n, i in zip(st["noise"], st["imbalance"],
                                                                                   strict=True)})
    images = f"the first {p.train_per_class} training images per class" if p.train_per_class else \
        "all training images"
    hours = st["wall_s"].sum() / 3600 if "wall_s" in st else math.nan
    tested = total - counts.get("not testable", 0)
    return (f"**What was run:** profile `{p.profile}`, {_n(len(st), 'finished student run')} "
            f"({hours:.1f} h of training) on {label(p.dataset)} with {images}: {pairs}; "
            f"{', '.join(map(str, epochs))} epochs per student (the paper: 200), seeds {seeds} "
            f"({len(seeds)} per cell; the paper: 5), {_n(len(conds), 'data condition')}"
            + (f" ({', '.join(_condition_name(n, g) for n, g in conds)})" if conds else "")
            + f". **Of the paper's {total} findings listed here**, "
            f"{tested} can be tested with this profile: **{counts.get('agrees', 0)} agree**, "
            f"{counts.get('disagrees', 0)} disagree and {counts.get('inconclusive', 0)} are inconclusive "
            f"(within the noise); {counts.get('not testable', 0)} are not testable with this profile "
            "(models, noise rates or seeds it does not run).")


def _condition_name(noise: float, gamma: float) -> str:
    return f"σ = {noise:g}" if noise else f"γ = {gamma:g}" if gamma >= 0 else "clean"


def verdict_rule_text(n_seeds: int) -> str:
    """How the verdicts are computed, and what ``n_seeds`` seeds can show (markdown)."""
    from kdnb.analysis import SIMILAR_POINTS, t975

    rule = ("**The rule.** Each finding is a contrast of test accuracies in percentage points: a gain (method − "
            "baseline in the same cell), a difference between methods in the same cell, or a trend (the gain "
            "under label noise or imbalance minus the gain on clean data, on one architecture). kdnb computes it "
            "per seed: the baseline and each method share a seed's initial weights and batches (a paired design), "
            "so each seed gives one paired difference; across seeds, the mean and its 95 % Student-t interval. "
            "For a finding that expects a positive contrast the verdict is *agrees* when the interval lies above "
            "0, *disagrees* when it lies below 0, *inconclusive* otherwise (and the mirror for a negative one); "
            f"for *similar* or *comparable*, *agrees* when the interval lies within ±{SIMILAR_POINTS:g} point, "
            "*disagrees* when it lies wholly outside, *inconclusive* otherwise. *Not testable*: the profile "
            "lacks a cell the contrast needs (a model, a noise rate) or has fewer than two seeds. The paper's "
            "evidence is the same contrast on its means (5 seeds; its tables give no per-seed values, so no "
            "interval). Where the paper has no cell of kdnb's architecture (Tables V and VI are WRN-16-2), "
            "both sides are trends within their own architecture, never one cell against the other. The "
            "transfer findings (§IV-D) are orderings on one matrix per side: *agrees* when the ordering holds "
            "on kdnb's matrix, with no interval.")
    if n_seeds >= 2:
        t = t975(n_seeds - 1)
        k = t / math.sqrt(n_seeds)
        rule += (f" **What {n_seeds} seeds can show:** the interval's half-width is {t:.2f} / √{n_seeds} = "
                 f"{k:.2f} times the seeds' standard deviation of the paired difference"
                 + (f"; with two seeds that is {t / 2:.2f} × the gap between the two seeds' differences, so a "
                    "contrast is resolved only when both seeds agree on it to within a fraction of its size (as "
                    "for large effects), while the paper's typical gains of 0.3-2 points stay inconclusive unless "
                    "the seeds agree almost exactly. Two seeds cannot estimate the seed-to-seed spread itself "
                    "(one degree of freedom): an *agrees* or *disagrees* is strong evidence only when the "
                    "interval is far from its threshold." if n_seeds == 2 else "."))
    return rule


# ---------------------------------------------------------------------------------------------
# Cells of another store at the paper's protocol (the paper profile's generalization grid, shown on the
# default book's generalization page)


def _machine(segments: Sequence[Mapping[str, Any]], record: Mapping[str, Any] | None = None) -> str:
    """Where a run was trained: one ``cpu (threads), epochs a-b`` per segment, or the record's device."""
    parts = []
    for s in segments or []:
        where = s.get("cpu") if s.get("device", "cpu") == "cpu" else s.get("device")
        threads = f", {s['threads']} thread{'' if s['threads'] == 1 else 's'}" if s.get("threads") else ""
        parts.append(f"{where or s.get('device', '?')}{threads}: epochs {s.get('from_epoch', '?')}–"
                     f"{s.get('to_epoch', '?')}")
    if parts:
        return "; ".join(parts)
    env = (record or {}).get("environment") or {}
    return ", ".join(str(v) for v in (env.get("cpu") or env.get("processor"), (record or {}).get("device")) if v)


def protocol_cells(p: Params) -> pd.DataFrame:
    """The student runs of grid ``p`` that its store holds, finished or in progress: one row each with
    student, method, seed, state (done or in progress), epoch, epochs, acc (final accuracy, or the test
    accuracy of the last epoch so far), wall_s and machine (from the record's or checkpoint's segments)."""
    from kdnb import store as store_mod
    from kdnb.study import Study

    cols = ["run_id", "student", "method", "seed", "state", "epoch", "epochs", "acc", "wall_s", "machine"]
    study = Study(p)
    st = study.status()
    rows = []
    for r in st[st["role"] == "student"].dropna(subset=["run_id"]).itertuples(index=False):
        rec = study.store.read_or_none(r.run_id)
        if rec is not None and rec.get("status") == "done":
            rows.append(dict(run_id=r.run_id, student=r.student, method=r.method, seed=r.seed, state="done",
                             epoch=p.epochs, epochs=p.epochs, acc=rec["final_acc"], wall_s=rec.get("wall_s"),
                             machine=_machine(rec.get("segments", []), rec)))
            continue
        ck_path = study.store.checkpoint_path(r.run_id)
        if not ck_path.is_file():
            continue
        try:
            ck = store_mod.safe_torch_load(ck_path)
        except Exception:  # a checkpoint being written or damaged: show nothing rather than fail the page
            continue
        hist = [h for h in ck.get("history", []) if "test_acc" in h]
        segs = ck.get("segments", [])
        rows.append(dict(run_id=r.run_id, student=r.student, method=r.method, seed=r.seed, state="in progress",
                         epoch=int(ck.get("epoch", 0)), epochs=p.epochs,
                         acc=hist[-1]["test_acc"] if hist else math.nan,
                         wall_s=ck.get("wall_s", sum(s.get("wall_s", 0.0) for s in segs)), machine=_machine(segs)))
    return pd.DataFrame(rows, columns=cols)


def protocol_text(cells: pd.DataFrame, p: Params) -> str:
    """What the paper-protocol store holds (markdown), one clause per run."""
    if cells.empty:
        return (f"The paper-protocol store `{p.store}` holds no run of this grid yet, finished or in progress.")
    parts = []
    for r in cells.itertuples(index=False):
        what = f"{label(r.method)} {label(r.student)}, seed {r.seed}"
        hours = f"{r.wall_s / 3600:.1f} h" if pd.notna(r.wall_s) else "unknown time"
        if r.state == "done":
            parts.append(f"{what}: {r.acc:.2f} % after {r.epochs} epochs, {hours} on {r.machine or 'unknown'}")
        else:
            acc = f"test accuracy at epoch {r.epoch} {r.acc:.2f} %" if pd.notna(r.acc) else "no epoch finished"
            parts.append(f"{what}: *in progress*, epoch {r.epoch} of {r.epochs}, {acc}, so far {hours} on "
                         f"{r.machine or 'unknown'}")
    return (f"**At the paper's protocol** (profile `{p.profile}`: all {p.dataset.upper().replace('CIFAR', 'CIFAR-')} "
            f"training images, {p.epochs} epochs, batch {p.batch_size}, {p.precision}), store `{p.store}` holds "
            f"{_n(len(cells), 'run')}: " + "; ".join(parts) + ".")


# ---------------------------------------------------------------------------------------------
# Ablations of the generalization grid (params/<profile>/ablations/*.yaml)

# (label, ablation file, its method, the reference: "main" (the page's grid) or a file, the reference's
# method, what the contrast asks)
ABLATIONS = (
    ("BSS, standard scheme − official recipe", "bss_standard.yaml", "bss", "main", "bss",
     "does BSS's recipe matter"),
    ("Baseline, 12 − 8 epochs (fp32)", "one_schedule_control.yaml", "baseline", "baseline_fp32.yaml", "baseline",
     "what ONE's 12-epoch schedule alone gives the baseline"),
)


def ablations(params_dir: str | Path, runs: pd.DataFrame, store: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The ablations of ``ABLATIONS`` found in ``<params_dir>/ablations``, each as paired differences per seed
    against its reference (``analysis.paired_between``), plus ONE − baseline of the page's grid ``runs`` for
    context; and one line per ablation or run that is not there (never an error)."""
    from kdnb.analysis import paired_between
    from kdnb.study import Study

    folder, rows, absent = Path(params_dir) / "ablations", [], []

    def grid_runs(name: str) -> pd.DataFrame | None:
        path = folder / name
        if not path.is_file():
            absent.append(f"`{path}` is not in this profile")
            return None
        g = load_params_file(path)[0]
        g = dataclasses.replace(g, store=store) if store else g
        study = Study(g)
        st = study.status()
        lack = st[(st["role"] == "student") & (st["state"] != "done")]
        if len(lack):
            absent.append(f"{name}: {_n(len(lack), 'run')} not in the store yet ("
                          + ", ".join(f"{label(m)} seed {s}: {state}" for m, s, state in
                                      zip(lack["method"], lack["seed"], lack["state"], strict=True)) + ")")
        return study.results()

    def cell(df: pd.DataFrame, method: str) -> pd.DataFrame:
        st = students(df)
        return st[(st["method"] == method) & (st["noise"] == 0) & st["imbalance"].isna()] if not st.empty else st

    for name, file, method, ref, ref_method, question in ABLATIONS:
        a = grid_runs(file)
        b = runs if ref == "main" else grid_runs(ref)
        if a is None or b is None:
            continue
        rows.append({"ablation": name, "question": question, **paired_between(cell(a, method), cell(b, ref_method))})
    rows.append({"ablation": "ONE − baseline, main grid", "question": "ONE's gain, for context",
                 **paired_between(cell(runs, "one"), cell(runs, "baseline"))})
    return pd.DataFrame(rows), list(dict.fromkeys(absent))


def ablations_text(abl: pd.DataFrame, absent: Sequence[str]) -> str:
    """What the ablations show (markdown), computed from ``ablations``."""
    def iv(r: Mapping[str, Any]) -> str:
        if not r["n"]:
            return "no pair of seeds yet"
        ci = "" if pd.isna(r["lo"]) else f" (95 % CI {r['lo']:+.2f} to {r['hi']:+.2f})"
        return f"{r['mean']:+.2f} points{ci} over {_n(int(r['n']), 'seed')}"

    by = {r["ablation"]: r for r in abl.to_dict("records")}
    out = []
    bss = by.get(ABLATIONS[0][0])
    if bss is not None:
        out.append(f"BSS under the standard scheme instead of its official recipe: {iv(bss)}.")
    longer, one = by.get(ABLATIONS[1][0]), by.get("ONE − baseline, main grid")
    if longer is not None:
        text = f"Training the baseline for ONE's 12 epochs instead of 8: {iv(longer)}"
        if one is not None and one["n"] and longer["n"] and one["mean"]:
            share = longer["mean"] / one["mean"]
            text += (f"; ONE's own gain over the 8-epoch baseline is {iv(one)}, so the longer schedule alone "
                     f"gives {share:.0%} of it (the two are in different precisions, fp32 and bf16)")
        out.append(text + ".")
    if absent:
        out.append("Not shown yet: " + "; ".join(absent) + ".")
    return " ".join(out) or "No ablation is defined for this profile."


def protocol_block(path: str | Path = "params/paper/generalization.yaml") -> list[Any]:
    """The generalization page's block of runs at the paper's protocol: what the store of the grid at ``path``
    holds, and the table beside the paper (nothing but a line when the file or its runs are absent)."""
    from kdnb.analysis import against_paper

    if not Path(path).is_file():
        return [Markdown(f"No paper-protocol grid `{path}` in this checkout.")]
    grid = load_params_file(path)[0]
    cells = against_paper(protocol_cells(grid), grid.dataset if grid.dataset in ("cifar10", "cifar100") else
                          "cifar10")
    return [Markdown(protocol_text(cells, grid)), *([tables.style_protocol(cells)] if len(cells) else [])]
