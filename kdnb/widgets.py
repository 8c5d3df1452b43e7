"""The book's explorers (ipywidgets): controls that choose what a figure shows.

In Jupyter the figure follows the controls; in the static book each explorer is the snapshot saved
when the page was executed, and the small multiples after it (``kdnb.figures.curves_grid``,
``transfer_grid``) show every choice at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from kdnb.analysis import METRICS, ORDER, column_label, label, sources_of

CONDITIONS = (("noise", "noise σ"), ("imbalance", "imbalance γ"))
SEED_COLUMNS = {"seed": "seed", "final_acc": "final acc (%)", "best_acc": "best acc (%)", "epochs": "epochs",
                "wall_s": "train time (s)"}


def dropdown(options: Sequence[Any], description: str) -> Any:
    """A dropdown set to its first option; options are values or (label, value) pairs."""
    import ipywidgets

    first = options[0][1] if options and isinstance(options[0], tuple) else (options[0] if options else None)
    return ipywidgets.Dropdown(options=list(options), value=first, description=description,
                               style={"description_width": "initial"})


def explorer_dims(cur: pd.DataFrame) -> list[tuple[str, str]]:
    """The (column, control name) pairs the curves explorer offers: data set, architecture, and each
    condition that varies in ``cur``."""
    dims = [("dataset", "data set"), ("student", "architecture")]
    return dims + [(d, name) for d, name in CONDITIONS if d in cur and cur[d].astype(str).nunique() > 1]


def seed_table(runs: pd.DataFrame, run_ids: Sequence[str]) -> pd.DataFrame:
    """Final and best accuracy, epochs and train time of the given runs, one row per seed."""
    meta = runs.drop_duplicates("run_id").set_index("run_id")
    tab = meta.loc[[i for i in run_ids if i in meta.index], list(SEED_COLUMNS)]
    return tab.sort_values("seed").rename(columns=SEED_COLUMNS).round(2)


def explorer(cur: pd.DataFrame, runs: pd.DataFrame, metrics: Sequence[str] = tuple(METRICS)) -> Any:
    """Dropdowns (data set, architecture, condition where it varies, method, metric) → the learning curves of
    the chosen runs (baseline dashed for comparison) and a table of their seeds."""
    import ipywidgets
    from IPython.display import display

    from kdnb.figures import plot_seed_curves

    dims = explorer_dims(cur)
    d = cur.copy()
    for col, _ in dims:
        d[f"_{col}"] = [column_label(col, v) for v in d[col]]

    def show(**choice: str) -> None:
        sel = d
        for col, _ in dims:
            sel = sel[sel[f"_{col}"] == choice[col]]
        method, metric = choice["method"], choice["metric"]
        title = " · ".join(choice[c] for c, _ in dims) + f" · {label(method)}"
        display(plot_seed_curves(sel, method, metric, title))
        tab = seed_table(runs, sel[sel["method"] == method]["run_id"].unique())
        if len(tab):
            display(tab)

    controls = {col: dropdown(sorted(d[f"_{col}"].unique()), name) for col, name in dims}
    controls["method"] = dropdown([(label(m), m) for m in ORDER if m in set(d["method"])], "method")
    controls["metric"] = dropdown([(METRICS[m], m) for m in metrics if m in d], "metric")
    return ipywidgets.interactive(show, **controls)


def transfer_explorer(long: pd.DataFrame) -> Any:
    """A dropdown of source models → the success rate of their examples on every target, kdnb beside the paper
    (``long``: ``analysis.transfer_long``)."""
    import ipywidgets
    from IPython.display import display

    from kdnb.figures import plot_transfer_bars

    def show(source: str) -> None:
        display(plot_transfer_bars(long, source))

    sources = sources_of(long)
    return ipywidgets.interactive(show, source=dropdown([(label(s), s) for s in sources], "source"))
