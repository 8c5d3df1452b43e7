"""The explorers of kdnb.report.widgets on synthetic frames: precomputed views in Stacks, switched by dropdowns through
front-end links (kept in the saved widget state), one view per choice, each naming its choice."""

import base64
import io
import re

import matplotlib

matplotlib.use("Agg")

import ipywidgets  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from kdnb.report import analysis, paper, widgets  # noqa: E402


def _frames(settings: list[tuple[str, str, float]], methods=("baseline", "hinton"), seeds=(0, 1), epochs=3):
    """(cur, runs) for the given (data set, student, noise) settings: every method and seed, ``epochs`` epochs."""
    runs, hist = [], []
    for k, (ds, st, noise) in enumerate(settings):
        for i, m in enumerate(methods):
            for s in seeds:
                rid = f"{ds}-{st}-{noise}-{m}-{s}"
                acc = 50 + 10 * k + i + s
                runs.append({"run_id": rid, "role": "student", "status": "done", "method": m, "student": st,
                             "dataset": ds, "noise": noise, "imbalance": None, "seed": s, "final_acc": acc,
                             "best_acc": acc + 1, "epochs": epochs, "wall_s": 2.0})
                hist += [{"run_id": rid, "method": m, "student": st, "seed": s, "noise": noise, "imbalance": None,
                          "stage": "main", "epoch": e, "test_acc": acc * e / epochs, "train_acc": acc,
                          "train_loss": 1 / e} for e in range(1, epochs + 1)]
    runs = pd.DataFrame(runs)
    return analysis.curves(runs, pd.DataFrame(hist)), runs


GRID = [("cifar10", s, n) for s in ("resnet8", "resnet14") for n in (0.0, 0.4)]


@pytest.fixture(scope="module")
def grid_explorer():
    """The explorer of GRID (2 architectures × 2 noise rates), drawn once: its 12 views take seconds."""
    cur, runs = _frames(GRID)
    return widgets.explorer(cur, runs)


def _tree(w) -> list:
    out = [w]
    for c in getattr(w, "children", ()):
        out += _tree(c)
    return out


def _images(w) -> list[str]:
    return [c.value for c in _tree(w) if isinstance(c, ipywidgets.HTML) and "data:image/png" in c.value]


def _shown(w, path: list[int]) -> object:
    """The child a reader sees for the dropdown indices ``path`` (outermost first, the metric last)."""
    node = w.children[-1]
    for i in path:
        while not isinstance(node, ipywidgets.Stack):
            node = node.children[0]
        node = node.children[i]
    return node


def _alt(view) -> str:
    return re.search(r'alt="([^"]*)"', view.value).group(1)


def test_explorer_controls_stacks_and_links(grid_explorer):
    w = grid_explorer
    controls = w.children[:-1]
    # one data set: no control for it (a dropdown of one option chooses nothing)
    assert [c.description for c in controls] == ["architecture", "noise σ", "metric"]
    assert [c.options for c in controls[:2]] == [("ResNet-8", "ResNet-14"), ("σ = 0", "σ = 0.4")]
    stacks = [c for c in _tree(w) if isinstance(c, ipywidgets.Stack)]
    # architecture (1) → noise (2) → metric (one per setting: 4)
    assert len(stacks) == 1 + 2 + 4
    for st in stacks:
        assert st.selected_index == 0
        assert st.link.source[1] == "index" and st.link.source[0] in controls
        assert st.link.target == (st, "selected_index")
    metric = controls[-1]
    assert sum(st.link.source[0] is metric for st in stacks) == 4
    assert len(_images(w)) == 4 * 3  # settings × metrics: all methods in each view


def test_the_links_are_in_the_saved_widget_state(grid_explorer):
    w = grid_explorer
    stack, noise = w.children[-1], w.children[1]
    while stack.link.source[0] is not noise:
        stack = stack.children[0]
    state = ipywidgets.Widget.get_manager_state()["state"][stack.link.model_id]
    assert state["model_name"] == "LinkModel"
    assert state["state"]["source"] == [f"IPY_MODEL_{noise.model_id}", "index"]
    assert state["state"]["target"] == [f"IPY_MODEL_{stack.model_id}", "selected_index"]


def test_the_view_of_a_choice_shows_that_choice(grid_explorer):
    w = grid_explorer
    leaf = _shown(w, [1, 1])  # ResNet-14, σ = 0.4
    image, table = leaf.children
    assert _alt(image.children[2]) == "ResNet-14 · σ = 0.4 · training loss"
    assert "ResNet-14 · σ = 0.4" in table.value
    assert re.findall(r"<th>(Baseline|Hinton)</th>", table.value) == ["Baseline", "Hinton"]
    assert "<tr><th>Hinton</th><td>81.00</td><td>82.00</td><td>81.50</td>" in table.value  # 50 + 30 + 1 + seed
    png = base64.b64decode(re.search(r"base64,([^\"]+)", image.children[0].value).group(1))
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.mode == "P" and 300 < img.width < 1000  # modest dpi, few colours
    assert len(set(_images(w))) == len(_images(w))  # every view differs


def test_seed_table_rows_are_methods_and_columns_seeds():
    cur, runs = _frames(GRID[:1], methods=("hinton", "baseline", "at"), seeds=(0, 1, 2))
    tab = widgets.seed_table(runs, list(runs["run_id"]))
    assert list(tab.index) == ["Baseline", "Hinton", "AT"]
    assert list(tab.columns) == ["seed 0", "seed 1", "seed 2", "mean", "best (mean)", "epochs", "train (s)"]
    assert tab.loc["AT", "seed 2"] == 54 and tab.loc["AT", "mean"] == 53 and tab.loc["AT", "best (mean)"] == 54


def test_a_missing_combination_names_itself():
    cur, runs = _frames([("cifar10", "resnet8", 0.0), ("cifar100", "resnet8x4", 0.0)])
    w = widgets.explorer(cur, runs, metrics=["test_acc"])
    assert [c.options for c in w.children[:2]] == [("CIFAR-10", "CIFAR-100"), ("ResNet-8", "ResNet-8x4")]
    assert "no runs for CIFAR-10 · ResNet-8x4" in _shown(w, [0, 1]).value
    assert len(_images(w)) == 2


def test_balanced_versus_imbalanced_is_a_choice():
    cur, runs = _frames(GRID[:1], methods=("baseline",), seeds=(0,))
    cur = pd.concat([cur, cur.assign(run_id="other", imbalance=1.0)], ignore_index=True)  # NaN vs γ = 1
    assert [name for _, name in widgets.explorer_dims(cur)] == ["imbalance γ"]  # nothing else to choose
    both = pd.concat([cur, cur.assign(run_id="noisy", noise=0.4)], ignore_index=True)  # σ varies too
    assert widgets.explorer_dims(both) == [("condition", "data condition")]  # one control, no empty combination
    w = widgets.explorer(both, runs, metrics=["test_acc"])
    assert [c.description for c in w.children[:-1]] == ["data condition", "metric"]
    assert w.children[0].options == ("clean", "γ = 1", "σ = 0.4", "σ = 0.4 · γ = 1")
    assert widgets.choices(cur.assign(_imbalance=[analysis.column_label("imbalance", v) for v in cur["imbalance"]]),
                           "imbalance") == ["balanced", "γ = 1"]


def test_explorer_of_nothing_says_so():
    cur, runs = _frames(GRID[:1])
    assert "no learning curves" in widgets.explorer(cur.iloc[:0], runs).children[0].value
    assert "no learning curves" in widgets.explorer(cur, runs, metrics=["nonexistent"]).children[0].value


def test_transfer_explorer_one_view_per_source():
    m = paper.transfer().loc[["baseline", "hinton", "at"], ["baseline", "hinton", "at", "teacher"]]
    long = analysis.transfer_long({"kdnb": m, "paper": paper.transfer()})
    sources = analysis.sources_of(long)
    w = widgets.transfer_explorer(long)
    control, stack = w.children
    assert control.description == "source" and len(control.options) == len(sources)
    assert isinstance(stack, ipywidgets.Stack) and stack.link.source == (control, "index")
    assert [_alt(v) for v in stack.children] == [f"examples crafted on {analysis.label(s)}" for s in sources]
    assert "no transfer results" in widgets.transfer_explorer(long.iloc[:0]).children[0].value
