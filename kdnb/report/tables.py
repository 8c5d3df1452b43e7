"""The book's tables: pandas Stylers in the paper's layout (mean ± std, best of a column in bold, below
the baseline in blue), from the frames of ``kdnb.report.analysis``. Every table carries the ``kdnb-table``
class (compact font, sideways scrolling; book/_static/kdnb.css)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
from IPython.display import HTML
from pandas.io.formats.style import Styler

from kdnb.report.analysis import (
    ORDER,
    below_mask,
    best_mask,
    column_label,
    gains,
    label,
    minority_classes,
    regime_label,
    wide,
)
from kdnb.study import duration

NOT_RUN = "not run"
NOT_IN_PAPER = "not in paper"
CSS_BEST = "font-weight: bold;"
CSS_BELOW = "color: #1f5fbf;"  # blue, as the paper's Tables V and VI
CSS_NOT_RUN = "color: #999; font-style: italic;"
CSS_WORSE, CSS_BETTER = "color: #b03a2e;", "color: #1e8449;"
TABLE_STYLES = [{"selector": "th, td", "props": "padding: .2em .45em; text-align: right; white-space: nowrap;"},
                {"selector": "caption", "props": "caption-side: top; font-weight: 600; text-align: left;"}]


def finish(styler: Styler, caption: str = "", wrap: bool = False, styles: Sequence[dict] = ()) -> Styler:
    """Caption, cell padding and the book's table class; ``wrap``: long text, wrapped and left-aligned;
    ``styles``: more table styles."""
    wrapped = [{"selector": "td, th", "props": "text-align: left; white-space: normal;"}] if wrap else []
    return (styler.set_caption(caption).set_table_styles([*TABLE_STYLES, *wrapped, *styles])
            .set_table_attributes('class="kdnb-table" style="min-width: 24em;"'))  # room for the caption


def plain(text: pd.DataFrame, caption: str = "") -> Styler:
    """A table of text (wrapped, left-aligned), without its index."""
    return finish(text.style.hide(axis="index"), caption, wrap=True)


def details(summary: str, table: Styler | str) -> HTML:
    """A table folded under a one-line summary (HTML ``<details>``)."""
    html = table if isinstance(table, str) else table.to_html()
    return HTML(f"<details><summary>{summary}</summary>{html}</details>")


def _relabel(df: pd.DataFrame, column: str) -> pd.DataFrame:
    out = df.copy()
    out.index = [label(m) for m in df.index]
    if isinstance(df.columns, pd.MultiIndex):
        out.columns = pd.MultiIndex.from_tuples([(column_label(column, a), b) for a, b in df.columns])
    else:
        out.columns = [column_label(column, c) for c in df.columns]
    return out


def _signed(v: float) -> str:
    return "" if pd.isna(v) else f"{v:+.2f}"


def _resolved_css(lo: float, hi: float) -> str:
    """Green where an interval lies above 0, red below, nothing where it spans 0 (or is missing)."""
    return CSS_BETTER if pd.notna(lo) and lo > 0 else CSS_WORSE if pd.notna(hi) and hi < 0 else ""


# ---------------------------------------------------------------------------------------------
# Tables III-VI


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
    return finish(text.style.apply(lambda _: css, axis=None), caption)


# ---------------------------------------------------------------------------------------------
# Per-class accuracy under imbalance (Table VI)

CSS_MINORITY = "background-color: #fbeaea;"


def style_class_acc(per_class: pd.DataFrame, counts: Sequence[int], class_names: Sequence[str] | None = None,
                    caption: str = "") -> Styler:
    """Per-class final-epoch accuracy of one cell (``analysis.class_accuracy`` rows of one student and γ), mean
    over seeds, methods by class; the header names each class and its training images (``counts``), and
    the minority classes (``analysis.minority_classes``) are shaded."""
    means = per_class.groupby(["method", "class"])["acc"].mean().unstack("class")
    means = means.reindex(index=[m for m in ORDER if m in means.index])
    minority = set(minority_classes(counts))
    header = pd.MultiIndex.from_tuples([(class_names[c] if class_names else str(c), counts[c]) for c in means.columns],
                                       names=["class", "training images"])
    text = means.map(lambda v: "" if pd.isna(v) else f"{v:.1f}").set_axis(header, axis=1)
    text.index = [label(m) for m in means.index]
    css = pd.DataFrame([[CSS_MINORITY if c in minority else "" for c in means.columns]] * len(means),
                       index=text.index, columns=header)
    return finish(text.style.apply(lambda _: css, axis=None), caption)


def style_class_groups(groups: pd.DataFrame, caption: str = "") -> Styler:
    """The minority and majority classes of one cell (``analysis.class_groups``): each method's mean accuracy
    there and its paired gain over the baseline [95 % CI], coloured only where the interval excludes 0."""
    def gain(r: Any) -> str:
        if pd.isna(r.mean):
            return ""
        return f"{r.mean:+.2f}" + ("" if pd.isna(r.lo) else f" [{r.lo:+.1f}, {r.hi:+.1f}]")

    parts, css = {}, {}
    for g in ("minority", "majority"):
        d = groups[groups["group"] == g].set_index("method").reindex([m for m in ORDER if m in set(groups["method"])])
        parts[(f"{g} classes", "accuracy (%)")] = d["acc"].map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
        parts[(f"{g} classes", "gain (points)")] = [gain(r) for r in d.itertuples()]
        css[(f"{g} classes", "accuracy (%)")] = pd.Series("", index=d.index)
        css[(f"{g} classes", "gain (points)")] = [_resolved_css(r.lo, r.hi) for r in d.itertuples()]
    text, style = pd.DataFrame(parts), pd.DataFrame(css)
    text.index = style.index = [label(m) for m in text.index]
    return finish(text.style.apply(lambda _: style, axis=None), caption)


# ---------------------------------------------------------------------------------------------
# Table II


def style_teachers(cmp: pd.DataFrame, caption: str = "") -> Styler:
    """Table II as the page shows it (``analysis.teacher_comparison``, with ``pages.teacher_leads``' columns where
    given): the regime and final-epoch accuracy of the seed used, its best epoch, the mean over seeds only where
    there are several, and the teacher's lead over its students' baseline beside the paper's lead (like for like:
    each within its own regime); the paper's accuracy is shown, never a difference to it. One row per teacher
    that ran (the paper's others are counted by ``pages.describe_teachers``); ``not in paper`` where it has none."""
    cmp = cmp[cmp["n"].fillna(0) > 0].reset_index(drop=True)  # the paper's other teachers: a sentence, not rows
    text = pd.DataFrame({
        "teacher": [(f"{label(d)} " if cmp["dataset"].nunique() > 1 else "") + label(t)  # one data set: in the caption
                    for d, t in zip(cmp["dataset"], cmp["teacher"], strict=True)],
        "data": cmp["configuration"],
        "regime": [regime_label(r) if pd.notna(r["acc"]) else "" for r in cmp.to_dict("records")],
        "final (%)": [NOT_RUN if pd.isna(n) or not n else f"{cell_text(m, s, n)}, no student yet" if pd.isna(v)
                      else f"{v:.2f}"
                      for v, m, s, n in zip(cmp["acc"], cmp["mean"], cmp["std"], cmp["n"], strict=True)],
        "best epoch (%)": cmp["best"].map(lambda v: "" if pd.isna(v) else f"{v:.2f}"),
    })
    if (cmp["n"].fillna(0) > 1).any():  # one seed: the mean over seeds is the final accuracy again
        text["mean over seeds"] = [cell_text(m, s, n)
                                   for m, s, n in zip(cmp["mean"], cmp["std"], cmp["n"], strict=True)]
    if "lead" in cmp:
        text["lead"] = cmp["lead"].map(_signed)
    text["paper (%)"] = cmp["paper"].map(lambda v: NOT_IN_PAPER if pd.isna(v) else f"{v:.2f}")
    if "paper_lead" in cmp:
        text["paper lead"] = [_signed(v) + (f" ({pair})" if pair and pd.notna(v) else "") for v, pair in
                              zip(cmp["paper_lead"], cmp.get("paper_pair", [""] * len(cmp)), strict=True)]
    css = text.map(lambda t: CSS_NOT_RUN if t in (NOT_RUN, NOT_IN_PAPER) or t.endswith("no student yet") else "")
    if "lead" in cmp:
        css["lead"] = cmp["lead"].map(lambda v: CSS_WORSE if pd.notna(v) and v <= 0
                                                                  else "").to_numpy()
    return finish(text.style.apply(lambda _: css, axis=None).hide(axis="index"), caption)


# ---------------------------------------------------------------------------------------------
# Fig. 1


def _verdict(v: Any) -> str:
    return "cannot check" if v is None or pd.isna(v) else "holds" if v else "does not hold"


def style_observations(obs: pd.DataFrame) -> Styler:
    """The paper's observations (``analysis.observations_compared``): whether each holds there and here."""
    text = pd.DataFrame({"observation (paper §IV-D)": obs["observation"],
                         "paper": obs["paper"].map(_verdict), "kdnb": obs["kdnb"].map(_verdict),
                         "agreement": [("—" if pd.isna(b) or b is None else "agree" if a == b else "disagree")
                                       for a, b in zip(obs["paper"], obs["kdnb"], strict=True)],
                         "kdnb numbers": obs["detail"]})
    css = text.map(lambda t: CSS_BETTER if t == "agree" else CSS_WORSE if t == "disagree" else "")
    return finish(text.style.apply(lambda _: css, axis=None).hide(axis="index"), wrap=True)


# ---------------------------------------------------------------------------------------------
# Does it reproduce? (the claims table)

VERDICT_CSS = {"agrees": CSS_BETTER + CSS_BEST, "disagrees": CSS_WORSE + CSS_BEST, "too noisy": "color: #555;",
               "no data": CSS_NOT_RUN}


def style_claims(claims: pd.DataFrame) -> Styler:
    """The findings (``kdnb.report.claims.claims_table``), one row each: the paper's words and what is tested,
    the paper's own numbers with their verdict, kdnb's evidence from its most faithful store (what it ran,
    the deciding contrast with its 95 % interval) and kdnb's verdict, with every store's beside it."""
    from kdnb.report import claims as c

    profiles = [k[2:] for k in claims.columns if k.startswith("v_")]

    def side(r: Any, p: str) -> str:
        return c.evidence_text(r[f"{p}est"], r[f"{p}lo"], r[f"{p}hi"], r[f"{p}margin"], r[f"{p}leaf"],
                               r[f"{p}held"], r[f"{p}n"])

    rows = []
    for _, r in claims.iterrows():
        others = "; ".join(f"{p}: {c.VERDICT_TEXT[r['v_' + p]]}" for p in profiles
                           if p != r["source"] and r["v_" + p] != "no data")
        rows.append({
            "finding": f"<b>{r['id']}</b> (§{r['section']}) {r['claim']}<br><i>“{r['words']}”</i>",
            "test": r["test"],
            "the paper's own numbers": f"{side(r, 'paper_')}<br><b>{c.PAPER_TEXT[r['paper_verdict']]}</b>",
            "kdnb": (f"{r['on']}<br>{side(r, '')}" + (f"<br>Other stores: {others}." if others else "")
                     if r["verdict"] != "no data" else "none of these cells in any committed store"),
            "verdict": c.VERDICT_TEXT[r["verdict"]]})
    text = pd.DataFrame(rows)
    css = pd.DataFrame("", index=text.index, columns=text.columns)
    css["verdict"] = claims["verdict"].map(VERDICT_CSS).fillna("").to_numpy()
    css["the paper's own numbers"] = ["" if v == "agrees" else "background: #fbeee6;" for v in claims["paper_verdict"]]
    return finish(text.style.apply(lambda _: css, axis=None).hide(axis="index"), wrap=True,
                  styles=[{"selector": "td", "props": "vertical-align: top; font-size: 0.85em;"}])


def style_protocol(cells: pd.DataFrame) -> Styler:
    """Runs at the paper's protocol beside the paper (``analysis.against_paper``)."""
    text = pd.DataFrame({
        "run": [f"{label(m)} {label(s)}, seed {k}" for m, s, k in zip(cells["method"], cells["student"],
                                                                       cells["seed"], strict=True)],
        "state": [("done" if st == "done" else f"in progress: epoch {e} of {n}")
                  for st, e, n in zip(cells["state"], cells["epoch"], cells["epochs"], strict=True)],
        "kdnb (%)": [("" if pd.isna(a) else f"{a:.2f}" + ("" if st == "done" else f" at epoch {e}"))
                     for a, st, e in zip(cells["acc"], cells["state"], cells["epoch"], strict=True)],
        "paper (%)": [("" if pd.isna(a) else f"{a:.2f} ± {s:.2f}") for a, s in zip(cells["paper_mean"],
                                                                                    cells["paper_std"], strict=True)],
        "Δ": [(_signed(d) if st == "done" else "") for d, st in zip(cells["diff"], cells["state"], strict=True)],
        "within ±2 std": [("" if w is None else "yes" if w else "no") for w in cells["within"]],
        "wall time": cells["wall_s"].map(duration),
        "machine": cells["machine"],
    })
    css = pd.DataFrame("", index=text.index, columns=text.columns)
    css["within ±2 std"] = text["within ±2 std"].map({"yes": CSS_BETTER, "no": CSS_WORSE}).fillna("")
    return finish(text.style.apply(lambda _: css, axis=None).hide(axis="index"),
                  "kdnb at the paper's protocol beside the paper's Table III", wrap=True)


def style_ablations(abl: pd.DataFrame) -> Styler:
    """Ablations as paired differences per seed (``kdnb.report.pages.ablations``)."""
    def ci(lo: float, hi: float) -> str:
        return "" if pd.isna(lo) else f"[{lo:+.2f}, {hi:+.2f}]"

    text = pd.DataFrame({"ablation": abl["ablation"], "question": abl["question"],
                         "mean of the pair (%)": [("" if pd.isna(a) else f"{a:.2f} vs {b:.2f}")
                                                  for a, b in zip(abl["a"], abl["b"], strict=True)],
                         "paired difference (points)": [_signed(m) for m in abl["mean"]],
                         "95 % CI": [ci(lo, hi) for lo, hi in zip(abl["lo"], abl["hi"], strict=True)],
                         "seeds": [", ".join(map(str, s)) or "none" for s in abl["seeds"]]})
    return plain(text, "Ablations: paired differences per seed (a − b)")


def style_gains(paired: pd.DataFrame, theirs: pd.DataFrame, column: str, columns: Sequence[Any],
                caption: str = "", ours_label: str = "kdnb", theirs_label: str = "paper") -> Styler:
    """The headline: per method and column, kdnb's gain over the baseline (mean of the paired per-seed
    differences, 95 % CI; ``analysis.paired_differences``) beside the paper's gain (``analysis.gains`` of
    its table), under headers naming each side's regime (``ours_label``, ``theirs_label``). kdnb's gain is
    coloured (green above 0, red below) only where its interval excludes 0; the paper's, which has no
    interval (its tables give no per-seed values), is not coloured."""
    methods = [m for m in wide(paired, column).index if m != "baseline"]
    if paired.empty:
        methods = [m for m in wide(theirs, column).index if m != "baseline"]
    ours = {v: wide(paired, column, v, methods, columns) for v in ("mean", "lo", "hi", "n")}
    pg = gains(theirs, column).rename(columns={"gain": "mean"})
    theirs_w = wide(pg, column, "mean", methods, columns) if not pg.empty else pd.DataFrame(index=methods,
                                                                                           columns=columns)
    parts, css = {}, {}
    for c in columns:
        def cell(m: str, c: Any = c) -> str:
            v, lo, hi = ours["mean"].at[m, c], ours["lo"].at[m, c], ours["hi"].at[m, c]
            return NOT_RUN if pd.isna(v) else f"{v:+.2f}" + ("" if pd.isna(lo) else f" [{lo:+.1f}, {hi:+.1f}]")

        def colour(m: str, c: Any = c) -> str:
            v, lo, hi = ours["mean"].at[m, c], ours["lo"].at[m, c], ours["hi"].at[m, c]
            if pd.isna(v):
                return CSS_NOT_RUN
            return _resolved_css(lo, hi)

        parts[(c, ours_label)] = pd.Series([cell(m) for m in methods], index=methods)
        parts[(c, theirs_label)] = theirs_w[c].map(lambda v: NOT_IN_PAPER if pd.isna(v) else f"{v:+.2f}") \
            if c in theirs_w else pd.Series(NOT_IN_PAPER, index=methods)
        css[(c, ours_label)] = pd.Series([colour(m) for m in methods], index=methods)
        css[(c, theirs_label)] = pd.Series("", index=methods)
    text, style = _relabel(pd.DataFrame(parts), column), _relabel(pd.DataFrame(css), column)
    wrap = {"selector": "thead th", "props": "white-space: normal; max-width: 16em;"}  # the regime labels
    return finish(text.style.apply(lambda _: style, axis=None), caption, styles=[wrap])
