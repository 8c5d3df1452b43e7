"""What a page of the book says: its parameters, the profile banner with the build's headline numbers,
what it ran and on which machines, the prose that reads its numbers, and the blocks of tables that the
results pages share. The numbers come from ``kdnb.report.analysis``, the styling from ``kdnb.report.tables``; nothing
here draws a figure.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from IPython.display import HTML, Markdown

from kdnb import store as store_mod
from kdnb.data import NUM_CLASSES, imbalance_counts
from kdnb.methods import METHODS
from kdnb.report import paper, tables
from kdnb.report.analysis import (
    ORDER,
    against_paper,
    balanced,
    class_groups,
    column_label,
    condition_label,
    gains,
    images_text,
    label,
    memorisation_clause,
    minority_classes,
    model_order,
    names,
    paired_between,
    paired_differences,
    paper_summary,
    ranked,
    run_costs,
    students,
    summarize,
    wide,
)
from kdnb.report.grids import PARAM_KEYS, load_grids, load_params_file, params_from, section_files  # noqa: F401
from kdnb.study import (
    Params,
    Study,
    duration,
    teacher_grids,
    transfer_path,
)

TEACHER_SECTIONS = ("generalization", "label_noise", "imbalance", "transferability")  # every section with students


# ---------------------------------------------------------------------------------------------
# The banner and the build's headline numbers

BANNERS = {
    "smoke": "Smoke profile: the numbers on this page are not results. It was executed with the <code>smoke</code> "
             "parameters (tiny synthetic data, one or two epochs) to test the code; this is not the paper's "
             "protocol.",
    "mini": "Mini profile: real CIFAR-10 runs on a reduced protocol (a subset of the training images, a shortened "
            "schedule, one student&ndash;teacher pair, two seeds). This is not the paper's protocol: compare "
            "trends, not values.",
}


def banner(profile: str, headline: str = "") -> str:
    """The box at the top of a page: outside the paper profile a warning that the numbers are not the paper's
    protocol, and the build's ``headline`` numbers (``headline``) where given; '' for the paper profile
    without a headline."""
    if profile == "paper":
        return f'<div class="kdnb-headline">{headline}</div>' if headline else ""
    text = BANNERS.get(profile, f"Profile <code>{profile}</code>: not the paper's protocol; compare trends, "
                                "not values.")
    return _banner_box(text, headline)


def _banner_box(text: str, headline: str) -> str:
    return f'<div class="kdnb-banner">{text}' + (f"<br>{headline}" if headline else "") + "</div>"


def stores_banner(profiles: Sequence[str], headline: str = "") -> str:
    """``banner`` of a page that reads several committed stores (the findings), most faithful first."""
    names = ", ".join(f"<code>{p}</code>" for p in profiles)
    text = (f"Read from the committed stores {names}, each finding from the most faithful store that holds its "
            "cells and named beside it; every store but <code>paper</code> is a reduced protocol: compare trends, "
            "not values.")
    return _banner_box(text, headline)


def banner_html(profile: str, headline: str = "") -> HTML:
    """``banner`` for a notebook's ``display``."""
    return HTML(banner(profile, headline))


def headline(params_dir: str | Path = "", store: str = "") -> str:
    """The build's headline numbers for ``banner``: ``kdnb.report.claims.headline`` of the checkout the book is
    built in (every committed store; the arguments are kept for the pages that pass them)."""
    from kdnb.report import claims

    return claims.headline(Path.cwd())


# ---------------------------------------------------------------------------------------------
# What a page ran, where and for how long


def _trained_epochs(history: Any) -> int | None:
    """The epochs of a run's final training stage as its history records them (None without a history)."""
    hist = [h for h in history if "epoch" in h] if isinstance(history, list) else []
    if not hist:
        return None
    last = hist[-1].get("stage")
    return max(int(h["epoch"]) for h in hist if h.get("stage") == last)


def _segments_cpu(segments: Sequence[Mapping[str, Any]]) -> str | None:
    """The CPU models a run's training segments name, in order, joined by ' + '; None when none does."""
    cpus = list(dict.fromkeys(s["cpu"] for s in segments or [] if s.get("cpu") and s.get("device", "cpu") == "cpu"))
    return " + ".join(cpus) or None


def with_provenance(runs: pd.DataFrame, stores: Sequence[str | Path]) -> pd.DataFrame:
    """``runs`` as they trained, from their records in ``stores``: ``epochs``, the epochs of each run's final
    training stage as its history has them (ONE trains its longer schedule, 12 epochs where mini's config says
    8; FitNet's and FSP's first stage comes before it), and ``cpu``, the CPU model from the record's training
    segments where its environment lacks it."""
    if runs.empty or "run_id" not in runs:
        return runs
    found = {}
    for st in [store_mod.Store(s) for s in stores]:
        for rid in runs["run_id"]:
            if rid not in found:
                rec = st.read_or_none(rid)
                if rec is not None:
                    found[rid] = rec
    out = runs.copy()
    epochs = [_trained_epochs((found.get(r) or {}).get("history")) for r in out["run_id"]]
    out["epochs"] = [e if e is not None else old for e, old in
                     zip(epochs, out["epochs"] if "epochs" in out else [None] * len(out), strict=True)]
    cpu = out["cpu"] if "cpu" in out else pd.Series([None] * len(out), index=out.index)
    out["cpu"] = [c if isinstance(c, str) and c else _segments_cpu((found.get(r) or {}).get("segments"))
                  for r, c in zip(out["run_id"], cpu, strict=True)]
    return out


def regime(runs: pd.DataFrame) -> str:
    """``1,000 training images per class, 8 epochs (ONE 12), seeds 0, 1``: the regime of the finished student
    runs in ``runs`` (``with_provenance``'s trained epochs); '' without any."""
    st = students(runs)
    if st.empty:
        return ""
    images = " / ".join(dict.fromkeys(
        images_text(r.get("train_per_class"), r.get("imbalance"), r.get("imbalance_n_max"), r.get("imbalance_n_min"))
        for r in st.to_dict("records")))
    by_method = st.dropna(subset=["epochs"]).groupby("method")["epochs"].max().astype(int)
    text = images
    if len(by_method):
        common = int(by_method.mode().max())
        other = [f"{label(m)} {e}" for m, e in by_method.items() if e != common]
        text += f", {common} epochs" + (f" ({', '.join(other)})" if other else "")
    seeds = sorted({int(x) for x in st["seed"]})
    return text + f", seed{'' if len(seeds) == 1 else 's'} {', '.join(map(str, seeds))}"


POOLED = "the seed variance pooled over the methods of the cell"  # analysis.pooled_gains

PAPER_REGIME = {"cifar10": "5,000 training images per class, 200 epochs, 5 seeds",
                "cifar100": "500 training images per class, 200 epochs, 5 seeds",
                "imbalance": "class sizes 5,000 → 250, 200 epochs, 5 seeds"}  # Table VI, CIFAR-10


def section_grids(params_dir: str | Path, sections: Sequence[str], page: Params) -> list[Params]:
    """The grids of ``sections`` in ``params_dir`` with ``page``'s device and data root; those of ``page``'s
    profile in ``page``'s store too (a test may redirect it), the others (``kdnb book --profile auto`` mixes
    profiles in one folder) in their own."""
    grids = load_grids(params_dir, sections, device=page.device, data_root=page.data_root)
    return [dataclasses.replace(g, store=page.store) if g.profile == page.profile else g for g in grids]


def _n(k: int, noun: str) -> str:
    return f"{k} {noun}{'' if k == 1 else 's'}"


def _rates(symbol: str, values: Sequence[float]) -> str:
    return f"{symbol} ∈ {{{', '.join(f'{v:g}' for v in values)}}}"


def setting_text(p: Params, dropped: list[str] = ()) -> str:
    """One paragraph (markdown) stating what this page ran, from its parameters."""
    pairs = ", ".join(f"{label(s)} ← {label(p.teacher_of(s))}" for s in p.students)
    data = f"the first {p.train_per_class} training images per class" if p.train_per_class else \
        "the full training set"
    test = f"the first {p.test_per_class} test images per class" if p.test_per_class else "the full test set"
    if any(p.noise):
        data += f", labels corrupted with noise rates {_rates('σ', p.noise)}"
    gammas = [g for g in p.imbalance if g is not None]
    if gammas:
        data += f", made imbalanced with {_rates('γ', gammas)} (class sizes {p.imbalance_n_max} down to " \
                f"{p.imbalance_n_min})"
    text = (f"**This page ran** profile `{p.profile}` on {label(p.dataset)} with {data} and {test}; "
            f"student ← teacher: {pairs}; {_n(p.epochs, 'epoch')} for the students and "
            f"{p.teacher_epochs or p.epochs} for the teachers; {_n(len(p.seeds), 'seed')} "
            f"({', '.join(map(str, p.seeds))}) per cell, teacher seeds {p.teacher_seeds}; "
            + ("" if p.precision == "fp32" else f"{p.precision} autocast (convolutions and matrix products in "
               f"{p.precision}; weights, batch-norm statistics and loss reductions in fp32); ")
            + f"store `{p.store}`. **The paper** used the full CIFAR training sets, 200 epochs, fp32 and 5 seeds.")
    if dropped:
        text += (" Methods listed in the parameters but not available in this version of kdnb, shown as "
                 f"*not run*: {names(dropped)}.")
    return text


def teachers_text(grids: list[Params], params_dir: str | Path) -> str:
    """What the teachers page ran (markdown): the teachers of its grids (``study.teacher_runs``)."""
    p = grids[0]
    grids = [t for g in grids for t in (teacher_grids(g) or [g])]
    archs = sorted({s for g in grids for s in g.students}, key=model_order)
    conds = {(g.dataset, n, -1.0 if i is None else i) for g in grids for n in g.noise for i in g.imbalance}
    seeds = sorted({s for g in grids for s in g.seeds})
    epochs = sorted({g.epochs for g in grids})
    return (f"**This page ran** profile `{p.profile}`: the teachers of every grid in `{params_dir}` "
            f"({names(archs)}; {_n(len(conds), 'data condition')}), each a baseline run with "
            f"seeds {seeds} and {', '.join(map(str, epochs))} epoch{'' if epochs == [1] else 's'}; "
            f"store `{p.store}`. **The paper** trained its teachers on the full CIFAR training sets for 200 epochs "
            "with 5 seeds.")


HEADLINE = {"table": "the best-epoch accuracy (`best_acc`) is in the companion table folded under it",
            "column": "the best-epoch accuracy (`best_acc`) is in the column beside it",
            "none": "the findings never use the best-epoch accuracy (`best_acc`)"}


def provenance(runs: pd.DataFrame, best_in: str = "table") -> str:
    """One paragraph (markdown) for a block of tables: the finished runs behind it, the machines they trained
    on and in which precision (the records' device, CPU model and precision), their training wall time in
    total and per run, and which accuracy is the headline: the final epoch's, with the best epoch's shown
    too (``best_in``: "table" or "column"; "none" for the findings), which picks an epoch on the test set
    and so flatters."""
    c = run_costs(runs)
    if not c["n"]:
        return "No finished runs behind these tables."
    where, precision = (", ".join(f"{k}: {_n(n, 'run')}" if len(d) > 1 else k for k, n in d.items())
                        for d in (c["machines"], c["precisions"]))
    time = "no training time recorded" if math.isnan(c["total_s"]) else \
        f"{duration(c['total_s'])} of training in total, median {duration(c['median_s'])} per run"
    return (f"**Runs behind these tables:** {_n(c['n'], 'finished run')} on {where}, in "
            f"{precision or 'a precision not recorded'}; {time}. "
            f"**The headline number is the final-epoch test accuracy** (`final_acc`); {HEADLINE[best_in]} "
            "(the highest test accuracy of any epoch: it picks the epoch on the test set, so it flatters).")


# ---------------------------------------------------------------------------------------------
# Prose that reads the numbers


def _resolved_above(paired: pd.DataFrame, methods: Sequence[str]) -> list[str] | None:
    """The methods whose 95 % interval of the gain over the baseline lies above zero (``paired``:
    ``analysis.paired_differences`` rows of one column, by method); None when no gain has an interval."""
    rows = paired.set_index("method") if len(paired) else paired
    if not len(rows) or not rows["lo"].notna().any():
        return None
    return [m for m in methods if m in rows.index and rows.loc[m, "lo"] > 0]


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
        gain = s[best] - base  # past the gap, the student outdoes its teacher (the paper's Table V has such cells)
        did = f"closes {gain:+.2f} of them" if gain <= t_acc - base else \
            f"is {gain:+.2f} over the baseline and {s[best] - t_acc:+.2f} over its own teacher"
        lines.append(f"- **{name}**: teacher {t_acc:.2f} %, baseline student {base:.2f} % (gap {t_acc - base:+.2f} "
                     f"points); the best taught student, {label(best)} ({s[best]:.2f} %), {did}.")
    return "Teacher and student:\n\n" + "\n".join(lines) if lines else ""


def noise_fit_text(fit: pd.DataFrame, theirs: pd.DataFrame) -> str:
    """Whether the baseline fitted the wrong labels (markdown), from ``analysis.noise_fit``, beside the fall of
    the paper's baseline (``theirs``: its Table V) from σ = 0 to the same σ. §IV-B rests on memorisation."""
    if fit.empty:
        return ""
    pb = theirs[theirs["method"] == "baseline"].set_index("noise")["mean"] if len(theirs) else pd.Series(dtype=float)
    lines = []
    for r in fit.itertuples(index=False):
        seeds = f"seed{'s' if len(r.seeds) > 1 else ''} {', '.join(str(s) for s in r.seeds)}"
        head = f"- **{label(r.student)}, σ = {r.noise:g}** ({seeds}): "
        if pd.isna(r.train_acc):
            lines.append(head + "the records keep no training accuracy.")
            continue
        text = f"{head}{memorisation_clause(r)}."
        if pd.notna(r.clean_acc):
            text += f" It is {r.clean_acc - r.acc:.2f} points below the clean baseline of the same seeds"
            if 0.0 in pb.index and r.noise in pb.index:
                text += f"; the paper's WRN-16-2 baseline falls {pb[0.0] - pb[r.noise]:.2f}"
            text += "."
        lines.append(text)
    return ("**Did the baseline memorise the wrong labels?** The section's premise is that \"DNNs have the "
            "capacity to memorize noisy labels\" (§IV-B), which soft targets are said to mitigate. A network "
            "that fits wrong labels can end with a training accuracy on the noisy labels above the share of right "
            "ones, 1 − σ(K − 1)/K (only fitting wrong labels takes it there), and its test accuracy falls from its "
            "best epoch; where the baseline shows neither, the regime lacks the failure the paper's teachers "
            "guard against, and its gains under noise do not test that mechanism. Training accuracy here is the "
            "running accuracy over the last epoch's augmented batches.\n\n" + "\n".join(lines))


def _signs_against_paper(g: pd.Series, pg: pd.Series) -> str:
    """Whether the gains ``g`` over the baseline have the sign of the paper's ``pg``, method by method."""
    common = [m for m in g.index if m in pg.index]
    agree = [m for m in common if (g[m] > 0) == (pg[m] > 0)]
    disagree = [m for m in ORDER if m in common and m not in agree]
    return (f"; the sign of the gain over the baseline agrees with the paper for {len(agree)} of {len(common)} "
            "methods" + (f" (not for {names(disagree)})" if disagree else ""))


def _describe_column(oc: pd.DataFrame, pc: pd.DataFrame, paired: pd.DataFrame, column: str, c: Any) -> str:
    """``describe``'s bullet for column ``c``: ``oc``, ``pc`` and ``paired`` are kdnb's summary, the paper's and
    kdnb's paired gains there."""
    o, p = oc.set_index("method"), pc.set_index("method")
    best = o["mean"].idxmax()
    text = f"**{column_label(column, c)}**: best here {label(best)} ({o.loc[best, 'mean']:.2f} %)"
    if len(p):  # the paper's best by name only: its accuracy is another regime's
        text += f", in the paper {label(p['mean'].idxmax())}"
    g = gains(oc, column).set_index("method")["gain"]
    if len(g):
        up = [m for m in ORDER if m in g and g[m] > 0]
        text += f". Above the baseline here: {len(up)} of {len(g)} methods ({names(up)})"
        clear = _resolved_above(paired, up)
        if clear is not None:
            text += f"; with a 95 % interval above zero: {len(clear)} ({names(clear)})"
        if len(p):
            text += _signs_against_paper(g, gains(pc, column).set_index("method")["gain"])
    common = [m for m in o.index if m in p.index and pd.notna(o.loc[m, "mean"])]
    if len(common) >= 4:
        rho = o.loc[common, "mean"].rank().corr(p.loc[common, "mean"].rank())
        text += (f". Rank correlation of the method means with the paper: {rho:+.2f} over {len(common)} methods"
                 if pd.notna(rho) else ". All methods tie here, so their ranking cannot be compared")
    std = o["std"].dropna()
    return text + (f". Typical seed std here: {std.median():.2f} points" if len(std) else "")


def describe(ours: pd.DataFrame, theirs: pd.DataFrame, column: str, paired: pd.DataFrame | None = None) -> str:
    """Markdown bullets, one per column of ours: the best method, who beats the baseline (and whose gain
    the seeds resolve, from ``paired``: ``analysis.paired_differences`` by ``column``), and how that
    compares with the paper (agreement on the sign of the gain, rank correlation of the means)."""
    paired = paired if paired is not None else pd.DataFrame(columns=[column, "method", "n", "lo"])
    lines = []
    for c in wide(ours, column).columns:
        oc = ours[ours[column] == c]
        pc = theirs[theirs[column] == c] if column in theirs else theirs.iloc[:0]
        if oc["mean"].notna().any():
            lines.append(f"- {_describe_column(oc, pc, paired[paired[column] == c], column, c)}.")
    return "\n".join(lines) if lines else "No finished runs to describe."


def teacher_students(grids: Sequence[Params]) -> pd.DataFrame:
    """Per teacher run that students of ``grids`` learned from (their records' ``teacher_run``): the student
    architecture and the mean final-epoch accuracy of its baseline over the seeds in the same grid
    (run_id, student, baseline): the bar a teacher must clear in its own regime."""
    rows = []
    for g in grids:
        st = students(Study(g).results())
        if st.empty or "teacher_run" not in st:
            continue
        for (arch, _, _), cell in st.groupby(["student", "noise", "imbalance"], dropna=False):
            base = cell.loc[cell["method"] == "baseline", "final_acc"]
            rows += [dict(run_id=t, student=arch, baseline=float(base.mean()) if len(base) else math.nan)
                     for t in cell["teacher_run"].dropna().unique()]
    return pd.DataFrame(rows, columns=["run_id", "student", "baseline"]).drop_duplicates("run_id")


def _paper_baseline(dataset: str, student: str, noise: float, imbalance: Any) -> float:
    """The paper's baseline accuracy of ``student`` in a data condition (Tables III-VI), NaN where it has none."""
    if balanced(imbalance) and not noise:
        t = paper.generalization(dataset)
    elif balanced(imbalance):
        t = paper.label_noise()[lambda d: d["noise"] == noise]
    else:
        t = paper.imbalance()[lambda d: d["imbalance"] == imbalance]
    hit = t[(t["student"] == student) & (t["method"] == "baseline") & (t["dataset"] == dataset)]["mean"]
    return float(hit.iloc[0]) if len(hit) else math.nan


PAPER_CONDITION_PAIR = ("wrn40_2", "wrn16_2")  # the paper's one teacher → student pair of Tables V and VI


def paper_lead(dataset: str, student: Any, noise: float, imbalance: Any, teacher_acc: float) -> tuple[float, str]:
    """The paper's teacher lead in a data condition: of the same pair where it has one (``""``), else, under label
    noise or imbalance, of its own pair there (WRN-40-2 → WRN-16-2, named); (NaN, "") where it has neither."""
    if isinstance(student, str) and pd.notna(teacher_acc) and \
            pd.notna(lead := teacher_acc - _paper_baseline(dataset, student, noise, imbalance)):
        return lead, ""
    if not noise and balanced(imbalance):
        return math.nan, ""
    t, s = PAPER_CONDITION_PAIR
    tab = paper.teachers()
    hit = tab[(tab["dataset"] == dataset) & (tab["teacher"] == t) & (tab["noise"] == noise)
              & (tab["imbalance"].fillna(-1.0) == (-1.0 if balanced(imbalance) else imbalance))]["acc"]
    lead = float(hit.iloc[0]) - _paper_baseline(dataset, s, noise, imbalance) if len(hit) else math.nan
    return (lead, f"{label(t)} → {label(s)}") if pd.notna(lead) else (math.nan, "")


def teacher_leads(cmp: pd.DataFrame, grids: Sequence[Params]) -> pd.DataFrame:
    """``analysis.teacher_comparison`` with each teacher's lead over its students' baseline: kdnb's (``lead``:
    teacher − the baseline of the same architecture, data and regime; ``student``, ``baseline``) and the paper's
    (``paper_lead``: its teacher − its baseline of that student in the same condition, or, where the paper has
    no such pair, of its own pair in that condition, named in ``paper_pair``; "" for the same pair)."""
    out = cmp.merge(teacher_students(grids), on="run_id", how="left") if len(cmp) else \
        cmp.assign(student=None, baseline=math.nan)
    out["lead"] = out["acc"] - out["baseline"]
    leads = [paper_lead(d, s, n, g, p) for p, d, s, n, g in
             zip(out["paper"], out["dataset"], out["student"], out["noise"], out["imbalance"], strict=True)]
    out["paper_lead"] = [v for v, _ in leads]
    out["paper_pair"] = [pair for _, pair in leads]
    return out


def describe_teachers(cmp: pd.DataFrame) -> str:
    """Markdown: how many teachers ran, and whether each is ahead of the students it teaches (``teacher_leads``),
    beside the paper's lead where it has the same teacher and student; the absolute accuracies of a reduced
    regime are not set against the paper's."""
    ran = cmp[cmp["n"].fillna(0) > 0]
    acc = ran["acc"].fillna(ran["mean"])  # a teacher no student has learned from yet: the mean of its seeds
    text = f"{len(ran)} teacher configuration{'s' if len(ran) != 1 else ''} ran on this page"
    if len(ran):
        text += f", with final accuracies from {acc.min():.2f} % to {acc.max():.2f} %"
    out = [text + "."]
    waiting = ran[ran["acc"].isna()]
    if len(waiting):
        which = "; ".join(f"{label(r.teacher)}, {r.configuration}" for r in waiting.itertuples())
        out.append(f"{_n(len(waiting), 'teacher')} ({which}) taught no student yet, so its lead over a student "
                   "cannot be read.")
    if "lead" in cmp:
        for r in ran.dropna(subset=["lead", "acc"]).itertuples(index=False):
            what = f"The {label(r.teacher)} teacher, {r.configuration} ({r.acc:.2f} %)"
            pair = getattr(r, "paper_pair", "")
            paper_part = "" if pd.isna(r.paper_lead) else \
                f"; in the paper the same teacher leads its {label(r.student)} by {r.paper_lead:+.2f}" if not pair \
                else f"; in the paper, whose pair here is {pair}, the teacher leads by {r.paper_lead:+.2f}"
            if r.lead <= 0:
                out.append(f"{what} is **behind** the {label(r.student)} baseline it teaches ({r.baseline:.2f} %, "
                           f"{r.lead:+.2f} points): its students learn from a weaker model, so this cell cannot show "
                           f"what a teacher ahead of its student gives{paper_part}.")
            else:
                out.append(f"{what} leads the {label(r.student)} baseline of its regime by {r.lead:+.2f} points "
                           f"({r.baseline:.2f} %){paper_part}.")
    missing = cmp[cmp["acc"].isna()]
    if len(missing):
        out.append(f"{len(missing)} of the paper's teachers are not run by this profile.")
    return " ".join(out)


def transfer_text(student: str, rec: Mapping[str, Any], store: str | Path) -> str:
    """What the transfer matrix of ``student`` attacked and which code made its record."""
    st, wall = rec["settings"], rec["wall_s"]
    n_models = sum(len(v) for v in rec["sources"].values())
    text = (f"**{label(student)}**: {rec['n_images']} test images, PGD ε = {st['eps']}, step {st['step']}, "
            f"{st['steps']} steps, seed {st['seed']}; {n_models} student models and the teacher; matrix record "
            f"`{transfer_path(store, rec['key'])}`, computed in {duration(wall)} on {rec['device']} by kdnb "
            f"`{rec['code_version']}` ({rec['created'][:10]})")
    if rec.get("weights_checked"):
        return text + "; the weights it attacked are those in the store."
    return text + ("; the weights are not in this store (records only), so they cannot be checked: the matrix is "
                   "shown as recorded for these runs and attack settings.")


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
# Blocks of the results pages: the paper's table, then per group of runs where they trained, kdnb's
# gains beside the paper's, kdnb's tables, kdnb beside the paper, and the prose

GENERALIZATION_TABLES = {"cifar10": ("III", paper.STUDENTS), "cifar100": ("IV", paper.STUDENTS_C100)}
CONDITION_TABLES = {"noise": ("V", paper.NOISE_RATES), "imbalance": ("VI", paper.IMBALANCE_RATES)}


def comparison(runs: pd.DataFrame, theirs: pd.DataFrame, column: str, columns: list[Any], name: str, tab: str,
               below_baseline: bool = False, gain_note: str = "") -> list[Any]:
    """The block of one group of ``runs`` (``name``: which) against the paper's Table ``tab``: where and how
    long they trained and which number is the headline; kdnb's gains over the baseline (paired per seed,
    95 % CI) beside the paper's, each labelled with its regime (``gain_note``: how they compare); kdnb's
    final-epoch table and its best-epoch companion, on the columns it ran; what the numbers say, and the
    teacher-student gap. kdnb's absolute accuracies are never set against the paper's: a reduced regime
    (or another architecture) is compared by its gains, orderings and trends."""
    ours = summarize(runs, by=[column])
    ran = [c for c in columns if c in set(ours[column])] or columns
    absent = [column_label(column, c) for c in columns if c not in ran]
    mean_std = "mean ± std over seeds" + ("; best of each column in bold" if not below_baseline else
                                          "; best in bold, below the baseline in blue")
    ours_regime = regime(runs)
    dataset = next(iter(students(runs)["dataset"]), "cifar10") if len(students(runs)) else "cifar10"
    paired = paired_differences(runs, by=[column])
    paper_regime = PAPER_REGIME.get("imbalance" if column == "imbalance" else dataset, PAPER_REGIME["cifar10"])
    return [Markdown(provenance(students(runs))),
            tables.style_gains(paired, theirs, column, ran,
                               caption=f"{name}: gain in final-epoch accuracy over the baseline of the same "
                               "architecture and regime (points; mean of the paired per-seed differences [95 % CI, "
                               f"{POOLED}], "
                               f"coloured where the interval excludes 0) beside the paper's Table {tab} gain"
                               + gain_note,
                               ours_label=f"kdnb: {ours_regime}" if ours_regime else "kdnb",
                               theirs_label=f"paper: {paper_regime}"),
            Markdown(f"kdnb's accuracies ({ours_regime or 'no finished run'})"
                     + (f"; not run by this profile: {', '.join(absent)}" if absent else "")
                     + ". The paper's own table is folded above; a reduced regime's accuracies are not comparable "
                     "with the paper's, its gains are."),
            tables.style_table(ours, column, columns=ran, below_baseline=below_baseline,
                               caption=f"{name}: final-epoch test accuracy (%; the headline), {mean_std}"),
            tables.details("Its companion: the best-epoch accuracy (<code>best_acc</code>), not the headline",
                           tables.style_table(summarize(runs, by=[column], metric="best_acc"), column, columns=ran,
                                              below_baseline=below_baseline,
                                              caption=f"{name}: best-epoch test accuracy (%; the epoch picked on "
                                              f"the test set), {mean_std}")),
            Markdown(describe(ours, theirs, column, paired)),
            Markdown(teacher_gap(runs, column))]


def generalization_tables(runs: pd.DataFrame, dataset: str) -> list[Any]:
    """Table III (``dataset`` cifar10) or IV (cifar100): the paper's, then kdnb's for each data set of
    ``runs`` of that kind."""
    tab, archs = GENERALIZATION_TABLES[dataset]
    theirs = paper_summary(paper.generalization(dataset))
    halves = [tables.style_table(theirs, "student", columns=list(cols), caption=f"paper, Table {tab}: {family}")
              for family, cols in (("ResNets", archs[:4]), ("WRNs", archs[4:]))]  # each half fits the column
    out: list[Any] = [tables.details(f"The paper's Table {tab}", "".join(h.to_html() for h in halves))]
    shown = [d for d in students(runs)["dataset"].unique() if (d == "cifar100") == (dataset == "cifar100")] \
        if len(runs) else []
    if not shown:
        out.append(Markdown(f"{label(dataset)} is not part of this profile: *not run*."))
    for d in shown:
        r = runs[runs["dataset"] == d]
        cols = list(archs) + sorted(set(students(r)["student"]) - set(archs))
        out += comparison(r, theirs, "student", cols, f"kdnb, {label(d)}", tab,
                          gain_note=" for the same architecture")
    return out


def condition_tables(runs: pd.DataFrame, theirs: pd.DataFrame, column: str, archs: Sequence[str]) -> list[Any]:
    """Table V (``column`` noise) or VI (imbalance): the paper's (WRN-16-2 ← WRN-40-2), then kdnb's for
    each student architecture of ``archs``."""
    tab, rates = CONDITION_TABLES[column]
    out: list[Any] = [tables.details(f"The paper's Table {tab} (WRN-16-2 ← WRN-40-2, CIFAR-10)", tables.style_table(
        theirs, column, below_baseline=True, caption=f"paper, Table {tab}"))]
    for s in archs:
        r = runs[(runs["student"] == s) | (runs["role"] == "teacher")]
        cols = sorted(set(rates) | set(students(r)[column].dropna()))
        note = "" if s == "wrn16_2" else (f", which is WRN-16-2, not {label(s)}: compare how the gain moves across "
                                          "the columns, not the cells")
        out += comparison(r, theirs, column, cols, f"kdnb ({label(s)})", tab, below_baseline=True, gain_note=note)
    return out


# ---------------------------------------------------------------------------------------------
# Per-class accuracy under class imbalance (Table VI is about the minority classes)

# CIFAR-10 labels 0-9, short
CLASS_NAMES = {"cifar10": ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")}


def class_counts(p: Params) -> dict[float, list[int]]:
    """Training images per class of each imbalance ratio γ of grid ``p`` (``data.imbalance_counts``, within
    the first ``train_per_class`` images of a class)."""
    cap = p.train_per_class or math.inf
    return {float(g): [int(min(n, cap)) for n in imbalance_counts(g, p.imbalance_n_max, p.imbalance_n_min,
                                                                   NUM_CLASSES[p.dataset])]
            for g in p.imbalance if g is not None}


def class_tables(per_class: pd.DataFrame, p: Params) -> list[Any]:
    """The imbalance page's per-class block from ``analysis.class_accuracy`` of grid ``p``'s runs: per
    (student, γ) the per-class final-epoch accuracy of every method and the gain over the baseline on the
    minority and the majority classes; one sentence when no record has per-class accuracy."""
    if per_class.empty:
        return [Markdown("The records of this store hold no per-class accuracy, so the accuracy on the minority "
                         "classes cannot be shown.")]
    counts = class_counts(p)
    groups = class_groups(per_class, counts)
    out: list[Any] = []
    for (s, g), cell in per_class.groupby(["student", "imbalance"]):
        minority = ", ".join(CLASS_NAMES[p.dataset][c] if p.dataset in CLASS_NAMES else str(c)
                             for c in minority_classes(counts[g]))
        out += [Markdown(f"**{label(s)}, γ = {g:g}**: minority classes (training count below the median): "
                         f"{minority}."),
                tables.style_class_acc(cell, counts[g], CLASS_NAMES.get(p.dataset),
                                       caption=f"kdnb ({label(s)}, γ = {g:g}): final-epoch test accuracy per class "
                                       "(%), mean over seeds; minority classes shaded"),
                tables.style_class_groups(groups[(groups["student"] == s) & (groups["imbalance"] == g)],
                                          caption=f"kdnb ({label(s)}, γ = {g:g}): mean accuracy on the minority and "
                                          "majority classes and its gain over the baseline (points; mean of the "
                                          f"paired per-seed gains [95 % CI, {POOLED}])")]
    return out


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
        hours = duration(r.wall_s) if pd.notna(r.wall_s) else "unknown time"
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
# Ablations of a section's grid (params/<profile>/ablations/*.yaml)


def _interval(r: Mapping[str, Any]) -> str:
    """A paired difference of ``analysis.paired_between`` in words: its mean, 95 % interval and seeds."""
    if not r["n"]:
        return "no pair of seeds yet"
    ci = "" if pd.isna(r["lo"]) else f" (95 % CI {r['lo']:+.2f} to {r['hi']:+.2f})"
    return f"{r['mean']:+.2f} points{ci} over {_n(int(r['n']), 'seed')}"


def _bss_recipe_sentence(r: Mapping[str, Any], precision: str | None) -> str:
    return (f"BSS under the standard scheme instead of its official recipe, both trained on one teacher "
            f"(retrained with the main grid's teacher config in the ablation's own store): {_interval(r)}.")


def _schedule_sentence(r: Mapping[str, Any], precision: str | None) -> str:
    (e_long, e_std), (prec, _) = r["epochs"], r["precision"]
    text = f"Training the baseline for ONE's {e_long} epochs instead of {e_std}: {_interval(r)}"
    one = r["context_same_seeds"]  # ONE − baseline of the main grid on the ablation's seeds
    if one["n"] and r["n"] and one["mean"]:
        text += (f"; ONE's own gain over the {e_std}-epoch baseline on the same seeds is {_interval(one)}, so the "
                 f"longer schedule alone gives {r['mean'] / one['mean']:.0%} of it")
        if precision and precision != prec:
            text += f" (the two are in different precisions, {prec} and {precision})"
    return text + "."


def _dml_temperature_sentence(r: Mapping[str, Any], precision: str | None) -> str:
    text = f"{r['ablation']}, on the same imbalanced set and seeds: {_interval(r)}"
    base = r["context_same_seeds"]  # DML (the grid's temperature) − baseline on the ablation's seeds
    if base["n"] and r["n"]:
        text += f"; the grid's DML against the baseline on those seeds: {_interval(base)}"
        if base["mean"] < 0 < r["mean"]:
            text += (f", so the lower temperature wins back {r['mean'] / -base['mean']:.0%} of "
                     f"DML's loss and leaves DML {r['mean'] + base['mean']:+.2f} points from the baseline")
    return text + "."


@dataclasses.dataclass(frozen=True)
class Ablation:
    """A control of one cell of a section's grid: ``file``'s ``method`` against ``ref``'s ``ref_method``, paired
    by seed, with ``context``'s gain over the baseline of the page's grid on the same seeds beside it. The
    cell is (``noise``, ``imbalance``) of the page's grid. ``label`` and ``question`` may name the two grids
    as {a.epochs}, {b.precision}, … and the method arguments they train with as {a_args[T]}, {b_args[T]}.
    ``sentence`` says what its row of ``ablations`` shows, given the main grid's precision. A new control
    is one entry of ``ABLATIONS`` and its two files."""

    section: str
    what: str
    label: str
    file: str
    method: str
    ref: str
    ref_method: str
    question: str
    context: str
    sentence: Callable[[Mapping[str, Any], str | None], str]
    noise: float = 0.0
    imbalance: float | None = None


ABLATIONS = (
    Ablation("generalization", "the BSS recipe ablation", "BSS, standard scheme − official recipe",
             "bss_standard.yaml", "bss", "bss_official.yaml", "bss", "does BSS's recipe matter", "one",
             _bss_recipe_sentence),
    Ablation("generalization", "the schedule ablation", "Baseline, {a.epochs} − {b.epochs} epochs ({a.precision})",
             "schedule_control.yaml", "baseline", "schedule_reference.yaml", "baseline",
             "what ONE's {a.epochs}-epoch schedule alone gives the baseline", "one", _schedule_sentence),
    Ablation("imbalance", "the DML temperature ablation",
             "DML, T = {a_args[T]:g} − T = {b_args[T]:g} (γ = {a.imbalance[0]:g})", "dml_temperature.yaml", "dml",
             "dml_reference.yaml", "dml",
             "is DML's loss under imbalance its T²-weighted mutual term at T = {b_args[T]:g}", "dml",
             _dml_temperature_sentence, imbalance=1.0),
)


def _method_args(p: Params, method: str) -> dict[str, Any]:
    """The arguments grid ``p`` trains ``method`` with: its defaults, then the grid's own."""
    return {**METHODS[method].defaults, **p.method_args.get(method, {})}


def ablations(params_dir: str | Path, runs: pd.DataFrame, section: str = "generalization"
              ) -> tuple[pd.DataFrame, list[str]]:
    """The ablations of ``section`` (``ABLATIONS``) found in ``<params_dir>/ablations``, each as paired
    differences per seed against its reference (``analysis.paired_between``) with both grids' epochs and
    precision and its context method's gain over the baseline of the page's grid ``runs`` on the same seeds,
    then one row per context method with its gain on every seed; and one line per ablation or run that is
    not there (never an error). Each ablation file names its own store (the BSS pair keeps one with its
    teacher's weights; a reference may be the main grid's store), relative to the working directory."""
    folder, rows, absent = Path(params_dir) / "ablations", [], []
    if not folder.is_dir():
        absent.append(f"this profile defines no ablations (`{folder}`)")

    def grid(name: str) -> tuple[Params, pd.DataFrame]:
        study = Study(load_params_file(folder / name)[0])
        st = study.status()
        lack = st[(st["role"] == "student") & (st["state"] != "done")]
        if len(lack):
            absent.append(f"{name}: {_n(len(lack), 'run')} not in the store yet ("
                          + ", ".join(f"{label(m)} seed {s}: {state}" for m, s, state in
                                      zip(lack["method"], lack["seed"], lack["state"], strict=True)) + ")")
        return study.params, study.results()

    def cell(df: pd.DataFrame, method: str, a: Ablation) -> pd.DataFrame:
        st = students(df)
        if st.empty:
            return st
        imb = st["imbalance"].isna() if a.imbalance is None else st["imbalance"] == a.imbalance
        return st[(st["method"] == method) & (st["noise"] == a.noise) & imb]

    def gain(a: Ablation, seeds: Sequence[int] | None = None) -> dict[str, Any]:
        pair = [cell(runs, m, a) for m in (a.context, "baseline")]
        return paired_between(*(c[c["seed"].isin(seeds)] if seeds is not None and len(c) else c for c in pair))

    own = [a for a in ABLATIONS if a.section == section]
    for a in own:
        lacking = [f for f in (a.file, a.ref) if not (folder / f).is_file()]
        if lacking:
            if folder.is_dir():
                absent.append(f"this profile does not define {a.what} ({', '.join(f'`{f}`' for f in lacking)})")
            continue
        (pa, ra), (pb, rb) = grid(a.file), grid(a.ref)
        r = paired_between(cell(ra, a.method, a), cell(rb, a.ref_method, a))
        names_ = dict(a=pa, b=pb, a_args=_method_args(pa, a.method), b_args=_method_args(pb, a.ref_method))
        rows.append({"ablation": a.label.format(**names_), "question": a.question.format(**names_), "file": a.file,
                     "epochs": (pa.epochs, pb.epochs), "precision": (pa.precision, pb.precision), **r,
                     "context": a.context, "context_same_seeds": gain(a, r["seeds"])})
    for a in {(a.context, a.noise, a.imbalance): a for a in own}.values():
        where = "" if a.imbalance is None and not a.noise else f" ({condition_label(a.noise, a.imbalance)})"
        rows.append({"ablation": f"{label(a.context)} − baseline, main grid{where}", "file": "",
                     "question": f"{label(a.context)}'s gain, for context", **gain(a)})
    return pd.DataFrame(rows), list(dict.fromkeys(absent))


def ablations_text(abl: pd.DataFrame, absent: Sequence[str], precision: str | None = None) -> str:
    """What the ablations show (markdown), computed from ``ablations``: each ablation's own sentence
    (``Ablation.sentence``), then what is not shown; ``precision``: the main grid's."""
    by_file = {a.file: a for a in ABLATIONS}
    out = [by_file[r["file"]].sentence(r, precision) for r in abl.to_dict("records") if r["file"] in by_file]
    if absent:
        out.append("Not shown: " + "; ".join(absent) + ".")
    return " ".join(out) or "No ablation is defined for this profile."


def protocol_block(path: str | Path = "params/paper/generalization.yaml") -> list[Any]:
    """The generalization page's block of runs at the paper's protocol: what the store of the grid at ``path``
    holds, and the table beside the paper (nothing but a line when the file or its runs are absent)."""
    if not Path(path).is_file():
        return [Markdown(f"No paper-protocol grid `{path}` in this checkout.")]
    grid = load_params_file(path)[0]
    cells = against_paper(protocol_cells(grid), grid.dataset if grid.dataset in ("cifar10", "cifar100") else
                          "cifar10")
    return [Markdown(protocol_text(cells, grid)), *([tables.style_protocol(cells)] if len(cells) else [])]
