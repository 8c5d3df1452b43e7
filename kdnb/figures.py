"""The book's figures (matplotlib and seaborn), from the frames of ``kdnb.analysis``.

Each function returns a matplotlib Figure, already closed so that a notebook shows it once, with
``display``. Figures are drawn in the book's style (``STYLE``) without touching the global rcParams.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from kdnb.analysis import METRICS, ORDER, column_label, gains, label, sources_of, students, transfer_difference, wide

STYLE = {"figure.dpi": 96, "axes.titlesize": 10}
PALETTE = dict(zip(ORDER, sns.color_palette("tab20", 20)[::2] + sns.color_palette("tab20", 20)[1::2][:2],
                   strict=False))
KDNB_PAPER = ["#4c72b0", "#bbbbbb"]  # kdnb beside the paper


def styled(draw: Callable[..., Figure | None]) -> Callable[..., Figure | None]:
    """Draw in the book's style (``STYLE``, seaborn's user warnings silenced); close the figure it returns."""
    @functools.wraps(draw)
    def wrapper(*args: Any, **kwargs: Any) -> Figure | None:
        with plt.rc_context(STYLE), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module="seaborn")
            fig = draw(*args, **kwargs)
        if fig is not None:
            plt.close(fig)
        return fig
    return wrapper


def _method_palette() -> dict[str, Any]:
    return {label(m): PALETTE[m] for m in ORDER}


def _legend_outside(ax: Axes, anchor: tuple[float, float] = (1.0, 1.0), **kw: Any) -> None:
    if ax.get_legend() is not None:
        sns.move_legend(ax, "upper left", bbox_to_anchor=anchor, frameon=False, **{"title": None, **kw})


# ---------------------------------------------------------------------------------------------
# Tables III-VI


@styled
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
                        palette=KDNB_PAPER, ax=ax)
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
    return fig


@styled
def plot_vs_condition(runs: pd.DataFrame, theirs: pd.DataFrame, column: str, title: str = "") -> Figure:
    """Accuracy against the noise rate or imbalance ratio per method: kdnb (mean ± sd over seeds) and the paper."""
    df = students(runs).dropna(subset=[column]).assign(label=lambda d: d["method"].map(label))
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    hue_order = [label(m) for m in ORDER if m in set(df["method"]) | set(theirs["method"])]
    if len(df):
        sns.lineplot(data=df, x=column, y="final_acc", hue="label", hue_order=hue_order, palette=_method_palette(),
                     errorbar="sd", marker="o", ax=axes[0])
    p = theirs.assign(label=lambda d: d["method"].map(label))
    sns.lineplot(data=p, x=column, y="mean", hue="label", hue_order=hue_order, palette=_method_palette(),
                 marker="o", ax=axes[1], legend=False)
    sym = "σ (noise rate)" if column == "noise" else "γ (imbalance ratio)"
    for ax, t in zip(axes, ("kdnb", "paper"), strict=True):
        ax.set_title(t)
        ax.set_xlabel(sym)
        ax.set_ylabel("final test accuracy (%)")
    _legend_outside(axes[0], (2.25, 1.0), title="method")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# Learning curves


@styled
def plot_curves(cur: pd.DataFrame, metric: str = "test_acc", hue: str = "method", title: str = "") -> Figure:
    """Learning curves: ``metric`` per epoch, mean ± sd over seeds, one line per ``hue`` value, one panel per
    setting."""
    settings = sorted(cur["setting"].unique()) if len(cur) else [""]
    n = len(settings)
    ncol = min(n, 3)
    fig, axes = plt.subplots(math.ceil(n / ncol), ncol, figsize=(5.2 * ncol, 3.4 * math.ceil(n / ncol)),
                             squeeze=False)
    by_method = hue == "method"
    d = cur.assign(label=cur[hue].map(label) if by_method else cur[hue])
    order = [label(m) for m in ORDER if m in set(cur.get("method", []))] if by_method else None
    for i, (ax, s) in enumerate(zip(axes.flat, settings, strict=False)):
        part = d[d["setting"] == s]
        if len(part):
            sns.lineplot(data=part, x="epoch", y=metric, hue="label", hue_order=order,
                         palette=_method_palette() if by_method else None, errorbar="sd", ax=ax, legend=i == 0)
        ax.set_title(s)
        ax.set_ylabel(METRICS.get(metric, metric))
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    _legend_outside(axes[0][0])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


@styled
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
    if methods:
        _legend_outside(axes[0][ncol - 1], (1.02, 1.0))
    fig.tight_layout()
    return fig


@styled
def plot_seed_curves(sel: pd.DataFrame, method: str, metric: str, title: str) -> Figure:
    """The explorer's view: ``metric`` per epoch of every seed of ``method`` in ``sel``, the baseline dashed."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for m, style in ((method, "-"), ("baseline", "--")):
        for k, (seed, g) in enumerate(sel[sel["method"] == m].groupby("seed")):
            ax.plot(g["epoch"], g[metric], style, color=PALETTE.get(m, "grey") if m == method else "grey",
                    alpha=max(1.0 - 0.2 * k, 0.3), marker="o", ms=3, label=f"{label(m)} seed {seed}")
        if method == "baseline":
            break
    ax.set_xlabel("epoch")
    ax.set_ylabel(METRICS.get(metric, metric))
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(frameon=False, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    else:
        ax.text(0.5, 0.5, "no runs for this choice", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# Teachers (Table II)


@styled
def plot_teachers(cmp: pd.DataFrame) -> Figure:
    """Teacher accuracy per configuration: kdnb (the seed used) beside the paper."""
    d = cmp.assign(row=[f"{label(a)} {label(b)} {c}" for a, b, c in
                        zip(cmp["dataset"], cmp["teacher"], cmp["configuration"], strict=True)])
    long = pd.concat([d.assign(source="kdnb", value=d["acc"]), d.assign(source="paper", value=d["paper"])])
    long = long.dropna(subset=["value"])
    fig, ax = plt.subplots(figsize=(8, 0.35 * max(len(d), 2) + 1.2))
    if len(long):
        sns.barplot(data=long, y="row", x="value", hue="source", hue_order=["kdnb", "paper"],
                    palette=KDNB_PAPER, order=list(d["row"]), ax=ax)
    ax.set_xlabel("test accuracy (%)")
    ax.set_ylabel("")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# Transferability (Fig. 1)


@styled
def plot_transfer(ours: pd.DataFrame, theirs: pd.DataFrame, name: str = "kdnb") -> Figure:
    """Heatmaps, one above the other (rows: target, columns: source): ours (titled ``name``), the paper's,
    and the difference ours − paper."""
    panels = [(name, ours, False), ("paper", theirs, False),
              ("difference (kdnb − paper)", transfer_difference(ours, theirs), True)]
    size = max(max(len(m.columns) for _, m, _ in panels), 4)
    fig, axes = plt.subplots(3, 1, figsize=(0.55 * size + 1.6, (0.42 * size + 1.3) * 3), squeeze=False)
    for ax, (title, m, is_diff) in zip(axes[:, 0], panels, strict=True):
        d = m.rename(index=label, columns=label)
        sns.heatmap(d, annot=True, fmt=".0f", cmap="RdBu_r" if is_diff else "Reds", center=0 if is_diff else None,
                    vmin=None if is_diff else 0, vmax=None if is_diff else 100, cbar=False, ax=ax,
                    annot_kws={"fontsize": 8}, linewidths=0.3, linecolor="white")
        ax.set_title(title)
        ax.set_xlabel("source (examples crafted on)")
        ax.set_ylabel("target (attacked)")
    fig.tight_layout()
    return fig


def _transfer_bars(long: pd.DataFrame, source: str, ax: Axes) -> None:
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


@styled
def plot_transfer_bars(long: pd.DataFrame, source: str) -> Figure:
    """Transfer rate of the examples crafted on ``source`` to every target, one bar per matrix."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    _transfer_bars(long, source, ax)
    fig.tight_layout()
    return fig


@styled
def transfer_grid(long: pd.DataFrame) -> Figure:
    """Static small multiples of the transfer explorer: one panel per source model."""
    sources = sources_of(long) or ["teacher"]
    ncol = min(3, len(sources))
    nrow = math.ceil(len(sources) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.2 * ncol, 3.3 * nrow), squeeze=False)
    for i, (ax, s) in enumerate(zip(axes.flat, sources, strict=False)):
        _transfer_bars(long, s, ax)
        if i and ax.get_legend() is not None:
            ax.get_legend().remove()
    for ax in list(axes.flat)[len(sources):]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# Does it reproduce?

VERDICT_COLORS = {"agrees": "#1e8449", "disagrees": "#b03a2e", "inconclusive": "#777777", "not testable": "#bbbbbb"}


@styled
def plot_claims(claims: pd.DataFrame) -> Figure | None:
    """kdnb's contrast per claim (``analysis.claims_table``) with its 95 % interval, coloured by verdict, and
    the paper's contrast (grey diamond); the x-axis is cut at a few times the largest mean (intervals reaching
    beyond it run off the edge). None when no claim was tested."""
    c = claims[claims["n"] > 0].iloc[::-1]
    if c.empty:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(c) + 1.0))
    y = range(len(c))
    for yi, r in zip(y, c.itertuples(index=False), strict=True):
        color = VERDICT_COLORS[r.verdict]
        ax.errorbar(r.kdnb, yi, xerr=[[r.kdnb - r.lo], [r.hi - r.kdnb]] if not pd.isna(r.lo) else None, fmt="o",
                    color=color, capsize=2, lw=1.2)
        ax.plot(r.paper, yi, "D", color=KDNB_PAPER[1], markeredgecolor="#555", ms=5, zorder=3)
    reach = max(c["kdnb"].abs().max(), c["paper"].abs().max()) * 1.6 + 1
    ax.set_xlim(-reach, reach)
    ax.axvline(0, color="#333", lw=0.8)
    ax.set_yticks(list(y), [f"{i}" for i in c["id"]])
    ax.set_xlabel("contrast (points): kdnb, mean and 95 % CI over seeds (dot, coloured by verdict); paper (diamond)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig
