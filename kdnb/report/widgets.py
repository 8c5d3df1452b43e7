"""The book's explorers (ipywidgets): controls that choose which precomputed view is shown.

Every view is computed when the notebook runs (a PNG at modest dpi inside an ``HTML`` widget, or an
HTML table) and the controls only switch between them: each ``Dropdown.index`` is ``jslink``-ed to
the ``selected_index`` of a ``Stack``. The links live in the front end and in the saved widget state,
so the explorers respond in the static book (no kernel, no network) exactly as in Jupyter.

Learning curves (``explorer``): one dropdown per setting dimension that varies (data set, architecture,
condition) selects a branch of nested Stacks, and the metric dropdown, linked to
every leaf, selects the view. A view is one setting × one metric and shows *all* methods as small
multiples (``kdnb.report.figures.plot_curves``: the mean over seeds ± sd, the baseline dashed in each
panel), followed by the setting's table of seeds; a view per method would multiply the page by the 12 methods.

Page size: the saved widget state is embedded in the page, so it is what the views cost. A view is
a PNG at ``DPI`` quantized to ``COLORS`` colours, as base64. Each HTML widget adds ≈ 2.2 KB of models
(its layout and style), a seed table ≈ 2 KB. Measured on the mini build (8 epochs × 2 seeds): whole
results pages of 152-236 kB at 96 dpi. Paper profile, measured at 72 dpi with per-seed curves (an
earlier version of the views) on synthetic inputs of the paper's shape, state per page:

* generalization: 2 data sets × 8 students = 16 settings × 3 metrics = 48 views ≈ 1.5 MB
* label noise, imbalance: 4 conditions × 3 metrics = 12 views ≈ 0.4 MB each
* teachers: 11 configurations × 3 metrics = 33 one-panel views ≈ 0.6 MB
* transferability (``transfer_explorer``): 11 source models, one view each ≈ 0.1 MB

A view per setting × method × metric would be 16 × 12 × 3 = 576 views, ≈ 8 MB for generalization.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from kdnb.report import paper
from kdnb.report.analysis import METRICS, column_label, condition_label, label, sources_of

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CONDITIONS = (("noise", "noise σ"), ("imbalance", "imbalance γ"))
MEANS = {"final_acc": "mean", "best_acc": "best (mean)", "epochs": "epochs", "wall_s": "train (s)"}
DPI = 96  # of the PNG views: kdnb.report.figures' dpi, so a view shows at its own size, as legible as the figures
COLORS = 64  # the PNG views are quantized to this many colours (maximum coverage keeps the line colours): ÷ 3-4
RANK = {name: i for i, name in enumerate(paper.LABELS)}  # the paper's order of methods, models, data sets


# ---------------------------------------------------------------------------------------------
# Controls and views


def dropdown(options: Sequence[Any], description: str) -> Any:
    """A dropdown set to its first option; options are values or (label, value) pairs."""
    import ipywidgets

    first = options[0][1] if options and isinstance(options[0], tuple) else (options[0] if options else None)
    return ipywidgets.Dropdown(options=list(options), value=first, description=description,
                               style={"description_width": "initial"})


def switch(control: Any, views: Sequence[Any]) -> Any:
    """A Stack of ``views`` whose shown child follows ``control``'s index, in the browser (``jslink``), so
    it needs no kernel."""
    import ipywidgets

    stack = ipywidgets.Stack(list(views), selected_index=0)
    stack.link = ipywidgets.jslink((control, "index"), (stack, "selected_index"))  # kept: what drives the stack
    return stack


def png_view(fig: Figure, alt: str) -> Any:
    """An HTML widget holding ``fig`` as an inline PNG (``DPI``, ``COLORS``): a precomputed view that the
    static page can show without a kernel; ``alt`` names the choice it shows."""
    import ipywidgets
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB").quantize(COLORS, method=Image.Quantize.MAXCOVERAGE)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    src = base64.b64encode(buf.getvalue()).decode("ascii")
    alt = html.escape(alt, quote=True)
    return ipywidgets.HTML(f'<img src="data:image/png;base64,{src}" alt="{alt}" title="{alt}" '
                           'style="max-width:100%;height:auto">')


def note(text: str) -> Any:
    """A one-line HTML view, e.g. for a combination of choices that has no runs."""
    import ipywidgets

    return ipywidgets.HTML(f"<p><em>{html.escape(text)}</em></p>")


def _rank(value: Any) -> tuple:
    """Sort key of a setting value: the paper's order for names, numbers ascending, balanced (None) first."""
    if value is None or pd.isna(value):
        return (0, 0.0, "")
    if isinstance(value, str):
        return (2, float(RANK.get(value, len(RANK))), value)
    return (1, float(value), "")


# ---------------------------------------------------------------------------------------------
# Learning curves


def explorer_dims(cur: pd.DataFrame) -> list[tuple[str, str]]:
    """The (column, control name) pairs the curves explorer offers: each of data set, architecture and the
    conditions that varies in ``cur`` (a control with a single option would choose nothing); where both the
    noise rate and the imbalance vary, one control of the data conditions that ran (``condition``), so that
    no combination is offered that has no runs."""
    dims = [(d, name) for d, name in (("dataset", "data set"), ("student", "architecture")) if _varies(cur, d)]
    conditions = [(d, name) for d, name in CONDITIONS if _varies(cur, d)]
    return dims + ([("condition", "data condition")] if len(conditions) == 2 else conditions)


def _varies(cur: pd.DataFrame, col: str) -> bool:
    """Whether ``cur[col]`` takes several values, by their labels: None and NaN are one value ("balanced"),
    which ``nunique`` would drop."""
    return col in cur and len({column_label(col, v) for v in cur[col]}) > 1


def choices(cur: pd.DataFrame, col: str) -> list[str]:
    """The labels of ``cur[col]``'s values (its label column ``_<col>``), in the paper's order (numbers
    ascending, balanced first)."""
    firsts = cur.drop_duplicates(f"_{col}")
    pairs = sorted(zip(map(_rank, firsts[col]), firsts[f"_{col}"], strict=True))
    return [lab for _, lab in pairs]


def seed_table(runs: pd.DataFrame, run_ids: Sequence[str]) -> pd.DataFrame:
    """One setting's runs at a glance: the final test accuracy of each method (rows) and seed (columns), its
    mean, and the means over seeds of the best accuracy, the epochs and the train time."""
    meta = runs.drop_duplicates("run_id").set_index("run_id")
    r = meta.loc[[i for i in run_ids if i in meta.index]]
    if r.empty:
        return pd.DataFrame()
    tab = r.pivot_table(index="method", columns="seed", values="final_acc", aggfunc="mean")
    tab.columns = [f"seed {s}" for s in tab.columns]
    tab = tab.join(r.groupby("method")[list(MEANS)].mean().rename(columns=MEANS))
    tab[["epochs", "train (s)"]] = tab[["epochs", "train (s)"]].round().astype("Int64")
    tab = tab.loc[sorted(tab.index, key=_rank)].round(2)
    return tab.rename(index=label).rename_axis(index=None, columns="method")


def table_view(tab: pd.DataFrame, caption: str) -> Any:
    """An HTML widget holding ``tab`` as a compact book table (class ``kdnb-table``) with a caption."""
    import ipywidgets

    body = tab.to_html(classes="kdnb-table", border=0, na_rep="–", float_format=lambda v: f"{v:.2f}")
    body = re.sub(r">\s+<", "><", body)
    return ipywidgets.HTML(body.replace("<thead>", f"<caption>{html.escape(caption)}</caption><thead>", 1))


def curves_views(sel: pd.DataFrame, runs: pd.DataFrame, metrics: Sequence[str], name: str, control: Any) -> Any:
    """The view of one setting: its metric views, switched by ``control``, above its table of seeds."""
    import ipywidgets

    from kdnb.report.figures import plot_curves

    views = [png_view(plot_curves(sel, m, title=f"{name} · {METRICS.get(m, m)}"), f"{name} · {METRICS.get(m, m)}")
             for m in metrics]
    tab = seed_table(runs, list(sel["run_id"].unique()))
    caption = f"{name}: final test accuracy (%) per seed and its mean; best accuracy, epochs, train time: means"
    return ipywidgets.VBox([switch(control, views), table_view(tab, caption)])


def explorer(cur: pd.DataFrame, runs: pd.DataFrame, metrics: Sequence[str] = tuple(METRICS)) -> Any:
    """Dropdowns (data set, architecture and condition where they vary, metric) → the learning curves of every
    method in that setting (baseline dashed) and a table of their seeds, all precomputed (see the module
    docstring), so the explorer also responds in the static book."""
    import ipywidgets

    metrics = [m for m in metrics if m in cur and cur[m].notna().any()]
    if cur.empty or not metrics:
        return ipywidgets.VBox([note("no learning curves to explore")])
    dims = explorer_dims(cur)
    if ("condition", "data condition") in dims:
        cur = cur.assign(condition=[condition_label(n, g) for n, g in zip(cur["noise"], cur["imbalance"], strict=True)])
    d = cur.assign(**{f"_{col}": [column_label(col, v) for v in cur[col]] for col, _ in dims})
    controls = [dropdown(choices(d, col), name) for col, name in dims]
    metric = dropdown([(METRICS.get(m, m), m) for m in metrics], "metric")

    def branch(sel: pd.DataFrame, level: int, names: tuple[str, ...]) -> Any:
        if sel.empty:
            return note(f"no runs for {' · '.join(names)}")
        if level == len(dims):  # names: the choices made; with nothing to choose, the one setting
            return curves_views(sel, runs, metrics, " · ".join(names) or str(sel["setting"].iloc[0]), metric)
        col = dims[level][0]
        return switch(controls[level], [branch(sel[sel[f"_{col}"] == v], level + 1, (*names, v))
                                        for v in controls[level].options])

    return ipywidgets.VBox([*controls, metric, branch(d, 0, ())])


# ---------------------------------------------------------------------------------------------
# Transferability


def transfer_explorer(long: pd.DataFrame) -> Any:
    """A dropdown of source models → the success rate of their examples on every target, kdnb beside the paper
    (``long``: ``analysis.transfer_long``); one precomputed bar chart per source."""
    import ipywidgets

    from kdnb.report.figures import plot_transfer_bars

    sources = sources_of(long)
    if not sources:
        return ipywidgets.VBox([note("no transfer results to explore")])
    control = dropdown([(label(s), s) for s in sources], "source")
    views = [png_view(plot_transfer_bars(long, s), f"examples crafted on {label(s)}") for s in sources]
    return ipywidgets.VBox([control, switch(control, views)])
