"""What a page of the book says: its parameters, the profile banner with the build's headline numbers,
what it ran and on which machines, the prose that reads its numbers, and the blocks of tables that the
results pages share. The numbers come from ``kdnb.report.analysis``, the styling from ``kdnb.report.tables``; nothing
here draws a figure.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from IPython.display import HTML, Markdown

from kdnb import store as store_mod
from kdnb.data import NUM_CLASSES, imbalance_counts
from kdnb.methods import METHODS
from kdnb.report import paper, tables
from kdnb.report.analysis import (
    ORDER,
    SIMILAR_POINTS,
    against_paper,
    balanced,
    claims_table,
    class_groups,
    column_label,
    condition_label,
    gains,
    label,
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
    t975,
    transfer_claims,
    verdict_counts,
    wide,
)
from kdnb.report.tables import duration
from kdnb.study import (
    Params,
    Study,
    teacher_grids,
    transfer_key,
    transfer_path,
    transfer_settings,
    transfer_sources,
)

PARAM_KEYS = tuple(f.name for f in dataclasses.fields(Params))
TEACHER_SECTIONS = ("generalization", "label_noise", "imbalance", "transferability")  # every section with students
CLAIM_SECTIONS = ("generalization", "label_noise", "imbalance")  # the sections whose runs the claims read


# ---------------------------------------------------------------------------------------------
# Parameters


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
    return f'<div class="kdnb-banner">{text}' + (f"<br>{headline}" if headline else "") + "</div>"


def banner_html(profile: str, headline: str = "") -> HTML:
    """``banner`` for a notebook's ``display``."""
    return HTML(banner(profile, headline))


def _stored_matrix(g: Params, runs: pd.DataFrame) -> pd.DataFrame | None:
    """The transfer matrix of grid ``g``'s first student as stored (``study.transfer_for`` writes it), or None:
    read, never computed, so that a page executed before the transferability page attacks nothing."""
    ids, teacher = transfer_sources(runs, g.students[0])
    path = transfer_path(g.store, transfer_key(ids, teacher, transfer_settings(g), g))
    if not ids or not path.is_file():
        return None
    m = json.loads(path.read_text())["matrix"]
    return pd.DataFrame(m["data"], index=m["index"], columns=m["columns"], dtype=float)


def profile_claims(params_dir: str | Path, store: str) -> dict[str, Any]:
    """The paper's findings checked on the stored runs of a profile (the grids of ``CLAIM_SECTIONS``) and on
    the stored transfer matrix of its transferability grid: grids, runs, claims, transfer, counts, matrix."""
    grids = load_grids(params_dir, CLAIM_SECTIONS, store=store)
    runs = pd.concat([Study(g).results() for g in grids], ignore_index=True).drop_duplicates("run_id") if grids \
        else pd.DataFrame(columns=["run_id", "role", "status"])
    matrix = next((_stored_matrix(g, Study(g).results()) for g in load_grids(params_dir, ["transferability"],
                                                                             store=store)), None)
    claims, transfer = claims_table(runs), transfer_claims(matrix)
    return dict(grids=grids, runs=runs, claims=claims, transfer=transfer, matrix=matrix,
                counts=verdict_counts(claims, transfer))


def _scale(st: pd.DataFrame) -> str:
    """``ResNet-8 ← ResNet-26; 8 epochs, 2 seeds, 1,000 training images per class``: the scale of student runs."""
    taught = st.dropna(subset=["teacher"]) if "teacher" in st else pd.DataFrame(columns=["student", "teacher"])
    teachers = taught.groupby("student")["teacher"].agg(lambda t: "/".join(sorted({label(x) for x in t})))
    pair_text = ", ".join(f"{label(s)} ← {teachers[s]}" if s in teachers else label(s)
                          for s in sorted(set(st["student"]), key=model_order))
    epochs = sorted(set(st["epochs"].dropna())) if "epochs" in st else []
    per_class = sorted(set(st["train_per_class"].dropna())) if "train_per_class" in st else []
    images = f"{'/'.join(f'{int(n):,}' for n in per_class)} training images per class" if per_class else \
        "all training images"
    length = [f"{'/'.join(str(int(e)) for e in epochs)} epochs"] if epochs else []
    return f"{pair_text}; " + ", ".join([*length, _n(st["seed"].nunique(), "seed"), images])


def headline(params_dir: str | Path, store: str) -> str:
    """The build's headline numbers (HTML, for ``banner``) from the stored runs as they stand when the page is
    executed (the summary page, executed last, has them all): ``headline_of`` the ``profile_claims``."""
    return headline_of(profile_claims(params_dir, store))


def headline_of(found: Mapping[str, Any]) -> str:
    """How many runs at what scale, and how many of the paper's findings agree, disagree, are inconclusive
    or cannot be tested (``found``: ``profile_claims``)."""
    st, c = students(found["runs"]), found["counts"]
    if st.empty:
        return "This build has no finished student run yet, so none of the paper's findings is tested."
    return (f"This build: {_n(len(st), 'finished student run')} ({_scale(st)}). Of the paper's {sum(c.values())} "
            f"findings, {c['agrees']} agree, {c['disagrees']} disagree, {c['inconclusive']} are inconclusive and "
            f"{c['not testable']} cannot be tested here (<a href=\"summary.html\">Does it reproduce?</a>).")


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
    per_class = sorted({int(n) for n in st["train_per_class"].dropna()}) if "train_per_class" in st else []
    images = f"{'/'.join(f'{n:,}' for n in per_class)} training images per class" if per_class else \
        "all training images"
    by_method = st.dropna(subset=["epochs"]).groupby("method")["epochs"].max().astype(int)
    text = images
    if len(by_method):
        common = int(by_method.mode().max())
        other = [f"{label(m)} {e}" for m, e in by_method.items() if e != common]
        text += f", {common} epochs" + (f" ({', '.join(other)})" if other else "")
    seeds = sorted({int(x) for x in st["seed"]})
    return text + f", seed{'' if len(seeds) == 1 else 's'} {', '.join(map(str, seeds))}"


PAPER_REGIME = {"cifar10": "5,000 training images per class, 200 epochs, 5 seeds",
                "cifar100": "500 training images per class, 200 epochs, 5 seeds"}


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
    """The methods whose paired 95 % interval of the gain over the baseline lies above zero (``paired``:
    ``analysis.paired_differences`` rows of one column, by method); None when no method has two pairs."""
    rows = paired.set_index("method") if len(paired) else paired
    if not len(rows) or not (rows["n"] >= 2).any():
        return None
    return [m for m in methods if m in rows.index and rows.loc[m, "n"] >= 2 and rows.loc[m, "lo"] > 0]


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
            text += f"; with a paired 95 % interval above zero: {len(clear)} ({names(clear)})"
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


def teacher_leads(cmp: pd.DataFrame, grids: Sequence[Params]) -> pd.DataFrame:
    """``analysis.teacher_comparison`` with each teacher's lead over its students' baseline, like for like: kdnb's
    (``lead``: teacher − the baseline of the same architecture, data and regime; ``student``, ``baseline``) and
    the paper's (``paper_lead``: its teacher − its baseline of that student in the same condition)."""
    out = cmp.merge(teacher_students(grids), on="run_id", how="left") if len(cmp) else \
        cmp.assign(student=None, baseline=math.nan)
    out["lead"] = out["acc"] - out["baseline"]
    out["paper_lead"] = [p - _paper_baseline(d, s, n, g) if isinstance(s, str) and pd.notna(p) else math.nan
                         for p, d, s, n, g in zip(out["paper"], out["dataset"], out["student"], out["noise"],
                                                  out["imbalance"], strict=True)]
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
            paper_part = f"; in the paper the same teacher leads its {label(r.student)} by {r.paper_lead:+.2f}" \
                if pd.notna(r.paper_lead) else ""
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
    return [Markdown(provenance(students(runs))),
            tables.style_gains(paired, theirs, column, ran,
                               caption=f"{name}: gain in final-epoch accuracy over the baseline of the same "
                               "architecture and regime (points; mean of the paired per-seed differences [95 % CI], "
                               f"coloured where the interval excludes 0) beside the paper's Table {tab} gain"
                               + gain_note,
                               ours_label=f"kdnb: {ours_regime}" if ours_regime else "kdnb",
                               theirs_label=f"paper: {PAPER_REGIME.get(dataset, PAPER_REGIME['cifar10'])}"),
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
                                          "paired per-seed gains [95 % CI])")]
    return out


# ---------------------------------------------------------------------------------------------
# Does it reproduce?

PAPER_SCOPE = {  # the paper's experiments (§IV, Tables II-VI, Fig. 1): 5 seeds, 200 epochs, all training images
    "Table II: teachers": "ResNet-26 and WRN-40-2 (ResNet-26x4 on CIFAR-100), one per data condition; best of 5 seeds",
    "Table III: CIFAR-10": "8 students (ResNet-8/14/20/26, WRN-10/16/28/40-2) × 12 methods, 5 seeds, 200 epochs",
    "Table IV: CIFAR-100": "8 students (ResNet-8/14/20/26x4, WRN-10/16/28/40-2) × 12 methods, 5 seeds, 200 epochs",
    "Table V: label noise": "WRN-16-2 ← WRN-40-2, σ ∈ {0.2, 0.4, 0.6} × 12 methods, 5 seeds",
    "Table VI: class imbalance": "WRN-16-2 ← WRN-40-2, γ ∈ {0.2, 0.6, 1, 2} (5000 to 250 images a class) × 12 "
                                 "methods, 5 seeds",
    "Fig. 1: transferability": "PGD examples (ε = 0.031, 20 steps) between 10 methods and the teacher",
}


def _experiment(run: Any) -> str:
    """The paper's experiment (a key of ``PAPER_SCOPE``) that a student run belongs to."""
    if not balanced(run.imbalance):
        return "Table VI: class imbalance"
    if run.noise:
        return "Table V: label noise"
    return "Table IV: CIFAR-100" if run.dataset == "cifar100" else "Table III: CIFAR-10"


def _conditions(df: pd.DataFrame) -> list[str]:
    """The data conditions of the runs in ``df``, balanced first, then by σ and γ."""
    pairs = {(float(n), None if balanced(g) else float(g)) for n, g in zip(df["noise"], df["imbalance"], strict=True)}
    return [condition_label(n, g) for n, g in sorted(pairs, key=lambda k: (k[1] is not None, k))]


def coverage(runs: pd.DataFrame, matrix: pd.DataFrame | None) -> pd.DataFrame:
    """What this build covers of each experiment of the paper (``PAPER_SCOPE``), from its stored runs:
    experiment, paper, this build (models, conditions, methods, seeds, epochs, images; finished runs)."""
    st = students(runs)
    kind = pd.Series([_experiment(r) for r in st.itertuples(index=False)], index=st.index, dtype=object)
    teachers = runs[(runs["role"] == "teacher") & (runs["status"] == "done")] if len(runs) else runs
    rows = []
    for exp, scope in PAPER_SCOPE.items():
        part = st[kind == exp]
        if exp == "Table II: teachers":
            conds = _conditions(teachers)
            built = (f"{names(sorted(set(teachers['student']), key=model_order))}, {_n(len(conds), 'data condition')}, "
                     f"{_n(len(teachers), 'run')}") if len(teachers) else "not run"
        elif exp == "Fig. 1: transferability":
            built = (f"a matrix of {len(matrix.columns) - 2} sources and the teacher against {len(matrix.index) - 1} "
                     "targets") if matrix is not None else "not computed"
        else:
            built = (f"{_scale(part)}; {', '.join(_conditions(part))}; {part['method'].nunique()} methods; "
                     f"{_n(len(part), 'finished run')}") if len(part) else "not run"
        rows.append({"experiment": exp, "the paper": scope, "this build": built})
    return pd.DataFrame(rows)


def claims_summary(grids: Sequence[Params], runs: pd.DataFrame, counts: Mapping[str, int]) -> str:
    """The paragraph above the claims table (markdown): what was run, at what scale, how many claims hold."""
    st = students(runs)
    total, p = sum(counts.values()), grids[0]
    conds = _conditions(st) if len(st) else []
    tested = total - counts.get("not testable", 0)
    return (f"**What was run:** profile `{p.profile}`, {_n(len(st), 'finished student run')} "
            f"({duration(st['wall_s'].sum()) if 'wall_s' in st else 'unknown time'} of training) on "
            f"{label(p.dataset)}: "
            + (_scale(st) if len(st) else "nothing yet")
            + f" (the paper: 200 epochs, 5 seeds), {_n(len(conds), 'data condition')}"
            + (f" ({', '.join(conds)})" if conds else "")
            + f". **Of the paper's {total} findings listed here**, "
            f"{tested} can be tested with this profile: **{counts.get('agrees', 0)} agree**, "
            f"{counts.get('disagrees', 0)} disagree and {counts.get('inconclusive', 0)} are inconclusive "
            f"(within the noise); {counts.get('not testable', 0)} are not testable with this profile "
            "(models, noise rates or seeds it does not run).")


def verdict_rule_text(n_seeds: int) -> str:
    """How the verdicts are computed, and what ``n_seeds`` seeds can show (markdown)."""
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
# Ablations of the generalization grid (params/<profile>/ablations/*.yaml)

# (label, ablation file, its method, the reference's file, the reference's method, what the contrast asks)
ABLATIONS = (
    ("BSS, standard scheme − official recipe", "bss_standard.yaml", "bss", "bss_official.yaml", "bss",
     "does BSS's recipe matter"),
    ("Baseline, 12 − 8 epochs (fp32)", "one_schedule_control.yaml", "baseline", "baseline_fp32.yaml", "baseline",
     "what ONE's 12-epoch schedule alone gives the baseline"),
)


def ablations(params_dir: str | Path, runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The ablations of ``ABLATIONS`` found in ``<params_dir>/ablations``, each as paired differences per seed
    against its reference (``analysis.paired_between``), plus ONE − baseline of the page's grid ``runs`` for
    context; and one line per ablation or run that is not there (never an error). Each ablation file names
    its own store (the BSS pair keeps one with its teacher's weights), relative to the working directory."""
    folder, rows, absent = Path(params_dir) / "ablations", [], []

    def grid_runs(name: str) -> pd.DataFrame | None:
        path = folder / name
        if not path.is_file():
            absent.append(f"`{path}` is not in this profile")
            return None
        study = Study(load_params_file(path)[0])
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
        b = grid_runs(ref)
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
        out.append(f"BSS under the standard scheme instead of its official recipe, both trained on one teacher "
                   f"(retrained with the main grid's teacher config in the ablation's own store): {iv(bss)}.")
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
    if not Path(path).is_file():
        return [Markdown(f"No paper-protocol grid `{path}` in this checkout.")]
    grid = load_params_file(path)[0]
    cells = against_paper(protocol_cells(grid), grid.dataset if grid.dataset in ("cifar10", "cifar100") else
                          "cifar10")
    return [Markdown(protocol_text(cells, grid)), *([tables.style_protocol(cells)] if len(cells) else [])]
