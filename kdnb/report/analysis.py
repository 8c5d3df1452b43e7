"""The numbers behind the book's pages, from the run records: pandas only, no styling, no figures.

Frames used here:

- runs: ``kdnb.study.Study.results`` (or ``run``) output, one row per run: run_id, role (teacher or
  student), method, student, dataset, seed, noise, imbalance, final_acc, best_acc, status, wall_s,
  device, teacher_run, history, and for a teacher ``teaches`` (the seed its students learn from); newer
  records add cpu, precision and class_acc (per-class test accuracy).
- summary: one row per (cell, method) with ``mean``, ``std`` (sample std, ddof = 1) and ``n`` (seeds);
  ``summarize`` makes it from runs, and the paper's tables (``kdnb.report.paper``) have the same shape.
- paired: one row per (cell, method) with the mean, std and n of the per-seed method − baseline
  differences and their 95 % interval (lo, hi) from the seed variance pooled over the cell's methods (df)
  (``paired_differences``).
- curves: per-epoch history of the runs (``curves``).
- matrix: a transfer matrix (index = target, columns = source, with a ``mean`` row and column and a
  ``teacher`` column), as ``kdnb.study.Study.transfer`` and ``kdnb.report.paper.transfer`` give it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from kdnb.data import NUM_CLASSES
from kdnb.methods import METHODS
from kdnb.report import paper


class _Order(Sequence):
    """The paper's methods in its order, then every other registered method (a user's plugin,
    book/add-method.md), read at each use: plugins register while a page runs."""

    def _all(self) -> list[str]:
        return [*paper.METHODS, *(m for m in METHODS if m not in paper.METHODS)]

    def __getitem__(self, i):
        return self._all()[i]

    def __len__(self) -> int:
        return len(self._all())


ORDER = _Order()
METRICS = {"test_acc": "test accuracy (%)", "train_acc": "training accuracy (%)", "train_loss": "training loss"}
# two-sided 95 % quantiles of Student's t for 1-30 degrees of freedom (any t table)
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


# ---------------------------------------------------------------------------------------------
# Names


def label(value: Any) -> str:
    """The paper's spelling of a method, model or data set name; a registered method the paper does not
    have marked so; other values as they are."""
    if isinstance(value, str) and value in METHODS and value not in paper.METHODS:
        return f"{value} (not in the paper)"  # no paper number, no claim (book/add-method.md)
    return paper.LABELS.get(value, str(value)) if isinstance(value, str) else str(value)


def names(values: Sequence[str]) -> str:
    """``Hinton, AT``: the paper's names of ``values``, or ``none``."""
    return ", ".join(label(v) for v in values) if len(values) else "none"


def balanced(imbalance: Any) -> bool:
    """True for the balanced data set (imbalance None or NaN)."""
    return imbalance is None or (isinstance(imbalance, float) and math.isnan(imbalance))


def images_text(per_class: Any, imbalance: Any = None, n_max: Any = None, n_min: Any = None,
                short: bool = False) -> str:
    """The training images of a regime: ``class sizes 5,000 → 250`` (imbalanced), ``1,000 training images per
    class`` (the first n of each class) or ``all training images``; ``short``: ``5,000→250/class``, ``1,000/class``,
    ``all images``."""
    if not balanced(imbalance) and pd.notna(n_max) and pd.notna(n_min):
        return f"{int(n_max):,}→{int(n_min):,}/class" if short else f"class sizes {int(n_max):,} → {int(n_min):,}"
    if pd.isna(per_class):
        return "all images" if short else "all training images"
    return f"{int(per_class):,}/class" if short else f"{int(per_class):,} training images per class"


def params_images_text(p: Any) -> str:
    """``images_text`` of a params file's grid (``kdnb.study.Params``): its imbalanced class sizes if it has a γ."""
    gamma = next((g for g in p.imbalance if g is not None), None)
    return images_text(p.train_per_class, gamma, p.imbalance_n_max, p.imbalance_n_min)


def regime_label(row: Mapping[str, Any]) -> str:
    """``1,000/class · 32 ep``: a run's training regime, short, from a row with ``train_per_class``, ``epochs`` and,
    where they are, ``imbalance``, ``imbalance_n_max`` and ``imbalance_n_min``."""
    images = images_text(row.get("train_per_class"), row.get("imbalance"), row.get("imbalance_n_max"),
                         row.get("imbalance_n_min"), short=True)
    epochs = row.get("epochs")
    return images + (f" · {int(epochs)} ep" if pd.notna(epochs) else "")


def condition_label(noise: float, imbalance: Any, clean: str = "clean") -> str:
    """``σ = 0.4``, ``γ = 1``, both, or ``clean`` (Table II's "default configuration"): a run's data condition."""
    parts = ([f"σ = {noise:g}"] if noise else []) + ([] if balanced(imbalance) else [f"γ = {imbalance:g}"])
    return " · ".join(parts) or clean


def column_label(column: str, value: Any) -> str:
    """Header of a table column: a model name, ``σ = 0.4``, ``γ = 1`` or a data set name."""
    if column == "noise":
        return f"σ = {value:g}"
    if column == "imbalance":
        return "balanced" if balanced(value) else f"γ = {value:g}"
    return label(value)


def model_order(model: str) -> tuple[int, str]:
    """Sort key: the paper's models in its order (Table III), then the others by name."""
    return (paper.STUDENTS.index(model) if model in paper.STUDENTS else len(paper.STUDENTS), model)


# ---------------------------------------------------------------------------------------------
# Summaries, gains and paired differences


def students(runs: pd.DataFrame) -> pd.DataFrame:
    """The finished student runs."""
    if runs.empty:
        return runs
    return runs[(runs["role"] == "student") & (runs["status"] == "done")]


def _with_dataset(by: Sequence[str], runs: pd.DataFrame) -> list[str]:
    """``by`` and the data set (when the runs name one): a CIFAR-10 and a CIFAR-100 run of one student and
    seed are different cells (Tables III and IV), never averaged or paired together."""
    return [*by] + (["dataset"] if "dataset" in runs.columns and "dataset" not in by else [])


def summarize(runs: pd.DataFrame, by: Sequence[str] = ("student",), metric: str = "final_acc") -> pd.DataFrame:
    """Mean, sample std (ddof = 1; NaN for one seed) and seed count per (by..., method) of finished students."""
    by = _with_dataset(by, runs)
    df = students(runs)
    if df.empty:
        return pd.DataFrame(columns=[*by, "method", "mean", "std", "n"])
    g = df.groupby([*by, "method"], dropna=False)[metric]
    return g.agg(mean="mean", std=lambda s: s.std(ddof=1), n="count").reset_index()


def paper_summary(table: pd.DataFrame) -> pd.DataFrame:
    """A paper table (``kdnb.report.paper``) as a summary: mean, std, n = 5 seeds."""
    return table.drop(columns=["bold"], errors="ignore").assign(n=paper.SEEDS)


def wide(summary: pd.DataFrame, column: str, value: str = "mean", methods: Sequence[str] | None = None,
         columns: Sequence[Any] | None = None) -> pd.DataFrame:
    """Methods (rows, paper order; by default the paper's and those of ``summary``) by ``column`` values;
    cells not in ``summary`` are NaN."""
    if methods is None:
        methods = [m for m in ORDER if m in paper.METHODS or m in set(summary.get("method", ()))]
    methods = list(methods)
    if summary.empty:
        return pd.DataFrame(np.nan, index=methods, columns=list(columns or []))
    w = summary.set_index(["method", column])[value].unstack(column)
    cols = list(columns) if columns is not None else list(w.columns)
    return w.reindex(index=methods, columns=cols).astype(float)


def best_mask(means: pd.DataFrame) -> pd.DataFrame:
    """True where a cell is the best of its column (ties all marked), as displayed (2 decimals)."""
    r = means.round(2)
    return r.eq(r.max(axis=0), axis=1) & r.notna()


def below_mask(means: pd.DataFrame, baseline: str = "baseline") -> pd.DataFrame:
    """True where a cell is below the baseline of its column (as displayed); the baseline row is False."""
    if baseline not in means.index:
        return pd.DataFrame(False, index=means.index, columns=means.columns)
    r = means.round(2)
    out = r.lt(r.loc[baseline], axis=1)
    out.loc[baseline] = False
    return out


def gains(summary: pd.DataFrame, column: str) -> pd.DataFrame:
    """Gain of each method's mean over the baseline mean in the same column (percentage points)."""
    if summary.empty:
        return pd.DataFrame(columns=[column, "method", "gain"])
    base = summary[summary["method"] == "baseline"].set_index(column)["mean"]
    out = summary[summary["method"] != "baseline"].copy()
    out["gain"] = out["mean"].to_numpy() - out[column].map(base).to_numpy(dtype=float)
    return out[[column, "method", "gain"]].dropna().reset_index(drop=True)


def t975(df: int) -> float:
    """Two-sided 95 % quantile of Student's t with ``df`` degrees of freedom (Cornish-Fisher above 30)."""
    if df < 1:
        return math.nan
    if df <= len(T975):
        return T975[df - 1]
    z = 1.959964
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def paired_interval(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample std, n and the 95 % t-interval (lo, hi) of per-seed paired contrasts."""
    v = pd.Series(values, dtype=float).dropna()
    n = len(v)
    mean = float(v.mean()) if n else math.nan
    std = float(v.std(ddof=1)) if n > 1 else math.nan
    half = t975(n - 1) * std / math.sqrt(n) if n > 1 else math.nan
    return dict(mean=mean, std=std, n=n, lo=mean - half, hi=mean + half)


def two_way_residual(y: np.ndarray) -> tuple[float, int]:
    """Residual sum of squares and df of the additive method × seed model on ``y`` (methods × seeds):
    y − row means − column means + grand mean."""
    m, s = y.shape
    if m < 2 or s < 2:
        return 0.0, 0
    r = y - y.mean(axis=1, keepdims=True) - y.mean(axis=0, keepdims=True) + y.mean()
    return float((r**2).sum()), (m - 1) * (s - 1)


def pooled_gains(wide: pd.DataFrame) -> list[dict[str, Any]]:
    """Each method's gain over the baseline in ``wide`` (methods × seeds, a baseline row among them): the
    mean paired per-seed difference and its 95 % interval from the seed variance pooled over the cell's
    methods (the residual of the additive method × seed model on the seeds every method has), so that a
    method's interval rests on (methods − 1)(seeds − 1) df rather than on its own seeds − 1 (with one method
    and the baseline, the two agree); ``std`` is the method's own sd of the differences, ``df`` the pooled df
    (0: no interval)."""
    wide = wide.loc[:, wide.loc["baseline"].notna()]
    wide = wide[wide.notna().any(axis=1)]  # the methods with a baseline partner, on the seeds they all have:
    ss, df = two_way_residual(wide.dropna(axis=1).to_numpy(dtype=float))
    rows = []
    for m in wide.index.drop("baseline"):
        d = (wide.loc[m] - wide.loc["baseline"]).dropna()
        n, mean = len(d), float(d.mean())
        half = t975(df) * math.sqrt(2 * ss / df / n) if df and n else math.nan
        rows.append(dict(method=m, mean=mean, std=float(d.std(ddof=1)) if n > 1 else math.nan, n=n, df=df,
                         lo=mean - half, hi=mean + half))
    return rows


def paired_differences(runs: pd.DataFrame, by: Sequence[str] = ("student",),
                       metric: str = "final_acc") -> pd.DataFrame:
    """Method − baseline per seed within each cell (a paired design: a method's run and the baseline's
    share the seed, hence the initial weights and the batches), then per (by..., method) the mean, std and
    n (pairs) of the differences and their 95 % interval (lo, hi) with the seed variance pooled over the
    cell's methods (``pooled_gains``; df: its degrees of freedom)."""
    by = _with_dataset(by, runs)
    cols = [*by, "method", "mean", "std", "n", "df", "lo", "hi"]
    st = students(runs)
    if st.empty or not (st["method"] == "baseline").any():
        return pd.DataFrame(columns=cols)
    rows = []
    for key, cell in st.groupby(by, dropna=False):
        wide = cell.pivot_table(index="method", columns="seed", values=metric, aggfunc="mean")
        if "baseline" in wide.index:
            rows += [{**dict(zip(by, key, strict=True)), **r} for r in pooled_gains(wide)]
    return pd.DataFrame(rows, columns=cols)


def paired_between(a: pd.DataFrame, b: pd.DataFrame, metric: str = "final_acc") -> dict[str, Any]:
    """``a − b`` per seed over the finished student runs of two single cells (a paired design when both
    share the seeds' initial weights and batches): ``paired_interval`` of the differences, with the seeds
    and the two means ``a``, ``b`` over those seeds (over every seed of each while none pairs)."""
    sa, sb = (students(x).groupby("seed")[metric].mean() if not x.empty else pd.Series(dtype=float) for x in (a, b))
    d = (sa - sb).dropna()
    if len(d):
        sa, sb = sa[d.index], sb[d.index]
    return {**paired_interval(d.to_numpy()), "seeds": [int(s) for s in d.index],
            "a": float(sa.mean()) if len(sa) else math.nan, "b": float(sb.mean()) if len(sb) else math.nan}


# ---------------------------------------------------------------------------------------------
# Where and how long the runs trained


def machine(device: Any, cpu: Any = None) -> str:
    """A run's machine as its record names it: the GPU (the record's device), or ``CPU`` and its model."""
    if device and device != "cpu":
        return str(device)
    return f"CPU {cpu}" if isinstance(cpu, str) and cpu else "CPU (model not recorded)"


def run_costs(runs: pd.DataFrame) -> dict[str, Any]:
    """Where the finished runs in ``runs`` trained and for how long: n, the runs per machine and per
    precision (dicts, most first; precision from the records that state it), the total and the median
    training wall time per run in seconds (``wall_s``; NaN when none records it)."""
    done = runs[runs["status"] == "done"] if len(runs) else runs
    cpus = done["cpu"] if "cpu" in done else [None] * len(done)
    machines = pd.Series([machine(d, c) for d, c in zip(done.get("device", [None] * len(done)), cpus, strict=True)],
                         dtype=object)
    precisions = done["precision"].dropna() if "precision" in done else pd.Series(dtype=object)
    wall = pd.to_numeric(done["wall_s"], errors="coerce").dropna() if "wall_s" in done else pd.Series(dtype=float)
    return dict(n=len(done), machines=machines.value_counts().to_dict(), precisions=precisions.value_counts().to_dict(),
                total_s=float(wall.sum()) if len(wall) else math.nan,
                median_s=float(wall.median()) if len(wall) else math.nan)


# ---------------------------------------------------------------------------------------------
# Learning curves


def history(runs: pd.DataFrame) -> pd.DataFrame:
    """The per-epoch history carried by ``runs`` (its ``history`` column), one row per run and epoch."""
    if runs.empty or "history" not in runs:
        return pd.DataFrame(columns=["run_id", "epoch"])
    meta = ["run_id", "method", "student", "seed", "noise", "imbalance"]
    rows = [{**dict(zip(meta, key, strict=True)), **h}
            for *key, hist in runs.drop_duplicates("run_id")[[*meta, "history"]].itertuples(index=False)
            for h in (hist if isinstance(hist, list) else [])]
    return pd.DataFrame(rows, columns=None if rows else ["run_id", "epoch"])


def setting_labels(df: pd.DataFrame) -> pd.Series:
    """A short label per row naming its configuration by what varies in ``df``: data set, architecture and
    data condition (``ResNet-26 · γ = 1``); the architecture when nothing varies. Balanced and imbalanced
    runs of the same noise rate get different labels (a NaN imbalance is a value here, not a gap)."""
    parts = [df[d].map(label) for d in ("dataset", "student") if d in df]
    if {"noise", "imbalance"} <= set(df.columns):
        parts.append(pd.Series([condition_label(n, g) for n, g in zip(df["noise"], df["imbalance"], strict=True)],
                               index=df.index))
    vary = [p for p in parts if p.nunique(dropna=False) > 1] or parts[1:2] or parts[:1]
    if not vary:
        return pd.Series("", index=df.index, dtype=str)
    return pd.Series([" · ".join(t) for t in zip(*vary, strict=True)], index=df.index, dtype=str)


def curves(runs: pd.DataFrame, hist: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per-epoch history of the finished runs in ``runs`` (from ``hist``, else from their own ``history``),
    final training stage only, with data set, role and a ``setting`` label (one per configuration)."""
    cols = ["run_id", "method", "student", "seed", "noise", "imbalance", "epoch", "dataset", "role", "setting"]
    hist = history(runs) if hist is None else hist
    if runs.empty or hist.empty:
        return pd.DataFrame(columns=cols)
    done = runs[runs["status"] == "done"]
    h = hist[hist["run_id"].isin(set(done["run_id"]))].dropna(subset=["epoch"]).copy()
    if "stage" in h:
        h = h[h["stage"] == h.groupby("run_id")["stage"].transform("last")]
    meta = done[["run_id", "dataset", "role"]].drop_duplicates("run_id")
    h = h.merge(meta, on="run_id")
    h["epoch"] = h["epoch"].astype(int)
    h["setting"] = setting_labels(h)
    return h.reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Label noise (Table V): did the baseline fit the wrong labels?


def right_label_share(noise: float, num_classes: int) -> float:
    """The share (%) of training labels that are still right after symmetric noise at rate ``noise``: a
    redrawn label keeps its class with probability 1/K (``kdnb.data.symmetric_label_noise``)."""
    return 100.0 * (1.0 - noise * (num_classes - 1) / num_classes)


def noise_fit(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, student, noise > 0) of the finished baselines in ``runs``: their ``seeds``; ``train_acc``, the
    last epoch's training accuracy against the noisy labels (mean over seeds); ``right``, the share of labels
    that are right (``right_label_share``); ``fits_wrong``, whether ``train_acc`` exceeds it, which only a
    network that fits some wrong labels can do (it is the accuracy of one that predicts every true class);
    ``best_minus_final``, how far the final test accuracy fell below the best epoch's (memorising noise
    shows as a late fall); ``acc`` and ``clean_acc``, the final test accuracy at this noise rate and at
    σ = 0 on the same seeds (NaN without a clean partner)."""
    cols = ["dataset", "student", "noise", "seeds", "train_acc", "right", "fits_wrong", "best_minus_final", "acc",
            "clean_acc"]
    st = students(runs)
    base = st[(st["method"] == "baseline") & st["imbalance"].isna()] if not st.empty else st
    if base.empty:
        return pd.DataFrame(columns=cols)
    base = base.assign(train_acc=[_last_train_acc(h) for h in base["history"]] if "history" in base else math.nan)
    rows = []
    for (ds, student, noise), g in base[base["noise"] > 0].groupby(["dataset", "student", "noise"]):
        clean = base[(base["dataset"] == ds) & (base["student"] == student) & (base["noise"] == 0)
                     & base["seed"].isin(g["seed"])]
        paired = g[g["seed"].isin(clean["seed"])]
        right = right_label_share(float(noise), NUM_CLASSES.get(ds, 10))
        train = float(g["train_acc"].mean())
        rows.append(dict(dataset=ds, student=student, noise=float(noise), seeds=sorted(g["seed"]), train_acc=train,
                         right=right, fits_wrong=bool(train > right) if pd.notna(train) else None,
                         best_minus_final=float((g["best_acc"] - g["final_acc"]).mean()),
                         acc=float(g["final_acc"].mean()),
                         clean_acc=float(clean["final_acc"].mean()) if len(paired) == len(g) else math.nan))
    return pd.DataFrame(rows, columns=cols)


def memorisation_clause(fit: Any) -> str:
    """One row of ``noise_fit`` that has a training accuracy, in words: the baseline's training accuracy on its
    noisy labels beside the share that is right, its fall from its best epoch, and what they say."""
    verdict = (f"it fits at least {fit.train_acc - fit.right:.1f} % of the labels that are wrong" if fit.fits_wrong
               else "no sign that it memorised the wrong labels")
    return (f"the baseline ends at {fit.train_acc:.1f} % training accuracy on its noisy labels, "
            f"{'above' if fit.fits_wrong else 'below'} the {fit.right:.1f} % of them that are right, and its final "
            f"test accuracy is {fit.best_minus_final:.2f} below its best epoch's: {verdict}")


def _last_train_acc(hist: Any) -> float:
    """The training accuracy of a record's last epoch (NaN when its history has none)."""
    accs = [h.get("train_acc") for h in hist] if isinstance(hist, list) else []
    accs = [a for a in accs if a is not None]
    return float(accs[-1]) if accs else math.nan


# ---------------------------------------------------------------------------------------------
# Per-class accuracy under class imbalance (Table VI: the minority classes)


def class_accuracy(runs: pd.DataFrame) -> pd.DataFrame:
    """The per-class final test accuracy (``class_acc``) of the finished students that recorded it: one row
    per run and class (student, imbalance, method, seed, class, acc). Empty for records that predate it."""
    cols = ["student", "imbalance", "method", "seed", "class", "acc"]
    st = students(runs)
    if st.empty or "class_acc" not in st:
        return pd.DataFrame(columns=cols)
    st = st[st["class_acc"].map(lambda v: v is not None and not isinstance(v, (str, float)) and len(v) > 0)]
    rows = [(s, g, m, seed, c, float(a)) for s, g, m, seed, accs in
            st[["student", "imbalance", "method", "seed", "class_acc"]].itertuples(index=False)
            for c, a in enumerate(accs)]
    return pd.DataFrame(rows, columns=cols)


def minority_classes(counts: Sequence[int]) -> list[int]:
    """The classes whose training count is below the median count: the minority classes that the paper's
    class-imbalance study (§IV-C, Table VI) hopes a teacher helps a student learn."""
    median = float(np.median(counts))
    return [c for c, n in enumerate(counts) if n < median]


def class_groups(per_class: pd.DataFrame, counts: Mapping[float, Sequence[int]]) -> pd.DataFrame:
    """Per (student, imbalance, method, group), group in (minority, majority) of ``minority_classes`` of
    ``counts[imbalance]`` (training images per class): ``acc``, the group's mean accuracy (mean over seeds),
    and the ``pooled_gains`` (mean, std, n, df, lo, hi) of its per-seed gain over the baseline of the same
    seed (NaN for the baseline)."""
    cols = ["student", "imbalance", "method", "group", "acc", "mean", "std", "n", "df", "lo", "hi"]
    rows = []
    for (student, gamma), cell in per_class.groupby(["student", "imbalance"]):
        minority = set(minority_classes(counts[gamma]))
        group = np.where(cell["class"].isin(minority), "minority", "majority")
        acc = cell.assign(group=group).groupby(["group", "method", "seed"])["acc"].mean()
        for g in [g for g in ("minority", "majority") if g in acc.index.get_level_values("group")]:
            wide = acc.loc[g].unstack("seed")
            gains = {r["method"]: r for r in pooled_gains(wide)} if "baseline" in wide.index else {}
            for m in [m for m in ORDER if m in wide.index]:
                r = gains.get(m, dict(mean=math.nan, std=math.nan, n=0, df=0, lo=math.nan, hi=math.nan))
                rows.append(dict(student=student, imbalance=gamma, method=m, group=g, acc=wide.loc[m].mean(),
                                 **{k: r[k] for k in ("mean", "std", "n", "df", "lo", "hi")}))
    return pd.DataFrame(rows, columns=cols)


# ---------------------------------------------------------------------------------------------
# Teachers (Table II)


def teacher_table(truns: pd.DataFrame) -> pd.DataFrame:
    """One row per teacher (data set, architecture, noise, imbalance, and its regime: training images per class
    and epochs, where ``truns`` has them): the final and best-epoch accuracy of
    the seed that teaches the students (the row marked ``teaches``, chosen by the study; NaN when none is
    marked) and mean ± std over the teacher seeds."""
    regime = [k for k in ("train_per_class", "imbalance_n_max", "imbalance_n_min", "epochs")
              if k in truns]  # teachers of two regimes stay apart
    keys = ["dataset", "teacher", "noise", "imbalance", *regime]
    cols = [*keys, "acc", "best", "mean", "std", "n", "run_id"]
    if truns.empty:
        return pd.DataFrame(columns=cols)
    df = truns.assign(imbalance=pd.to_numeric(truns["imbalance"], errors="coerce").astype(float),
                      noise=truns["noise"].astype(float),
                      teaches=truns["teaches"].eq(True) if "teaches" in truns else False)
    rows = []
    for key, g in df.groupby(keys, dropna=False, sort=False):
        used = g[g["teaches"]].iloc[:1]
        rows.append(dict(zip(keys, key, strict=True), acc=used["final_acc"].max(), best=used["best_acc"].max(),
                         mean=g["final_acc"].mean(), std=g["final_acc"].std(ddof=1), n=len(g),
                         run_id=used["run_id"].iloc[0] if len(used) else None))
    return pd.DataFrame(rows, columns=cols)


def teacher_comparison(ours: pd.DataFrame, theirs: pd.DataFrame) -> pd.DataFrame:
    """Table II: our teachers and the paper's, outer-joined on data set, architecture and configuration."""
    key = ["dataset", "teacher", "noise", "imbalance"]
    a = ours.assign(imbalance=ours["imbalance"].astype(float))
    b = theirs[key + ["acc"]].rename(columns={"acc": "paper"}).assign(imbalance=theirs["imbalance"].astype(float))
    m = a.merge(b, on=key, how="outer")
    m["diff"] = m["acc"] - m["paper"]
    m["configuration"] = [condition_label(n, g) for n, g in zip(m["noise"], m["imbalance"], strict=True)]
    return m.sort_values(["dataset", "noise", "imbalance", "teacher"], na_position="first").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Transferability (Fig. 1) and the paper's observations about it (§IV-D)

HINTON_FAMILY = ("hinton", "fitnet", "fsp")
RELATIONAL = ("sp", "rkd_d", "rkd_a", "rkd_da")


def transfer_long(mats: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Matrices (target × source) as rows: source, target, rate, and which matrix (``result``)."""
    rows = [{"result": name, "source": src, "target": tgt, "rate": m.loc[tgt, src]}
            for name, m in mats.items() for src in m.columns for tgt in m.index if "mean" not in (tgt, src)]
    return pd.DataFrame(rows, columns=["result", "source", "target", "rate"])


def sources_of(long: pd.DataFrame, result: str = "kdnb") -> list[str]:
    """The source models of one matrix (``result``) in ``long``, in the paper's order, the teacher last."""
    return [s for s in [*ORDER, "teacher"] if s in set(long[long["result"] == result]["source"])]


def ranked(values: pd.Series, n: int | None = None, lowest: bool = False) -> str:
    """``AT 53.1, BSS 47.2, ...``: the values, highest first (``lowest``: lowest first), the first ``n``."""
    v = values.sort_values(ascending=lowest)
    return ", ".join(f"{label(m)} {x:.1f}" for m, x in (v if n is None else v.iloc[:n]).items())


def _top_is(values: pd.Series, method: str) -> bool | None:
    return None if method not in values or len(values) < 2 else bool(values.idxmax() == method)


def _second_is(values: pd.Series, first: str, second: str) -> bool | None:
    if first not in values or second not in values or len(values) < 3:
        return None
    return bool(list(values.sort_values(ascending=False).index[:2]) == [first, second])


def _lowest_are(values: pd.Series, group: tuple[str, ...]) -> bool | None:
    fam = [m for m in group if m in values]
    if len(fam) < 2 or len(values) <= len(fam):
        return None
    return bool(set(values.nsmallest(len(fam)).index) == set(fam))


def _between(values: pd.Series) -> tuple[bool | None, str]:
    fam, rel = [m for m in HINTON_FAMILY if m in values], [m for m in RELATIONAL if m in values]
    if not fam or not rel or "at" not in values:
        return None, "needs AT, a relational method and a Hinton-family method"
    lo, mid, hi = values[fam].mean(), values[rel].mean(), values["at"]
    return bool(lo < mid < hi), f"Hinton family {lo:.1f}, relational {mid:.1f}, AT {hi:.1f}"


def transfer_observations(mat: pd.DataFrame) -> pd.DataFrame:
    """The paper's observations about Fig. 1 (§IV-D), checked on ``mat``: one row each with ``holds``
    (True, False, or None when a method it needs is missing) and the numbers behind it."""
    methods = [m for m in paper.TRANSFER_SOURCES if m in mat.index]
    teacher = mat.loc[methods, "teacher"].dropna() if "teacher" in mat.columns else pd.Series(dtype=float)
    source = mat.loc["mean", methods].dropna() if "mean" in mat.index else pd.Series(dtype=float)
    between, between_detail = _between(teacher)
    fam = ", ".join(label(m) for m in HINTON_FAMILY)
    rows = [
        ("Examples crafted on the teacher transfer best to AT", _top_is(teacher, "at"), f"top: {ranked(teacher, 1)}"),
        ("BSS comes second after AT in transfer from the teacher", _second_is(teacher, "at", "bss"),
         f"top two: {ranked(teacher, 2)}"),
        ("Relational methods (SP, RKD-D/A/DA) lie between the Hinton family and AT (teacher column, group means)",
         between, between_detail),
        (f"The Hinton family ({fam}) has the lowest transfer from the teacher", _lowest_are(teacher, HINTON_FAMILY),
         f"lowest: {ranked(teacher, 3, lowest=True)}"),
        ("Examples crafted on AT transfer best to the other students (mean row)", _top_is(source, "at"),
         f"top: {ranked(source, 1)}"),
        (f"Examples crafted on the Hinton family ({fam}) transfer least (mean row)",
         _lowest_are(source, HINTON_FAMILY), f"lowest: {ranked(source, 3, lowest=True)}"),
    ]
    return pd.DataFrame(rows, columns=["observation", "holds", "detail"])


def observations_compared(ours: pd.DataFrame | None, theirs: pd.DataFrame) -> pd.DataFrame:
    """The observations checked on both matrices: observation, paper (holds there), paper_detail, kdnb (holds
    here; None without a matrix) and detail (kdnb's numbers)."""
    obs = transfer_observations(theirs).rename(columns={"holds": "paper", "detail": "paper_detail"})
    if ours is None:
        return obs.assign(kdnb=None, detail="")
    return obs.merge(transfer_observations(ours).rename(columns={"holds": "kdnb"}), on="observation")


# ---------------------------------------------------------------------------------------------
# Runs at the paper's protocol beside the paper (the findings themselves: kdnb.report.claims)


def against_paper(cells: pd.DataFrame, dataset: str = "cifar10") -> pd.DataFrame:
    """Runs at the paper's protocol (``kdnb.report.pages.protocol_cells``) beside Table III (or IV): the paper's
    mean and std, ``diff`` = acc − mean and ``within`` (|diff| ≤ 2 std of the paper's seeds; None for a run
    in progress)."""
    theirs = paper.generalization(dataset)[["student", "method", "mean", "std"]]
    m = cells.merge(theirs.rename(columns={"mean": "paper_mean", "std": "paper_std"}), on=["student", "method"],
                    how="left")
    m["diff"] = m["acc"] - m["paper_mean"]
    done = m["state"] == "done"
    m["within"] = [bool(abs(d) <= 2 * s) if ok and pd.notna(d) else None
                   for d, s, ok in zip(m["diff"], m["paper_std"], done, strict=True)]
    return m
