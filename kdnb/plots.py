"""Tables, figures and widgets of the book. Each function takes DataFrames and returns a pandas
Styler, a matplotlib Figure (already closed, so a notebook shows it once, with ``display``),
markdown text or an ipywidgets widget.

Frames used here:

- runs: ``kdnb.study.Study.run`` output (one row per run; columns run_id, role, method, student,
  dataset, seed, noise, imbalance, final_acc, best_acc, status, ...).
- summary: one row per (cell, method) with ``mean``, ``std`` (sample std, ddof = 1) and ``n`` (seeds);
  ``summarize`` makes it from runs, and the paper's tables (``kdnb.paper``) have the same shape.
- curves: per-epoch history of the runs (``curves`` from ``kdnb.store.history``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from pandas.io.formats.style import Styler

from kdnb import paper

ORDER = list(paper.METHODS)
NOT_RUN = "not run"
CSS_BEST = "font-weight: bold;"
CSS_BELOW = "color: #1f5fbf;"  # blue, as the paper's Tables V and VI
CSS_NOT_RUN = "color: #999; font-style: italic;"
CSS_WORSE, CSS_BETTER = "color: #b03a2e;", "color: #1e8449;"
PALETTE = dict(zip(ORDER, sns.color_palette("tab20", 20)[::2] + sns.color_palette("tab20", 20)[1::2][:2],
                   strict=False))
METRICS = {"test_acc": "test accuracy (%)", "train_acc": "training accuracy (%)", "train_loss": "training loss"}
TABLE_STYLES = [{"selector": "th, td", "props": "padding: .25em .6em; text-align: right; white-space: nowrap;"},
                {"selector": "caption", "props": "caption-side: top; font-weight: 600; text-align: left;"}]


def _finish(styler: Styler, caption: str = "", wrap: bool = False) -> Styler:
    """Caption, cell padding and the book's table class (compact font, sideways scrolling)."""
    styles = TABLE_STYLES
    if wrap:  # long text: wrapped and left-aligned
        styles = [*TABLE_STYLES, {"selector": "td, th", "props": "text-align: left; white-space: normal;"}]
    return styler.set_caption(caption).set_table_styles(styles).set_table_attributes('class="kdnb-table"')


# ---------------------------------------------------------------------------------------------
# Labels


def label(value: Any) -> str:
    """The paper's spelling of a method, model or data set name; other values as they are."""
    return paper.LABELS.get(value, str(value)) if isinstance(value, str) else str(value)


def column_label(column: str, value: Any) -> str:
    """Header of a table column: a model name, ``σ = 0.4``, ``γ = 1`` or a data set name."""
    if column == "noise":
        return f"σ = {value:g}"
    if column == "imbalance":
        return "balanced" if value is None or (isinstance(value, float) and math.isnan(value)) else f"γ = {value:g}"
    return label(value)


def _relabel(df: pd.DataFrame, column: str) -> pd.DataFrame:
    out = df.copy()
    out.index = [label(m) for m in df.index]
    if isinstance(df.columns, pd.MultiIndex):
        out.columns = pd.MultiIndex.from_tuples([(column_label(column, a), b) for a, b in df.columns])
    else:
        out.columns = [column_label(column, c) for c in df.columns]
    return out


# ---------------------------------------------------------------------------------------------
# Summaries and tables in the paper's layout


def students(runs: pd.DataFrame) -> pd.DataFrame:
    """The finished student runs."""
    if runs.empty:
        return runs
    return runs[(runs["role"] == "student") & (runs["status"] == "done")]


def summarize(runs: pd.DataFrame, by: Sequence[str] = ("student",), metric: str = "final_acc") -> pd.DataFrame:
    """Mean, sample std (ddof = 1; NaN for one seed) and seed count per (by..., method) of finished students."""
    by = list(by)
    df = students(runs)
    if df.empty:
        return pd.DataFrame(columns=[*by, "method", "mean", "std", "n"])
    g = df.groupby([*by, "method"], dropna=False)[metric]
    out = g.agg(mean="mean", std=lambda s: s.std(ddof=1), n="count").reset_index()
    return out


def paper_summary(table: pd.DataFrame) -> pd.DataFrame:
    """A paper table (``kdnb.paper``) as a summary: mean, std, n = 5 seeds."""
    return table.drop(columns=["bold"], errors="ignore").assign(n=paper.SEEDS)


def wide(summary: pd.DataFrame, column: str, value: str = "mean", methods: Sequence[str] | None = None,
         columns: Sequence[Any] | None = None) -> pd.DataFrame:
    """Methods (rows, paper order) by ``column`` values; cells not in ``summary`` are NaN."""
    methods = list(methods) if methods is not None else ORDER
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


def cell_text(mean: float, std: float, n: float) -> str:
    """``87.64 ± 0.25``; one seed: ``87.64``; nothing: ``not run``."""
    if mean is None or pd.isna(mean):
        return NOT_RUN
    if n is None or pd.isna(n) or n < 2 or pd.isna(std):
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {std:.2f}"


def table_text(summary: pd.DataFrame, column: str, methods: Sequence[str] | None = None,
               columns: Sequence[Any] | None = None) -> pd.DataFrame:
    """The cells of a table as text (mean ± std, ``not run``), methods by ``column`` values."""
    m, s, n = (wide(summary, column, v, methods, columns) for v in ("mean", "std", "n"))
    return pd.DataFrame([[cell_text(m.iat[i, j], s.iat[i, j], n.iat[i, j]) for j in range(m.shape[1])]
                         for i in range(m.shape[0])], index=m.index, columns=m.columns)


def table_css(summary: pd.DataFrame, column: str, methods: Sequence[str] | None = None,
              columns: Sequence[Any] | None = None, below_baseline: bool = False) -> pd.DataFrame:
    """CSS per cell: bold for the best of a column, blue below the baseline (if asked), grey when not run."""
    means = wide(summary, column, "mean", methods, columns)
    css = pd.DataFrame("", index=means.index, columns=means.columns)
    css = css.mask(best_mask(means), CSS_BEST)
    if below_baseline:
        css = css.mask(below_mask(means), css + CSS_BELOW)
    return css.mask(means.isna(), CSS_NOT_RUN)


def style_table(summary: pd.DataFrame, column: str, methods: Sequence[str] | None = None,
                columns: Sequence[Any] | None = None, below_baseline: bool = False, caption: str = "") -> Styler:
    """A table in the paper's layout: mean ± std, best of each column bold, below baseline blue."""
    text = _relabel(table_text(summary, column, methods, columns), column)
    css = _relabel(table_css(summary, column, methods, columns, below_baseline), column)
    return _finish(text.style.apply(lambda _: css, axis=None), caption)


def difference(ours: pd.DataFrame, theirs: pd.DataFrame, column: str, methods: Sequence[str] | None = None,
               columns: Sequence[Any] | None = None) -> pd.DataFrame:
    """ours − theirs (percentage points) of the means, on our columns; NaN where either is missing."""
    cols = list(columns) if columns is not None else list(wide(ours, column).columns)
    return wide(ours, column, "mean", methods, cols) - wide(theirs, column, "mean", methods, cols)


def side_by_side(ours: pd.DataFrame, theirs: pd.DataFrame, column: str, methods: Sequence[str] | None = None,
                 columns: Sequence[Any] | None = None, caption: str = "") -> Styler:
    """For each of our columns: kdnb, paper and Δ = kdnb − paper, per method."""
    cols = list(columns) if columns is not None else list(wide(ours, column).columns)
    a, b = table_text(ours, column, methods, cols), table_text(theirs, column, methods, cols)
    b = b.replace(NOT_RUN, "not in paper")
    d = difference(ours, theirs, column, methods, cols)
    parts, css = {}, {}
    for c in cols:
        parts[(c, "kdnb")], parts[(c, "paper")] = a[c], b[c]
        parts[(c, "Δ")] = d[c].map(lambda v: "" if pd.isna(v) else f"{v:+.2f}")
        css[(c, "kdnb")] = a[c].map(lambda t: CSS_NOT_RUN if t == NOT_RUN else "")
        css[(c, "paper")] = b[c].map(lambda t: CSS_NOT_RUN if t == "not in paper" else "")
        css[(c, "Δ")] = d[c].map(lambda v: "" if pd.isna(v) else CSS_WORSE if v < 0 else CSS_BETTER)
    text, style = _relabel(pd.DataFrame(parts), column), _relabel(pd.DataFrame(css), column)
    return _finish(text.style.apply(lambda _: style, axis=None), caption)


# ---------------------------------------------------------------------------------------------
# Text that reads the numbers


def gains(summary: pd.DataFrame, column: str) -> pd.DataFrame:
    """Gain of each method's mean over the baseline mean in the same column (percentage points)."""
    if summary.empty:
        return pd.DataFrame(columns=[column, "method", "gain"])
    base = summary[summary["method"] == "baseline"].set_index(column)["mean"]
    out = summary[summary["method"] != "baseline"].copy()
    out["gain"] = out["mean"].to_numpy() - out[column].map(base).to_numpy(dtype=float)
    return out[[column, "method", "gain"]].dropna().reset_index(drop=True)


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


# ---------------------------------------------------------------------------------------------
# Figures


def _closed(fig: Figure) -> Figure:
    plt.close(fig)
    return fig


def plot_gains(ours: pd.DataFrame, theirs: pd.DataFrame, column: str, title: str = "") -> Figure:
    """Gain over the baseline per method, kdnb beside the paper, one panel per column of ours."""
    cols = list(wide(ours, column).columns)
    g = pd.concat([gains(ours, column).assign(source="kdnb"),
                   gains(theirs[theirs[column].isin(cols)], column).assign(source="paper")], ignore_index=True)
    n = max(len(cols), 1)
    fig, axes = plt.subplots(1, n, figsize=(min(5.5 * n, 16), 3.4), squeeze=False, sharey=True)
    order = [label(m) for m in ORDER if m != "baseline" and m in set(g["method"])]
    for ax, c in zip(axes[0], cols or [None], strict=False):
        d = g[g[column] == c].assign(method=lambda x: x["method"].map(label))
        if len(d):
            sns.barplot(data=d, x="method", y="gain", hue="source", order=order, hue_order=["kdnb", "paper"],
                        palette=["#4c72b0", "#bbbbbb"], ax=ax)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_title(column_label(column, c) if c is not None else "no runs")
        ax.set_xlabel("")
        ax.set_ylabel("gain over baseline (points)")
        ax.tick_params(axis="x", rotation=60)
        if ax.get_legend() is not None and ax is not axes[0][0]:
            ax.get_legend().remove()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _closed(fig)


def plot_vs_condition(runs: pd.DataFrame, theirs: pd.DataFrame, column: str, title: str = "") -> Figure:
    """Accuracy against the noise rate or imbalance ratio per method: kdnb (mean ± sd over seeds) and the paper."""
    df = students(runs).dropna(subset=[column]).assign(label=lambda d: d["method"].map(label))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    hue_order = [label(m) for m in ORDER if m in set(df["method"]) | set(theirs["method"])]
    pal = {label(m): PALETTE[m] for m in ORDER}
    if len(df):
        sns.lineplot(data=df, x=column, y="final_acc", hue="label", hue_order=hue_order, palette=pal,
                     errorbar="sd", marker="o", ax=axes[0])
    p = theirs.assign(label=lambda d: d["method"].map(label))
    sns.lineplot(data=p, x=column, y="mean", hue="label", hue_order=hue_order, palette=pal, marker="o",
                 ax=axes[1], legend=False)
    sym = "σ (noise rate)" if column == "noise" else "γ (imbalance ratio)"
    for ax, t in zip(axes, ("kdnb", "paper"), strict=True):
        ax.set_title(t)
        ax.set_xlabel(sym)
        ax.set_ylabel("final test accuracy (%)")
    if axes[0].get_legend() is not None:
        sns.move_legend(axes[0], "upper left", bbox_to_anchor=(2.25, 1.0), title="method", frameon=False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _closed(fig)


def curves(runs: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """Per-epoch history of the finished runs in ``runs``, final training stage only, with their data set
    and role and a ``setting`` label (data set, student, noise, imbalance: the parts that vary)."""
    cols = ["run_id", "method", "student", "seed", "noise", "imbalance", "epoch", "dataset", "role", "setting"]
    if runs.empty or history.empty:
        return pd.DataFrame(columns=cols)
    done = runs[runs["status"] == "done"]
    h = history[history["run_id"].isin(set(done["run_id"]))].dropna(subset=["epoch"]).copy()
    if "stage" in h:
        h = h[h["stage"] == h.groupby("run_id")["stage"].transform("last")]
    meta = done[["run_id", "dataset", "role"]].drop_duplicates("run_id")
    h = h.merge(meta, on="run_id")
    h["epoch"] = h["epoch"].astype(int)
    h["setting"] = setting_labels(h)
    return h.reset_index(drop=True)


def setting_labels(df: pd.DataFrame, dims: Sequence[str] = ("dataset", "student", "noise", "imbalance")) -> pd.Series:
    """A short label per row from the dimensions that vary in ``df`` (e.g. ``ResNet-8 · σ = 0.4``)."""
    vary = [d for d in dims if d in df and df[d].astype(str).nunique() > 1]
    if not vary:
        vary = [d for d in ("student",) if d in df]
    return df.apply(lambda r: " · ".join(column_label(d, r[d]) for d in vary), axis=1).astype(str)


def plot_curves(cur: pd.DataFrame, metric: str = "test_acc", hue: str = "method", title: str = "") -> Figure:
    """Learning curves: ``metric`` per epoch, mean ± sd over seeds, one line per ``hue`` value, one panel per
    setting."""
    settings = sorted(cur["setting"].unique()) if len(cur) else [""]
    n = len(settings)
    ncol = min(n, 3)
    nrow = math.ceil(n / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.2 * ncol, 3.4 * nrow), squeeze=False)
    d = cur.assign(label=cur[hue].map(label) if hue == "method" else cur[hue])
    order = [label(m) for m in ORDER if m in set(cur.get("method", []))] if hue == "method" else None
    pal = {label(m): PALETTE[m] for m in ORDER} if hue == "method" else None
    for i, (ax, s) in enumerate(zip(axes.flat, settings, strict=False)):
        part = d[d["setting"] == s]
        if len(part):
            sns.lineplot(data=part, x="epoch", y=metric, hue="label", hue_order=order, palette=pal, errorbar="sd",
                         ax=ax, legend=i == 0)
        ax.set_title(s)
        ax.set_ylabel(METRICS.get(metric, metric))
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    if axes[0][0].get_legend() is not None:
        sns.move_legend(axes[0][0], "upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, title=None)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _closed(fig)


def curves_grid(cur: pd.DataFrame, metrics: Sequence[str] = tuple(METRICS)) -> Figure:
    """Static small multiples covering every choice of the explorer: one row per method, one column per
    metric, one line per setting (data set, student, condition), mean ± sd over seeds."""
    methods = [m for m in ORDER if m in set(cur["method"])] if len(cur) else []
    nrow, ncol = max(len(methods), 1), len(metrics)
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.5 * ncol + 1.8, 1.45 * nrow + 0.5), squeeze=False,
                             sharex=True, sharey="col")
    hue_order = sorted(cur["setting"].unique()) if len(cur) else []
    for i, m in enumerate(methods):
        part = cur[cur["method"] == m]
        for j, metric in enumerate(metrics):
            ax = axes[i][j]
            if metric in part and part[metric].notna().any():
                sns.lineplot(data=part, x="epoch", y=metric, hue="setting", hue_order=hue_order, errorbar="sd",
                             ax=ax, legend=(i == 0 and j == ncol - 1))
            ax.set_ylabel(label(m) if j == 0 else "")
            ax.set_title(METRICS.get(metric, metric) if i == 0 else "", fontsize=9)
    if methods and axes[0][ncol - 1].get_legend() is not None:
        sns.move_legend(axes[0][ncol - 1], "upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, title=None)
    fig.tight_layout()
    return _closed(fig)


# ---------------------------------------------------------------------------------------------
# Teachers (Table II)


def teacher_table(truns: pd.DataFrame) -> pd.DataFrame:
    """One row per teacher (data set, architecture, noise, imbalance): the seed used (highest final
    accuracy), its accuracy, and mean ± std over the teacher seeds."""
    cols = ["dataset", "teacher", "noise", "imbalance", "acc", "mean", "std", "n", "run_id"]
    if truns.empty:
        return pd.DataFrame(columns=cols)
    df = truns.assign(imbalance=pd.to_numeric(truns["imbalance"], errors="coerce").astype(float),
                      noise=truns["noise"].astype(float))
    rows = []
    for key, g in df.groupby(["dataset", "student", "noise", "imbalance"], dropna=False, sort=False):
        best = g.loc[g["final_acc"].idxmax()]
        rows.append(dict(zip(cols[:4], key, strict=True), acc=best["final_acc"], mean=g["final_acc"].mean(),
                         std=g["final_acc"].std(ddof=1), n=len(g), run_id=best["run_id"]))
    return pd.DataFrame(rows, columns=cols)


def configuration(noise: float, imbalance: float) -> str:
    if noise:
        return f"σ = {noise:g}"
    if imbalance is not None and not pd.isna(imbalance):
        return f"γ = {imbalance:g}"
    return "default"


def teacher_comparison(ours: pd.DataFrame, theirs: pd.DataFrame) -> pd.DataFrame:
    """Table II: our teachers and the paper's, outer-joined on data set, architecture and configuration."""
    key = ["dataset", "teacher", "noise", "imbalance"]
    a = ours.assign(imbalance=ours["imbalance"].astype(float))
    b = theirs[key + ["acc"]].rename(columns={"acc": "paper"}).assign(imbalance=theirs["imbalance"].astype(float))
    m = a.merge(b, on=key, how="outer")
    m["diff"] = m["acc"] - m["paper"]
    m["configuration"] = [configuration(n, g) for n, g in zip(m["noise"], m["imbalance"], strict=True)]
    return m.sort_values(["dataset", "noise", "imbalance", "teacher"], na_position="first").reset_index(drop=True)


def style_teachers(cmp: pd.DataFrame, caption: str = "") -> Styler:
    """Table II as the page shows it; ``not run`` / ``not in paper`` where one side is missing."""
    text = pd.DataFrame({
        "Data set": cmp["dataset"].map(label), "Architecture": cmp["teacher"].map(label),
        "Configuration": cmp["configuration"],
        "kdnb (%)": cmp["acc"].map(lambda v: NOT_RUN if pd.isna(v) else f"{v:.2f}"),
        "kdnb, all seeds": [cell_text(m, s, n) for m, s, n in zip(cmp["mean"], cmp["std"], cmp["n"],
                                                                              strict=True)],
        "paper (%)": cmp["paper"].map(lambda v: "not in paper" if pd.isna(v) else f"{v:.2f}"),
        "Δ": cmp["diff"].map(lambda v: "" if pd.isna(v) else f"{v:+.2f}"),
    })
    css = text.map(lambda t: CSS_NOT_RUN if t in (NOT_RUN, "not in paper") else "")
    css["Δ"] = cmp["diff"].map(lambda v: "" if pd.isna(v) else CSS_WORSE if v < 0 else CSS_BETTER).to_numpy()
    return _finish(text.style.apply(lambda _: css, axis=None).hide(axis="index"), caption)


def plot_teachers(cmp: pd.DataFrame) -> Figure:
    """Teacher accuracy per configuration: kdnb (the seed used) beside the paper."""
    d = cmp.assign(row=[f"{label(a)} {label(b)} {c}" for a, b, c in
                        zip(cmp["dataset"], cmp["teacher"], cmp["configuration"], strict=True)])
    long = pd.concat([d.assign(source="kdnb", value=d["acc"]), d.assign(source="paper", value=d["paper"])])
    long = long.dropna(subset=["value"])
    fig, ax = plt.subplots(figsize=(8, 0.35 * max(len(d), 2) + 1.2))
    if len(long):
        sns.barplot(data=long, y="row", x="value", hue="source", hue_order=["kdnb", "paper"],
                    palette=["#4c72b0", "#bbbbbb"], order=list(d["row"]), ax=ax)
    ax.set_xlabel("test accuracy (%)")
    ax.set_ylabel("")
    fig.tight_layout()
    return _closed(fig)


# ---------------------------------------------------------------------------------------------
# Transferability (Fig. 1)


def _transfer_labels(mat: pd.DataFrame) -> pd.DataFrame:
    out = mat.copy()
    out.index = [label(i) for i in mat.index]
    out.columns = [label(c) for c in mat.columns]
    return out


def transfer_difference(ours: pd.DataFrame, theirs: pd.DataFrame) -> pd.DataFrame:
    """ours − theirs on the cells both have (rows and columns in our order)."""
    rows = [r for r in ours.index if r in theirs.index]
    cols = [c for c in ours.columns if c in theirs.columns]
    return ours.loc[rows, cols] - theirs.loc[rows, cols]


def style_transfer(mat: pd.DataFrame, caption: str = "") -> Styler:
    """A transfer matrix as a table: rates (%) with one decimal, shaded; NaN as ``n/a`` (no jointly-correct
    image)."""
    m = _transfer_labels(mat)
    styler = m.style.format("{:.1f}", na_rep="n/a").background_gradient(cmap="Reds", axis=None, vmin=0, vmax=100)
    return _finish(styler.highlight_null(props="background-color: #eee; color: #999;"), caption)


def plot_transfer(mats: dict[str, pd.DataFrame], diff: pd.DataFrame | None = None) -> Figure:
    """Heatmaps of transfer matrices, one above the other (rows: target, columns: source), and a difference map."""
    panels = list(mats.items()) + ([("difference (kdnb − paper)", diff)] if diff is not None else [])
    n = len(panels)
    size = max(max(len(m.columns) for _, m in panels), 4)
    fig, axes = plt.subplots(n, 1, figsize=(0.55 * size + 1.6, (0.42 * size + 1.3) * n), squeeze=False)
    for ax, (name, m) in zip(axes[:, 0], panels, strict=True):
        d = _transfer_labels(m)
        is_diff = name.startswith("difference")
        sns.heatmap(d, annot=True, fmt=".0f", cmap="RdBu_r" if is_diff else "Reds", center=0 if is_diff else None,
                    vmin=None if is_diff else 0, vmax=None if is_diff else 100, cbar=False, ax=ax,
                    annot_kws={"fontsize": 8}, linewidths=0.3, linecolor="white")
        ax.set_title(name)
        ax.set_xlabel("source (examples crafted on)")
        ax.set_ylabel("target (attacked)")
    fig.tight_layout()
    return _closed(fig)


def style_observations(obs: pd.DataFrame) -> Styler:
    """The paper's observations with whether each holds in the paper and here."""
    def verdict(v: Any) -> str:
        return "cannot check" if v is None or pd.isna(v) else "holds" if v else "does not hold"

    text = pd.DataFrame({"observation (paper §IV-D)": obs["observation"],
                         "paper": obs["paper"].map(verdict), "kdnb": obs["kdnb"].map(verdict),
                         "agreement": [("—" if pd.isna(b) or b is None else "agree" if a == b else "disagree")
                                       for a, b in zip(obs["paper"], obs["kdnb"], strict=True)],
                         "kdnb numbers": obs["detail"]})
    css = text.map(lambda t: CSS_BETTER if t == "agree" else CSS_WORSE if t == "disagree" else "")
    return _finish(text.style.apply(lambda _: css, axis=None).hide(axis="index"), wrap=True)


# ---------------------------------------------------------------------------------------------
# Explorer widget


def explorer(cur: pd.DataFrame, runs: pd.DataFrame, metrics: Sequence[str] = tuple(METRICS)) -> Any:
    """Dropdowns (data set, architecture, condition where it varies, method, metric) → the learning curves of
    the chosen runs (baseline dashed for comparison) and a table of their seeds."""
    import ipywidgets as widgets
    from IPython.display import display

    dims = [("dataset", "data set"), ("student", "architecture")]
    dims += [(d, name) for d, name in (("noise", "noise σ"), ("imbalance", "imbalance γ"))
             if d in cur and cur[d].astype(str).nunique() > 1]
    d = cur.copy()
    for col, _ in dims:
        d[f"_{col}"] = [column_label(col, v) if col in ("noise", "imbalance") else label(v) for v in d[col]]
    meta = runs.drop_duplicates("run_id").set_index("run_id")

    def show(**choice: str) -> None:
        sel = d
        for col, _ in dims:
            sel = sel[sel[f"_{col}"] == choice[col]]
        metric, method = choice["metric"], choice["method"]
        fig, ax = plt.subplots(figsize=(7, 3.6))
        for m, style in ((method, "-"), ("baseline", "--")):
            part = sel[sel["method"] == m]
            for k, (seed, g) in enumerate(part.groupby("seed")):
                ax.plot(g["epoch"], g[metric], style, color=PALETTE.get(m, "grey") if m == method else "grey",
                        alpha=max(1.0 - 0.2 * k, 0.3), marker="o", ms=3, label=f"{label(m)} seed {seed}")
            if m == "baseline" or method == "baseline":
                break
        ax.set_xlabel("epoch")
        ax.set_ylabel(METRICS.get(metric, metric))
        ax.set_title(" · ".join(choice[c] for c, _ in dims) + f" · {label(method)}")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(frameon=False, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
        else:
            ax.text(0.5, 0.5, "no runs for this choice", ha="center", transform=ax.transAxes)
        fig.tight_layout()
        display(fig)
        plt.close(fig)
        ids = sel[sel["method"] == method]["run_id"].unique()
        tab = meta.loc[[i for i in ids if i in meta.index], ["seed", "final_acc", "best_acc", "epochs", "wall_s"]]
        if len(tab):
            display(tab.sort_values("seed").rename(columns={"final_acc": "final acc (%)", "best_acc": "best acc (%)",
                                                            "wall_s": "train time (s)"}).round(2))

    def dropdown(options: list, description: str) -> Any:
        first = options[0][1] if options and isinstance(options[0], tuple) else (options[0] if options else None)
        return widgets.Dropdown(options=options, value=first, description=description,
                                style={"description_width": "initial"})

    controls = {col: dropdown(sorted(d[f"_{col}"].unique()), name) for col, name in dims}
    methods = [m for m in ORDER if m in set(d["method"])]
    controls["method"] = dropdown([(label(m), m) for m in methods], "method")
    controls["metric"] = dropdown([(METRICS[m], m) for m in metrics if m in d], "metric")
    return widgets.interactive(show, **controls)


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


def transfer_long(mats: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Matrices (target × source) as rows: source, target, rate, and which matrix (``result``)."""
    rows = []
    for name, m in mats.items():
        for src in m.columns:
            for tgt in m.index:
                if tgt != "mean" and src != "mean":
                    rows.append({"result": name, "source": src, "target": tgt, "rate": m.loc[tgt, src]})
    return pd.DataFrame(rows)


def plot_transfer_bars(long: pd.DataFrame, source: str, ax: Any = None) -> Figure | None:
    """Transfer rate of the examples crafted on ``source`` to every target, one bar per matrix."""
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 3.2))
    d = long[long["source"] == source].dropna(subset=["rate"]).assign(target=lambda x: x["target"].map(label))
    order = [label(m) for m in ORDER if m in set(long["target"])]
    if len(d):
        sns.barplot(data=d, x="target", y="rate", hue="result", order=order, palette=["#c0392b", "#bbbbbb"],
                    hue_order=[r for r in ("kdnb", "paper") if r in set(long["result"])], ax=ax)
    ax.set_ylim(0, 100)
    ax.set_title(f"examples crafted on {label(source)}")
    ax.set_xlabel("target")
    ax.set_ylabel("success rate (%)")
    ax.tick_params(axis="x", rotation=60)
    if fig is not None:
        fig.tight_layout()
        return _closed(fig)
    return None


def transfer_explorer(long: pd.DataFrame) -> Any:
    """A dropdown of source models → the success rate of their examples on every target, kdnb beside the paper."""
    import ipywidgets as widgets
    from IPython.display import display

    sources = [s for s in [*ORDER, "teacher"] if s in set(long[long["result"] == "kdnb"]["source"])]

    def show(source: str) -> None:
        display(plot_transfer_bars(long, source))

    return widgets.interactive(show, source=widgets.Dropdown(options=[(label(s), s) for s in sources],
                                                             value=sources[0] if sources else None,
                                                             description="source"))


def transfer_grid(long: pd.DataFrame) -> Figure:
    """Static small multiples of the explorer: one panel per source model."""
    sources = [s for s in [*ORDER, "teacher"] if s in set(long[long["result"] == "kdnb"]["source"])] or ["teacher"]
    ncol = min(3, len(sources))
    nrow = math.ceil(len(sources) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.2 * ncol, 3.3 * nrow), squeeze=False)
    for i, (ax, s) in enumerate(zip(axes.flat, sources, strict=False)):
        plot_transfer_bars(long, s, ax=ax)
        if i and ax.get_legend() is not None:
            ax.get_legend().remove()
    for ax in list(axes.flat)[len(sources):]:
        ax.set_visible(False)
    fig.tight_layout()
    return _closed(fig)
