"""The book's figures (matplotlib and seaborn), from the frames of ``kdnb.report.analysis``.

Each function returns a matplotlib Figure, already closed so that a notebook shows it once, with
``display``. Figures are drawn in the book's style (``STYLE``) without touching the global rcParams,
at most ``WIDTH`` wide so that the page shows them at their own size, with type of at least 9 pt
(12 px at 96 dpi). Several methods share a figure as small multiples (one panel each), never as a
dozen overlapping coloured lines.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from kdnb.report.analysis import (
    METRICS,
    ORDER,
    column_label,
    gains,
    label,
    model_order,
    regime_label,
    sources_of,
)

# The book's output column is 676 px wide, 7.04 in at 96 dpi: a wider figure would be shrunk, and its type
# with it. 6.8 in leaves room for the few pixels that bbox_inches="tight" adds.
WIDTH = 6.8
STYLE = {"figure.dpi": 96, "font.size": 9, "axes.titlesize": 9.5, "axes.labelsize": 9, "xtick.labelsize": 9,
         "ytick.labelsize": 9, "legend.fontsize": 9, "figure.titlesize": 10, "axes.spines.top": False,
         "axes.spines.right": False}
PALETTE = dict(zip(ORDER, sns.color_palette("tab20", 20)[::2] + sns.color_palette("tab20", 20)[1::2][:2],
                   strict=False))
SETTING_COLORS = sns.color_palette("tab10", 10)
KDNB_PAPER = ["#4c72b0", "#bbbbbb"]  # kdnb beside the paper
BASELINE = dict(color="#8c8c8c", lw=1.1, ls="--", alpha=0.8)  # the faint reference line in every panel
# Metrics that are each method's own objective (the training loss adds the distillation terms to the
# cross-entropy): never drawn against the baseline's, never on a shared scale.
OWN_OBJECTIVE = ("train_loss",)


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


def as_html(fig: Figure, alt: str) -> str:
    """``fig`` as an inline PNG ``<img>`` (HTML), e.g. to fold a figure under a summary (``tables.details``)."""
    import base64
    import html
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=STYLE["figure.dpi"], facecolor="white", bbox_inches="tight")
    src = base64.b64encode(buf.getvalue()).decode("ascii")
    alt = html.escape(alt, quote=True)
    return f'<img src="data:image/png;base64,{src}" alt="{alt}" style="max-width:100%;height:auto">'


def _grid(n: int, ncol: int, panel_h: float, **kw: Any) -> tuple[Figure, np.ndarray]:
    """A figure ``WIDTH`` wide of ``n`` panels in rows of ``ncol``; the unused panels hidden, and the x tick
    labels under the lowest panel of each column (above a hidden one too)."""
    ncol = max(min(n, ncol), 1)
    nrow = math.ceil(max(n, 1) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(WIDTH, panel_h * nrow + 0.7), squeeze=False, layout="constrained",
                             **kw)
    for i, ax in enumerate(axes.flat):
        ax.set_visible(i < max(n, 1))
        ax.tick_params(labelbottom=i + ncol >= n)
    return fig, axes


def _lowest(axes: np.ndarray, n: int) -> list[Axes]:
    """The lowest shown panel of each column of a ``_grid`` of ``n`` panels."""
    return [axes.flat[max(i for i in range(n) if i % axes.shape[1] == j)] for j in range(min(n, axes.shape[1]))]


def _scales_differ(values: pd.Series, by: pd.Series) -> bool:
    """True when one panel's largest value is over twice another's: sharing an axis would flatten the small
    ones (BSS's training loss, about 13, against the others' 1-2)."""
    top = values.abs().groupby(by).max().dropna()
    return len(top) > 1 and bool(top.max() > 2 * top.min())


def _legend_on_top(fig: Figure, handles: list[Any], title: str = "") -> None:
    """The figure's legend above its panels, under its title (one block: a separate suptitle would overlap)."""
    if handles:  # as many columns as fit the figure's width (about 90 characters of legend type)
        longest = max(len(h.get_label()) for h in handles) + 5
        fig.legend(handles=handles, loc="outside upper center", ncol=max(1, min(len(handles), 4, 90 // longest)),
                   frameon=False,
                   title=title or None, title_fontproperties={"size": STYLE["figure.titlesize"]})
    elif title:
        fig.suptitle(title)


def _columns(values: Any, column: str) -> list[Any]:
    """The distinct values of a table column in the paper's order (models) or ascending (σ, γ)."""
    vals = pd.Series(list(values)).dropna().unique().tolist()
    return sorted(vals, key=model_order) if column == "student" else sorted(vals)


# ---------------------------------------------------------------------------------------------
# Tables III-VI


@styled
def plot_gains(paired: pd.DataFrame, theirs: pd.DataFrame, column: str, title: str = "", ours_label: str = "kdnb",
               theirs_label: str = "paper") -> Figure:
    """Gain over the baseline per method, one panel per column value of ``paired``
    (``analysis.paired_differences``): kdnb's mean paired per-seed difference with its 95 % interval (a solid
    bar where the interval excludes 0, a pale one where it does not), beside the paper's gain
    (``analysis.gains`` of its table; no interval, its tables give no per-seed values); ``ours_label`` and
    ``theirs_label`` name each side's regime in the legend. The y-axis reaches every whisker."""
    cols = _columns(paired[column], column) if len(paired) else []
    pg = gains(theirs, column)
    methods = [m for m in ORDER if m != "baseline" and m in set(paired.get("method", [])) | set(pg["method"])]
    fig, axes = _grid(len(cols), 1, 2.3, sharey=True)
    x = np.arange(len(methods))
    reach = [1.0]
    for ax, c in zip(axes[:, 0], cols, strict=False):
        ours = paired[paired[column] == c].set_index("method").reindex(methods)
        theirs_gain = pg[pg[column] == c].set_index("method")["gain"].reindex(methods)
        resolved = ((ours["lo"] > 0) | (ours["hi"] < 0)).to_numpy()
        has = ours["lo"].notna().to_numpy()
        alone = ~has & ours["mean"].notna().to_numpy()  # one seed: no interval at all
        pale = {"alpha": 0.35}
        for show, style, what in ((resolved, {}, "95 % CI excludes 0"), (has & ~resolved, pale, "95 % CI includes 0"),
                                  (alone, {**pale, "hatch": "///", "edgecolor": "white"}, "one seed, no interval")):
            ax.bar(x - 0.2, ours["mean"].where(show), 0.4, color=KDNB_PAPER[0], **style,
                   label=f"{ours_label}: {what}" if show.any() else "_")
        ax.errorbar(x - 0.2, ours["mean"], yerr=[ours["mean"] - ours["lo"], ours["hi"] - ours["mean"]], fmt="none",
                    ecolor="#222", elinewidth=1, capsize=2)
        ax.bar(x + 0.2, theirs_gain, 0.4, color=KDNB_PAPER[1], label=theirs_label)
        ax.axhline(0, color="black", lw=0.8)
        ax.set_title(f"{column_label(column, c)}: gain in final-epoch accuracy over the baseline")
        ax.set_ylabel("points")
        ax.set_xticks(x, [label(m) for m in methods], rotation=45, ha="right", rotation_mode="anchor")
        reach.append(float(np.nanmax(np.abs([*ours["mean"], *ours["lo"], *ours["hi"], *theirs_gain, 0]))))
    top = max(reach) * 1.08
    axes[0, 0].set_ylim(-top, top)
    handles, labels = axes[0, 0].get_legend_handles_labels() if cols else ([], [])
    _legend_on_top(fig, [h for h, lab in zip(handles, labels, strict=True) if not lab.startswith("_")], title)
    return fig


@styled
def plot_gain_trend(paired: pd.DataFrame, theirs: pd.DataFrame, column: str, title: str = "",
                    ours_label: str = "kdnb", theirs_label: str = "paper") -> Figure | None:
    """The gain over the baseline against the noise rate or imbalance ratio, one panel per method: kdnb's
    paired gain with its 95 % interval (``analysis.paired_differences`` by ``column``) and the paper's gain
    (dashed), each within its own architecture and regime, so that the trends compare (never the accuracies).
    None when kdnb has fewer than two values of ``column``: one point makes no trend."""
    if paired.empty or paired[column].nunique() < 2:
        return None
    pg = gains(theirs, column)
    methods = [m for m in ORDER if m != "baseline" and m in set(paired["method"])]
    fig, axes = _grid(len(methods), 4, 1.5, sharex=True, sharey=True)
    for ax, m in zip(axes.flat, methods, strict=False):
        s = paired[paired["method"] == m].sort_values(column)
        p = pg[pg["method"] == m].sort_values(column)
        ax.axhline(0, color="#333", lw=0.8)
        ax.plot(p[column], p["gain"], "--", marker="s", ms=3, color="#999999", label=theirs_label)
        ax.errorbar(s[column], s["mean"], yerr=[s["mean"] - s["lo"], s["hi"] - s["mean"]], marker="o", ms=4,
                    color=KDNB_PAPER[0], capsize=2,
                    label=f"{ours_label}, 95 % CI" if paired["lo"].notna().any() else ours_label)
        ax.set_title(label(m))
    for ax in _lowest(axes, len(methods)):
        ax.set_xlabel("σ (noise rate)" if column == "noise" else "γ (imbalance ratio)")
    for ax in axes[:, 0]:
        ax.set_ylabel("gain (points)")
    _legend_on_top(fig, axes.flat[0].get_legend_handles_labels()[0], title)
    return fig


# ---------------------------------------------------------------------------------------------
# Learning curves


def _setting_colors(cur: pd.DataFrame) -> dict[str, Any]:
    settings = sorted(cur["setting"].unique()) if len(cur) else []
    return {s: SETTING_COLORS[i % len(SETTING_COLORS)] for i, s in enumerate(settings)}


def _draw_curves(ax: Axes, part: pd.DataFrame, metric: str, colors: dict[str, Any], faint: bool = False) -> None:
    """One line per setting of ``part``: the mean over its seeds, with a ± sd band where it has two or more;
    ``faint``: the dashed reference, without a band, grey or (several settings) in its setting's colour."""
    for setting, g in part.groupby("setting"):
        s = g.groupby("epoch")[metric].agg(["mean", "std"])
        if faint:
            ax.plot(s.index, s["mean"], **{**BASELINE, **({"color": colors[setting]} if len(colors) > 1 else {})})
            continue
        ax.plot(s.index, s["mean"], color=colors[setting], lw=1.5)
        if s["std"].notna().any():
            ax.fill_between(s.index, s["mean"] - s["std"], s["mean"] + s["std"], color=colors[setting], alpha=0.2,
                            lw=0)


def _curve_legend(colors: dict[str, Any], reference: bool) -> list[Any]:
    handles = [Line2D([], [], color=c, lw=1.5, label=s) for s, c in colors.items()] if len(colors) > 1 else []
    name = "baseline (dashed, in its setting's colour)" if handles else "baseline, for reference"
    return handles + ([Line2D([], [], **BASELINE, label=name)] if reference else [])


def _panels(cur: pd.DataFrame, by: str) -> list[str]:
    """The panels of ``plot_curves``: the methods but the baseline (drawn in each), or the settings."""
    values = set(cur[by]) if len(cur) else set()
    if by != "method":
        return sorted(values)
    return [m for m in ORDER if m in values and m != "baseline"] or [m for m in ("baseline",) if m in values]


@styled
def plot_curves(cur: pd.DataFrame, metric: str = "test_acc", by: str = "method", title: str = "") -> Figure:
    """Learning curves as small multiples: ``metric`` per epoch, one panel per method (``by="method"``; the
    baseline's curve, faint and dashed, in every other method's panel for reference, and no panel of its
    own) or per setting (``by="setting"``: one configuration each, e.g. a teacher); in a panel one line per
    setting, the mean over seeds with a ± sd band where there are two or more seeds. The training loss
    (``OWN_OBJECTIVE``) is each method's own objective (cross-entropy plus its distillation terms), so its
    panels get their own scales and no baseline reference: only its shape compares."""
    panels = _panels(cur, by)
    shown = cur[cur[by].isin(panels)] if len(cur) else cur
    own = metric in OWN_OBJECTIVE and by == "method"  # each method's own objective: no common scale, no reference
    share = not own and (not len(shown) or not _scales_differ(shown[metric], shown[by]))
    fig, axes = _grid(len(panels), 4 if len(panels) > 3 else len(panels), 1.55, sharex=True, sharey=share)
    colors = _setting_colors(cur) if by == "method" else {s: SETTING_COLORS[0] for s in panels}
    reference = cur[cur["method"] == "baseline"] if by == "method" and len(panels) > 1 and not own else cur.iloc[:0]
    for ax, p in zip(axes.flat, panels, strict=False):
        _draw_curves(ax, reference, metric, colors, faint=True)
        _draw_curves(ax, cur[cur[by] == p], metric, colors)
        ax.set_title(label(p) if by == "method" else p)
    for ax in _lowest(axes, len(panels)):
        ax.set_xlabel("epoch")
    axes[0, 0].set_ylabel(METRICS.get(metric, metric))
    _legend_on_top(fig, _curve_legend(colors, len(reference) > 0) if by == "method" else [], title)
    return fig


@styled
def curves_grid(cur: pd.DataFrame, metrics: Sequence[str] = tuple(METRICS)) -> Figure:
    """Static small multiples covering every choice of the explorer: one row per method, one column per
    metric, one line per setting (data set, student, condition; mean ± sd over seeds), the baseline faint in
    every other row. A column shares its y-scale unless one method's values dwarf another's; the training
    loss column (``OWN_OBJECTIVE``) has neither the baseline nor a shared scale."""
    methods = [m for m in ORDER if m in set(cur["method"])] if len(cur) else []
    metrics = [m for m in metrics if m in cur and cur[m].notna().any()] or list(metrics)[:1]
    size = (WIDTH - 0.15, 1.15 * max(len(methods), 1) + 0.9)  # a little narrower: each loss panel has its own scale
    fig, axes = plt.subplots(max(len(methods), 1), len(metrics), figsize=size, squeeze=False, sharex=True,
                             layout="constrained")
    colors = _setting_colors(cur)
    base = cur[cur["method"] == "baseline"] if len(cur) else cur
    for j, metric in enumerate(metrics):
        own = metric in OWN_OBJECTIVE  # each method's own objective: its own scale, no baseline reference
        share = not own and (not len(cur) or not _scales_differ(cur[metric], cur["method"]))
        for i, m in enumerate(methods):
            ax = axes[i][j]
            if share and i:
                ax.sharey(axes[0][j])
            if m != "baseline" and not own:
                _draw_curves(ax, base, metric, colors, faint=True)
            _draw_curves(ax, cur[cur["method"] == m], metric, colors)
            ax.set_ylabel(label(m) if j == 0 else "")
        axes[0][j].set_title(METRICS.get(metric, metric) + ("\n(each method's own objective)" if own else ""))
        axes[-1][j].set_xlabel("epoch")
    _legend_on_top(fig, _curve_legend(colors, len(methods) > 1 and len(base) > 0))
    return fig


@styled
def plot_seed_curves(sel: pd.DataFrame, method: str, metric: str, title: str) -> Figure:
    """The explorer's view: ``metric`` per epoch of every run of ``method`` in ``sel``, the baseline dashed;
    one line per run (a seed, and its setting where ``sel`` holds several)."""
    fig, ax = plt.subplots(figsize=(WIDTH, 3.2), layout="constrained")
    several = sel["setting"].nunique() > 1 if "setting" in sel else False
    for m, style in ((method, "-"), ("baseline", "--")):
        for k, (_, g) in enumerate(sel[sel["method"] == m].groupby("run_id", sort=False)):
            name = f"{label(m)} seed {g['seed'].iloc[0]}" + (f" · {g['setting'].iloc[0]}" if several else "")
            ax.plot(g["epoch"], g[metric], style, color=PALETTE.get(m, "grey") if m == method else "grey",
                    alpha=max(1.0 - 0.2 * k, 0.3), marker="o", ms=3, label=name)
        if method == "baseline":
            break
    ax.set_xlabel("epoch")
    ax.set_ylabel(METRICS.get(metric, metric))
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(frameon=False, loc="best")
    else:
        ax.text(0.5, 0.5, "no runs for this choice", ha="center", transform=ax.transAxes)
    return fig


# ---------------------------------------------------------------------------------------------
# Teachers (Table II)


@styled
def plot_teacher_leads(leads: pd.DataFrame) -> Figure:
    """Each teacher's lead over the baseline of the students it teaches (``pages.teacher_leads``), in points:
    kdnb's (same data and regime) beside the paper's (its Table II teacher − its baseline of that student, or of its
    own pair in that condition, named under the row).
    Leads, not accuracies: a reduced regime's accuracies are not the paper's, a teacher's lead is comparable."""
    d = leads.dropna(subset=["lead"])
    several = d["dataset"].nunique() > 1
    regimes = [regime_label(r) for r in d.to_dict("records")]  # two regimes: two rows
    pairs = d.get("paper_pair", pd.Series([""] * len(d), index=d.index)).fillna("")
    rows = []
    for t, s, c, ds, r, p in zip(d["teacher"], d["student"], d["configuration"], d["dataset"], regimes, pairs,
                                 strict=True):
        rows.append(f"{label(t)} → {label(s)}, {c}" + (f" ({label(ds)})" if several else "")
                    + (f", {r}" if len(set(regimes)) > 1 else "") + (f"\n(paper: {p})" if p else ""))
    d = d.assign(row=rows)
    long = pd.concat([d.assign(source="kdnb", value=d["lead"]), d.assign(source="paper", value=d["paper_lead"])])
    fig, ax = plt.subplots(figsize=(WIDTH, 0.35 * max(len(d), 2) + 1.2), layout="constrained")
    if len(d):
        sns.barplot(data=long.dropna(subset=["value"]), y="row", x="value", hue="source", hue_order=["kdnb", "paper"],
                    palette=KDNB_PAPER, order=list(d["row"]), errorbar=None, ax=ax)  # a bar: one teacher
        sns.move_legend(ax, "lower right", title=None, frameon=True)
        ax.axvline(0, color="#333", lw=0.8)
    else:
        ax.text(0.5, 0.5, "no teacher has taught a student yet", ha="center", transform=ax.transAxes)
    ax.set_xlabel("teacher − student baseline, final-epoch test accuracy (points)")
    ax.set_ylabel("")
    ax.grid(axis="x", alpha=0.3)
    return fig


# ---------------------------------------------------------------------------------------------
# Per-class accuracy under imbalance (Table VI)


@styled
def plot_class_gains(groups: pd.DataFrame, title: str = "") -> Figure:
    """Gain over the baseline on the minority and the majority classes, per method
    (``analysis.class_groups`` of one cell): the mean paired per-seed gain and its 95 % interval (the seed
    variance pooled over the cell's methods)."""
    g = groups[groups["method"] != "baseline"]
    methods = [m for m in ORDER if m in set(g["method"])][::-1]
    fig, ax = plt.subplots(figsize=(WIDTH, 0.3 * len(methods) + 1.3), layout="constrained")
    for k, (group, color) in enumerate((("minority", "#c0392b"), ("majority", "#7f8c8d"))):
        d = g[g["group"] == group].set_index("method").reindex(methods)
        y = np.arange(len(methods)) + (0.15 if k == 0 else -0.15)
        ax.errorbar(d["mean"], y, xerr=[d["mean"] - d["lo"], d["hi"] - d["mean"]], fmt="o", color=color, capsize=2,
                    label=f"{group} classes")
    ax.axvline(0, color="#333", lw=0.8)
    ax.set_yticks(range(len(methods)), [label(m) for m in methods])
    ax.set_xlabel("gain in final-epoch accuracy over the baseline (points; mean, pooled 95 % CI)")
    ax.grid(axis="x", alpha=0.3)
    _legend_on_top(fig, ax.get_legend_handles_labels()[0], title)
    return fig


# ---------------------------------------------------------------------------------------------
# Transferability (Fig. 1)


@styled
def plot_transfer(ours: pd.DataFrame, theirs: pd.DataFrame, name: str = "kdnb") -> Figure:
    """Heatmaps, one above the other (rows: target, columns: source, with the mean and Teacher columns): ours
    (titled ``name``) and the paper's, on one colour scale (0-100 %) with its colour bar. No difference map:
    the two are different regimes, and only their patterns compare."""
    panels = [(name, ours), ("paper, Fig. 1", theirs)]
    rows = max(max(len(m.index) for _, m in panels), 3)
    fig, axes = plt.subplots(2, 1, figsize=(WIDTH, (0.24 * rows + 1.1) * 2), squeeze=False, layout="constrained")
    for ax, (title, m) in zip(axes[:, 0], panels, strict=True):
        sns.heatmap(m.rename(index=label, columns=label), annot=True, fmt=".0f", cmap="Reds", vmin=0, vmax=100,
                    cbar=False, ax=ax, annot_kws={"fontsize": 9}, linewidths=0.3, linecolor="white")
        for k, c in enumerate(m.columns):  # rules before the summaries (mean, Teacher), as in the table
            if c in ("mean", "teacher"):
                ax.axvline(k, color="#333", lw=1.5)
                break
        if "mean" in m.index:
            ax.axhline(list(m.index).index("mean"), color="#333", lw=1.5)
        ax.set_title(title)
        ax.set_xlabel("source (examples crafted on)")
        ax.set_ylabel("target (attacked)")
        ax.tick_params(axis="x", rotation=45)
    fig.colorbar(axes[0, 0].collections[0], ax=axes[:, 0].tolist(), shrink=0.6, label="success rate (%)")
    return fig


def _transfer_bars(long: pd.DataFrame, source: str, ax: Axes) -> None:
    d = long[long["source"] == source].dropna(subset=["rate"]).assign(target=lambda x: x["target"].map(label))
    order = [label(m) for m in ORDER if m in set(long["target"])]
    if len(d):
        sns.barplot(data=d, x="target", y="rate", hue="result", order=order, palette=["#c0392b", "#bbbbbb"],
                    hue_order=[r for r in ("kdnb", "paper") if r in set(long["result"])], ax=ax)
    ax.set_ylim(0, 100)
    ax.set_title(f"crafted on {label(source)}")
    ax.set_xlabel("")
    ax.set_ylabel("success rate (%)")
    ax.tick_params(axis="x", rotation=90)


@styled
def plot_transfer_bars(long: pd.DataFrame, source: str) -> Figure:
    """Transfer rate of the examples crafted on ``source`` to every target, one bar per matrix."""
    fig, ax = plt.subplots(figsize=(WIDTH, 3.2), layout="constrained")
    _transfer_bars(long, source, ax)
    if ax.get_legend() is not None:  # above the panel: inside it, it would cover the last bars
        handles = ax.get_legend().legend_handles
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        ax.get_legend().remove()
        for h, lab in zip(handles, labels, strict=True):
            h.set_label(lab)
        _legend_on_top(fig, handles)
    return fig


@styled
def transfer_grid(long: pd.DataFrame) -> Figure:
    """Static small multiples of the transfer explorer: one panel per source model."""
    sources = sources_of(long) or ["teacher"]
    fig, axes = _grid(len(sources), 3, 2.0, sharex=True, sharey=True)
    for ax, s in zip(axes.flat, sources, strict=False):
        _transfer_bars(long, s, ax)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    handles = [plt.Rectangle((0, 0), 1, 1, color=c, label=r) for r, c in (("kdnb", "#c0392b"), ("paper", "#bbbbbb"))
               if r in set(long["result"])]
    _legend_on_top(fig, handles)
    return fig


# ---------------------------------------------------------------------------------------------
# Does it reproduce?

VERDICT_COLORS = {"agrees": "#1e8449", "disagrees": "#b03a2e", "too noisy": "#777777"}


def _short(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


def plot_claims(claims: pd.DataFrame) -> Figure | None:
    """A forest plot of the findings that kdnb tests (``kdnb.report.claims.claims_table``): one panel per source
    of evidence (the paper's own tables, then each kdnb store that tests something, each on its own
    architectures), a row per finding named in words, the deciding contrast with its 95 % interval coloured
    by that source's verdict, the equivalence band of a ≈ finding shaded, and intervals that run past the
    panel's edge marked with an arrow. None when kdnb tests nothing."""
    tested = claims[claims["verdict"] != "no data"]
    if tested.empty:
        return None
    panels = [("paper", "the paper's own tables (its students, 5 seeds)", tested.assign(
        est=tested["paper_est"], lo=tested["paper_lo"], hi=tested["paper_hi"], margin=tested["paper_margin"],
        verdict=tested["paper_verdict"]))]
    for src, rows in tested.groupby("source", sort=False):
        on = rows["on"].iloc[0].split(": ", 1)[1]
        scale = on.split("; ", 1)[1].split(", ")[0] if "; " in on else ""
        panels.append((src, f"kdnb, {src}: {on.split(' (paper')[0].split(';')[0]}; {scale}", rows))
    heights = [len(p[2]) + 1.5 for p in panels]
    # 0.2 in narrower than WIDTH: the row names fill the figure to its edge, and the saved PNG adds a pad
    fig, axes = plt.subplots(len(panels), 1, figsize=(WIDTH - 0.2, 0.24 * sum(heights) + 1.0), layout="constrained",
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, (_, title, rows) in zip(axes[:, 0], panels, strict=True):
        rows = rows.iloc[::-1]
        vals = pd.concat([rows["est"], rows["margin"].dropna()]).abs()
        reach = max(float(np.nanpercentile(vals, 90)) * 1.5, 1.0) if len(vals.dropna()) else 1.0
        for y, r in enumerate(rows.itertuples(index=False)):
            if pd.notna(r.margin):
                ax.add_patch(plt.Rectangle((-r.margin, y - 0.35), 2 * r.margin, 0.7, color="#dddddd", lw=0, zorder=0))
            color = VERDICT_COLORS.get(r.verdict, "#bbbbbb")
            lo, hi = max(r.lo, -reach), min(r.hi, reach)
            ax.plot([lo, hi], [y, y], color=color, lw=1.4)
            ax.plot(np.clip(r.est, -reach, reach), y, "o", color=color, ms=4)
            for end, edge, mark in ((r.lo, -reach, "<"), (r.hi, reach, ">")):
                if end < edge if mark == "<" else end > edge:
                    ax.plot(edge * 0.97, y, mark, color=color, ms=5)
        ax.set_xlim(-reach, reach)
        ticks = plt.MaxNLocator(7, symmetric=True).tick_values(-reach, reach)
        ax.set_xticks([x for x in ticks if abs(x) <= reach * 0.92])  # none at the edge: its label would overhang
        ax.set_ylim(-0.7, len(rows) - 0.3)
        ax.axvline(0, color="#333", lw=0.8)
        ax.set_yticks(range(len(rows)), [_short(f"{i} {c}") for i, c in zip(rows["id"], rows["claim"], strict=True)])
        ax.set_title(title, loc="right", fontsize=10)  # anchored right: it spans the row names, not past the edge
        ax.grid(axis="x", alpha=0.3)
    axes[-1, 0].set_xlabel("contrast (points; D rows: transfer rate)")
    handles = [Line2D([], [], marker="o", color=col, label=v) for v, col in VERDICT_COLORS.items()]
    handles.append(plt.Rectangle((0, 0), 1, 1, color="#dddddd", label="≈ margin"))
    handles.append(Line2D([], [], marker=">", ls="", color="#555", label="runs past the edge"))
    _legend_on_top(fig, handles[:3], "95 % interval of the contrast that decides each verdict")
    fig.legend(handles=handles[3:], loc="outside lower center", ncol=2, frameon=False)
    return fig
