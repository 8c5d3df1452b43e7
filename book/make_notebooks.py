"""Write the book's result notebooks (book/0*.ipynb) without outputs.

The notebooks are generated so that they can be reviewed as code: edit this file, then run
``python book/make_notebooks.py``. Each parameters cell lists every key of ``kdnb.study.Params``
with its type, a comment, and the smoke profile's value as default (so a plain run is cheap);
``kdnb book`` and papermill inject a profile's ``params/<profile>/<section>.yaml`` over it.
"""

from __future__ import annotations

import dataclasses
import pprint
import re
import sys
from pathlib import Path

import nbformat
import yaml
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kdnb.study import Params  # noqa: E402

COMMENTS = {
    "profile": "smoke | mini | paper; every profile but paper shows a banner on the page",
    "section": "the page's section (the name of its params file)",
    "store": "results store: run records (and weights) by configuration hash",
    "dataset": "cifar10 | cifar100 | synthetic",
    "train_per_class": "first n training images per class (None: all)",
    "test_per_class": "first n test images per class (None: the full test set)",
    "students": "student architectures (resnet8 ... resnet26x4, wrn10_2 ... wrn40_2)",
    "teachers": "student -> teacher; default ResNet-26(x4) for ResNets, WRN-40-2 for WRNs",
    "methods": "any of kdnb.methods.METHODS; names not registered show as 'not run'",
    "seeds": "student seeds (mean ± std over them)",
    "teacher_seeds": "teacher seeds; the best one teaches every student seed",
    "epochs": "standard scheme length (paper: 200); other recipes scale with it",
    "teacher_epochs": "teacher schedule length (None: epochs)",
    "noise": "symmetric label-noise rates sigma",
    "imbalance": "power-law imbalance ratios gamma (None: balanced)",
    "imbalance_n_max": "largest class size under imbalance",
    "imbalance_n_min": "smallest class size under imbalance",
    "batch_size": "mini-batch size (paper: 128)",
    "precision": "fp32 | bf16",
    "method_args": "per-method overrides of its defaults, e.g. {hinton: {T: 4.0}}",
    "device": "auto | cpu | cuda[:i]",
    "data_root": "folder of cifar10.npz etc. (None: $KDNB_DATA or ~/.cache/kdnb/data)",
    "transfer": "PGD settings of the transfer matrix: eps, step, steps, seed, test_per_class, batch_size",
    "executor": "how `kdnb study` dispatches missing runs: local | slurm",
    "workers": "processes or array tasks of `kdnb study`",
    "slurm": "submitit parameters for the slurm executor",
}


def params_cell(section: str, extra: str = "") -> nbformat.NotebookNode:
    smoke = yaml.safe_load((ROOT / "params" / "smoke" / f"{section}.yaml").read_text())
    lines = ["# Parameters: papermill replaces these with params/<profile>/<section>.yaml (see Reproducing).",
             "from typing import Optional  # papermill reads Optional[int], not int | None", "",
             "# ruff: noqa: UP045"]
    for f in dataclasses.fields(Params):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        value = smoke.get(f.name, default)
        kind = re.sub(r"(\w+) \| None", r"Optional[\1]", str(f.type).replace("Any", "object"))  # papermill: no |
        line = f"{f.name}: {kind} = {pprint.pformat(value, width=110 - len(f.name) - len(kind), compact=True)}"
        comment = COMMENTS.get(f.name, "")
        if comment and len(line) + len(comment) + 4 <= 120 and "\n" not in line:
            line += f"  # {comment}"
        elif comment:
            line = f"# {f.name}: {comment}\n{line}"
        lines.append(line)
    lines.append("train: bool = True  # train the runs the store lacks; False: fail naming the missing runs")
    if extra:
        lines.append(extra)
    return new_code_cell("\n".join(lines), metadata={"tags": ["parameters", "remove-cell"]})


def setup(body: str, pandas: bool = False, study: bool = True, history: bool = True) -> str:
    """The first hidden cell: imports, the page's Params, the banner, then ``body``."""
    imports = ["import warnings", ""]
    imports += ["import matplotlib.pyplot as plt"] + (["import pandas as pd"] if pandas else [])
    imports += ["from IPython.display import HTML, Markdown, display", "", "from kdnb import pages, paper, plots"]
    imports += ["from kdnb.store import history"] if history else []
    imports += ["from kdnb.study import Study"] if study else []
    return "\n".join(imports) + """

warnings.filterwarnings("ignore", category=UserWarning, module="seaborn")
plt.rcParams.update({"figure.dpi": 96, "axes.titlesize": 10})


def details(summary: str, html: str) -> HTML:
    return HTML(f"<details><summary>{summary}</summary>{html}</details>")


params, dropped = pages.params_from(globals())
display(HTML(pages.banner(params.profile)))
""" + body


def hidden(source: str) -> nbformat.NotebookNode:
    return new_code_cell(source, metadata={"tags": ["hide-input"]})


def removed(source: str) -> nbformat.NotebookNode:
    return new_code_cell(source, metadata={"tags": ["remove-input"]})


def md(text: str) -> nbformat.NotebookNode:
    return new_markdown_cell(text)


EXPLORE_MD = md("""## Explore the runs

Choose a data set, an architecture, a method and a metric to see the learning curves of every seed
(the baseline dashed for comparison) and the seeds' final and best accuracy. In the static book this
is a snapshot saved when the page was executed; open the notebook in Jupyter to use it. The figure
after it shows every choice at once.""")

GRID_MD = md("""## Every choice at a glance

One row per method, one column per metric; one line per setting (mean ± sd over seeds).""")


def curves_section(runs_expr: str, title: str) -> list[nbformat.NotebookNode]:
    """The closing cells of a results page: learning curves, the explorer widget, its static grid."""
    return [
        md("## Learning curves"),
        hidden(f"""cur = plots.curves({runs_expr}, history(params.store))
display(plots.plot_curves(cur, "test_acc", title="{title}"))"""),
        EXPLORE_MD,
        hidden(f"display(plots.explorer(cur, {runs_expr.split('[')[0]}))"),
        GRID_MD,
        removed("display(plots.curves_grid(cur))"),
    ]


# ---------------------------------------------------------------------------------------------


def teachers() -> nbformat.NotebookNode:
    return new_notebook(cells=[
        md("""# Teachers (Table II)

Every distillation method except ONE and DML learns from a teacher: ResNet-26 for the ResNet
students and WRN-40-2 for the WRN students, trained with the baseline recipe on the same data as
their students (the same noisy labels, the same imbalanced subset). As in the paper, each teacher
is trained with several seeds and the seed with the highest test accuracy teaches every student
seed. This page reports the teachers of every section of the profile, beside the paper's
Table II."""),
        params_cell("teachers", "params_dir: Optional[str] = None  # the profile's params (None: params/<profile>)"),
        hidden(setup("""
pdir = params_dir or f"params/{params.profile}"
grids = [params]  # this page's own grid: baseline runs of the teacher architectures
for sec in ("generalization", "label_noise", "imbalance", "transferability"):
    for f in pages.section_files(pdir, sec):
        p, _ = pages.load_params_file(f)
        grids += pages.teacher_params(p, store=params.store, device=params.device, data_root=params.data_root)
truns = pages.teacher_runs(grids, train=train)
cmp = plots.teacher_comparison(plots.teacher_table(truns), paper.teachers())
display(Markdown(pages.teachers_text(grids, pdir)))""", study=False)),
        md("## Table II: teacher accuracy"),
        hidden("""caption = "Final test accuracy (%) of the teacher seed used; kdnb beside the paper's Table II"
display(plots.style_teachers(cmp, caption=caption))
display(Markdown(plots.describe_teachers(cmp)))"""),
        hidden("display(plots.plot_teachers(cmp))"),
        *curves_section("truns", "teachers: test accuracy per epoch"),
    ])


def generalization() -> nbformat.NotebookNode:
    table_cell = """ds = {ds!r}
shown = [d for d in ours["dataset"].unique() if (d == "cifar100") == (ds == "cifar100")]
theirs = plots.paper_summary(paper.generalization(ds))
display(details("The paper's Table {tab}", plots.style_table(
    theirs, "student", columns=list(paper.{students}), caption="paper, Table {tab}").to_html()))
if not shown:
    display(Markdown("{name} is not part of this profile: *not run*."))
for d in shown:
    o = ours[ours["dataset"] == d]
    cols = list(paper.{students}) + sorted(set(o["student"]) - set(paper.{students}))
    display(plots.style_table(o, "student", columns=cols, caption=f"kdnb, {{plots.label(d)}}: final test accuracy "
                              "(%), mean ± std over seeds; best of each column in bold"))
    display(plots.side_by_side(o, theirs, "student", caption=f"kdnb ({{plots.label(d)}}) beside the paper's "
                               "Table {tab}, Δ = kdnb − paper"))
    display(Markdown(plots.describe(o, theirs, "student")))
    display(Markdown(plots.teacher_gap(runs[runs["dataset"] == d], "student")))"""
    return new_notebook(cells=[
        md("""# Generalization (Tables III and IV)

The paper's first question: how much does each method improve a student over the same network
trained alone (the baseline), across architectures and capacity gaps? Students are ResNet-8/14/20/26
(taught by ResNet-26) and WRN-10/16/28/40-2 (taught by WRN-40-2), on CIFAR-10 (Table III) and
CIFAR-100 (Table IV). Every cell is the final-epoch test accuracy, mean ± std over seeds; the
paper's number is shown beside it with the difference."""),
        params_cell("generalization",
                    "params_dir: Optional[str] = None  # other grids of this page: <params_dir>/generalization_*.yaml"),
        hidden(setup("""
pdir = params_dir or f"params/{params.profile}"
grids = [params] + [pages.load_params_file(f)[0] for f in pages.section_files(pdir, "generalization", True)]
runs = pd.concat([Study(p).run(train=train, progress=False) for p in grids], ignore_index=True)
ours = plots.summarize(runs, by=["dataset", "student"])
for p in grids:
    display(Markdown(pages.setting_text(p, dropped)))""", pandas=True)),
        md("## CIFAR-10 (Table III)"),
        hidden(table_cell.format(ds="cifar10", tab="III", students="STUDENTS", name="CIFAR-10")),
        md("## CIFAR-100 (Table IV)"),
        hidden(table_cell.format(ds="cifar100", tab="IV", students="STUDENTS_C100", name="CIFAR-100")),
        md("## Gain over the baseline"),
        hidden("""for d in ours["dataset"].unique():
    paper_ds = "cifar100" if d == "cifar100" else "cifar10"
    display(plots.plot_gains(ours[ours["dataset"] == d], plots.paper_summary(paper.generalization(paper_ds)),
                             "student", title=f"{plots.label(d)}: final accuracy − baseline (points)"))"""),
        *curves_section('runs[runs["role"] == "student"]', "test accuracy per epoch, mean ± sd over seeds"),
    ])


def condition(section: str, column: str) -> nbformat.NotebookNode:
    noise = column == "noise"
    tab = "V" if noise else "VI"
    intro = ("""# Label noise (Table V)

Does the extra supervision of a teacher protect a student from wrong labels? Each training label is
replaced, with probability σ (the noise rate), by a class drawn uniformly at random; the test set
stays clean. Teachers are trained on the same noisy labels. The paper uses WRN-16-2 ← WRN-40-2 on
CIFAR-10 with σ ∈ {0.2, 0.4, 0.6} (σ = 0 is Table III's column). Bold: the best of a column; blue:
below the baseline, as in the paper.""" if noise else """# Class imbalance (Table VI)

Does a teacher help a student learn the minority classes? The training set follows a power law: the
class sizes fall from `imbalance_n_max` to `imbalance_n_min`, more steeply for a smaller ratio γ; the
test set stays balanced. Teachers are trained on the same imbalanced data. The paper uses WRN-16-2 ←
WRN-40-2 on CIFAR-10 with γ ∈ {0.2, 0.6, 1, 2} and class sizes from 5000 to 250. Bold: the best of a
column; blue: below the baseline, as in the paper.""")
    rates = "NOISE_RATES" if noise else "IMBALANCE_RATES"
    return new_notebook(cells=[
        md(intro),
        params_cell(section),
        hidden(setup(f"""
study = Study(params)
runs = study.run(train=train, progress=False)
ours = plots.summarize(runs, by=["student", "{column}"])
theirs = plots.paper_summary(paper.{section}())
display(Markdown(pages.setting_text(params, dropped)))""")),
        md(f"## Table {tab}"),
        hidden(f"""display(details("The paper's Table {tab} (WRN-16-2 ← WRN-40-2, CIFAR-10)", plots.style_table(
    theirs, "{column}", below_baseline=True, caption="paper, Table {tab}").to_html()))
for s in params.students:
    o = ours[ours["student"] == s]
    cols = sorted(set(paper.{rates}) | set(o["{column}"].dropna()))
    display(plots.style_table(o, "{column}", columns=cols, below_baseline=True,
                              caption=f"kdnb, {{plots.label(s)}}: final test accuracy (%), mean ± std over seeds"))
    display(plots.side_by_side(o, theirs, "{column}", caption=f"kdnb ({{plots.label(s)}}) beside the paper's Table "
                               "{tab} (WRN-16-2), Δ = kdnb − paper"))
    display(Markdown(plots.describe(o, theirs, "{column}")))
    display(Markdown(plots.teacher_gap(runs[(runs["student"] == s) | (runs["role"] == "teacher")], "{column}")))"""),
        md("## Accuracy against " + ("the noise rate" if noise else "the imbalance ratio")),
        hidden(f"""for s in params.students:
    display(plots.plot_vs_condition(runs[runs["student"] == s], theirs, "{column}",
                                    title=f"kdnb {{plots.label(s)}} (left), paper WRN-16-2 (right)"))"""),
        md("## Gain over the baseline"),
        hidden(f"""for s in params.students:
    display(plots.plot_gains(ours[ours["student"] == s], theirs, "{column}",
                             title=f"{{plots.label(s)}}: final accuracy − baseline (points)"))"""),
        *curves_section('runs[runs["role"] == "student"]', "test accuracy per epoch, mean ± sd over seeds"),
    ])


def transferability() -> nbformat.NotebookNode:
    return new_notebook(cells=[
        md("""# Transferability (Fig. 1)

How similar do students become to their teacher, and to each other? The paper measures it by the
transferability of adversarial examples: PGD examples (L∞, ε = 0.031, step 0.003, 20 steps, random
start) are crafted on a source model and fed to a target model; the success rate counts only the
test images that both models classify correctly. Higher rates suggest more similar decision
boundaries. Rows are targets, columns sources; a cell is the mean over ordered pairs of different
seeds; the Teacher column attacks every student with the teacher's examples. The students are the
generalization runs, so nothing new is trained here; the matrix is stored in the results store as a
record, so the page renders from it where the weights are not available."""),
        params_cell("transferability"),
        hidden(setup("""
study = Study(params)
runs = study.run(train=train, progress=False)
theirs = paper.transfer()
mats = {s: pages.transfer_for(study, runs, s) for s in params.students}
display(Markdown(pages.setting_text(params, dropped)))
for s, (_, rec) in mats.items():
    st = rec["settings"]
    n_models = sum(len(v) for v in rec["sources"].values())
    display(Markdown(f"**{plots.label(s)}**: {rec['n_images']} test images, PGD ε = {st['eps']}, step {st['step']}, "
                     f"{st['steps']} steps, seed {st['seed']}; {n_models} student models and the teacher; "
                     f"matrix record `{pages.transfer_path(params.store, rec['key'])}`."))""", history=False)),
        md("## The matrix"),
        hidden("""fig1 = plots.style_transfer(theirs, caption="paper, Fig. 1").to_html()
display(details("The paper's Fig. 1", fig1))
for s, (m, _) in mats.items():
    display(plots.style_transfer(m, caption=f"kdnb, {plots.label(s)}: success rate (%) of examples crafted on the "
                                 "source (columns) against the target (rows)"))"""),
        hidden("""for s, (m, _) in mats.items():
    display(plots.plot_transfer({f"kdnb ({plots.label(s)})": m, "paper": theirs},
                                plots.transfer_difference(m, theirs)))"""),
        md("## The paper's observations, checked"),
        hidden("""for s, (m, _) in mats.items():
    obs = pages.transfer_observations(theirs)[["observation", "holds"]].rename(columns={"holds": "paper"})
    mine = pages.transfer_observations(m).rename(columns={"holds": "kdnb"})
    obs = obs.merge(mine, on="observation")
    display(plots.style_observations(obs))
    display(Markdown(f"The rankings behind them, kdnb ({plots.label(s)}):\\n\\n" + pages.transfer_rankings(m)))
    checked = obs.dropna(subset=["kdnb"])
    agree = int((checked["kdnb"] == checked["paper"]).sum())
    display(Markdown(f"{plots.label(s)}: {agree} of {len(checked)} checkable observations agree with the paper"
                     + (f"; {len(obs) - len(checked)} cannot be checked (methods not run)." if len(checked) < len(obs)
                        else ".")))"""),
        md("""## Explore the matrix

Choose a source model to see the success rate of its examples on every target, kdnb beside the
paper. In the static book this is a snapshot; the figure after it shows every source."""),
        hidden("""long = plots.transfer_long({"kdnb": next(iter(mats.values()))[0], "paper": theirs})
display(plots.transfer_explorer(long))"""),
        md("## Every source at a glance"),
        removed("display(plots.transfer_grid(long))"),
    ])


NOTEBOOKS = {
    "00-teachers": teachers,
    "01-generalization": generalization,
    "02-label-noise": lambda: condition("label_noise", "noise"),
    "03-imbalance": lambda: condition("imbalance", "imbalance"),
    "04-transferability": transferability,
}


def main() -> None:
    for name, make in NOTEBOOKS.items():
        nb = make()
        nb.metadata.update({"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                            "language_info": {"name": "python"}})
        for i, cell in enumerate(nb.cells):
            cell["id"] = f"{name[:2]}-{i:02d}"
        nbformat.validate(nb)
        nbformat.write(nb, ROOT / "book" / f"{name}.ipynb")


if __name__ == "__main__":
    main()
