"""The book's notebooks are its sources: kept in git without outputs, with a parameters cell that matches
the params files and ``kdnb.study.Params``, linted by ruff, and executed cleanly with the smoke profile."""

import ast
import dataclasses
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from kdnb.report.book import NOTEBOOKS, SUMMARY_PAGE, select
from kdnb.report.pages import load_params_file
from kdnb.study import Params

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PAGE_ONLY = {"train", "params_dir"}  # notebook parameters that are not Params keys


def _tags(cell) -> list[str]:
    return cell.get("metadata", {}).get("tags", [])


def test_every_notebook_is_in_the_book_and_the_toc():
    assert sorted(p.stem for p in BOOK.glob("*.ipynb")) == sorted(NOTEBOOKS)
    toc = (ROOT / "_toc.yml").read_text()
    for name in NOTEBOOKS:
        assert f"- file: book/{name}\n" in toc


def _parameters(nb) -> dict:
    """The names and default values assigned by the notebook's parameters cell."""
    (cell,) = [c for c in nb.cells if c.cell_type == "code" and "parameters" in _tags(c)]
    out = {}
    for node in ast.parse(cell.source).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            out[target.id] = ast.literal_eval(node.value)
    return out


@pytest.mark.parametrize("name", list(NOTEBOOKS))
def test_notebook_in_git_has_no_outputs_and_a_parameters_cell(name):
    nb = nbformat.read(BOOK / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), f"{name}: clear the outputs, then save"
    assert "widgets" not in nb.metadata, f"{name}: saved widget state is an output; clear it, then save"
    assert "papermill" not in nb.metadata and not any("papermill" in c.metadata for c in nb.cells), \
        f"{name}: an executed copy (build/book/...) was saved as the source"
    params = [c for c in code if "parameters" in _tags(c)]
    assert len(params) == 1 and "remove-cell" in _tags(params[0]) and params[0] is code[0]
    assert not any("injected-parameters" in _tags(c) for c in code)
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert nb.metadata.kernelspec.name == "python3"


@pytest.mark.parametrize("name", list(NOTEBOOKS))
def test_parameters_are_the_params_keys_with_the_smoke_values(name):
    import papermill

    nb = nbformat.read(BOOK / f"{name}.ipynb", as_version=4)
    values = _parameters(nb)
    fields = {f.name for f in dataclasses.fields(Params)}
    assert fields <= set(values) and set(values) - fields <= PAGE_ONLY, sorted(set(values) ^ fields)
    assert values["train"] is True
    section = NOTEBOOKS[name]
    for path in sorted((ROOT / "params").glob(f"*/{section}*.yaml")):  # every profile's, companions too
        keys = set(yaml.safe_load(path.read_text()))
        assert keys <= set(values), f"{path}: {sorted(keys - set(values))} missing from the parameters cell"
    smoke = yaml.safe_load((ROOT / "params" / "smoke" / f"{section}.yaml").read_text())
    defaults = dataclasses.asdict(Params())
    assert {k: values[k] for k in fields} == {**defaults, **smoke}  # a plain run is the cheap smoke run
    # papermill sees every parameter (an unseen one draws "Passed unknown parameter" on injection)
    assert set(papermill.inspect_notebook(str(BOOK / f"{name}.ipynb"))) == set(values)


def test_ruff_lints_the_notebooks():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (pip install -e .[dev])")
    listed = subprocess.run([ruff, "check", "--show-files", str(ROOT)], capture_output=True, text=True, cwd=ROOT)
    assert all(f"book/{n}.ipynb" in listed.stdout for n in NOTEBOOKS), "ruff check . does not cover the notebooks"
    out = subprocess.run([ruff, "check", *(str(BOOK / f"{n}.ipynb") for n in NOTEBOOKS)], capture_output=True,
                         text=True, cwd=ROOT)
    assert out.returncode == 0, out.stdout


@pytest.mark.parametrize("profile", ["smoke", "mini", "paper"])
def test_every_profile_has_a_valid_params_file_per_notebook(profile):
    for section in NOTEBOOKS.values():
        path = ROOT / "params" / profile / f"{section}.yaml"
        p, dropped = load_params_file(path)
        assert (p.profile, p.section, dropped) == (profile, section, []), path
    for path in (ROOT / "params" / profile).glob("*_*.yaml"):  # companions, e.g. the CIFAR-100 grid
        p, dropped = load_params_file(path)
        assert p.profile == profile and p.section in NOTEBOOKS.values() and not dropped, path


def test_only_selects_sections():
    assert select(["label_noise", "04", "01-generalization"]) == ["01-generalization", "02-label-noise",
                                                                   "04-transferability"]
    assert select(None) == list(NOTEBOOKS)
    with pytest.raises(ValueError, match="unknown section"):
        select(["nope"])


@pytest.mark.notebook
@pytest.mark.parametrize("name", list(NOTEBOOKS))
def test_smoke_notebook_executed_cleanly(smoke_book, name):
    nb = nbformat.read(smoke_book / "build" / "book" / "smoke" / f"{name}.ipynb", as_version=4)
    pm = nb.metadata["papermill"]
    assert not pm.get("exception")
    expected = yaml.safe_load((ROOT / "params" / "smoke" / f"{NOTEBOOKS[name]}.yaml").read_text())
    assert pm["parameters"] == {**expected, "train": True}
    code = [c for c in nb.cells if c.cell_type == "code"]
    injected = [c for c in code if "injected-parameters" in _tags(c)]
    assert len(injected) == 1 and "profile = \"smoke\"" in injected[0].source
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert not [o for o in outputs if o.output_type == "stream" and o.name == "stderr"], "unexpected stderr"
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert 'class="kdnb-banner"' in html and "not results" in html
    # a figure: displayed, or folded as an inline PNG (the teachers page's learning curves)
    assert "kdnb-table" in html and (any("image/png" in o.get("data", {}) for o in outputs) or
                                     'src="data:image/png;base64,' in html)
    views = [o["data"][WIDGET_VIEW]["model_id"] for o in outputs if WIDGET_VIEW in o.get("data", {})]
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    if name != SUMMARY_PAGE:  # the summary has no explorer
        assert views and all(v in state for v in views), "widget state not saved"


@pytest.mark.notebook
def test_failed_notebook_keeps_the_last_good_page_and_is_named(tmp_path, capsys):
    from kdnb.report.book import build_book

    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "04-transferability.ipynb").write_bytes((BOOK / "04-transferability.ipynb").read_bytes())
    (tmp_path / "params" / "smoke").mkdir(parents=True)
    params = yaml.safe_load((ROOT / "params" / "smoke" / "transferability.yaml").read_text())
    params["store"] = str(tmp_path / "empty-store")
    (tmp_path / "params" / "smoke" / "transferability.yaml").write_text(yaml.safe_dump(params))
    good = tmp_path / "build" / "book" / "smoke" / "04-transferability.ipynb"
    good.parent.mkdir(parents=True)
    good.write_text("last good page")
    assert build_book("smoke", train=False, only=["04"], build=False, root=tmp_path) == 1
    err = capsys.readouterr().err
    assert "book/04-transferability.ipynb failed in cell" in err and "MissingRuns: 21 runs missing" in err
    assert good.read_text() == "last good page" and sorted(p.name for p in good.parent.iterdir()) == [good.name]
    assert build_book("nope", root=tmp_path) == 2 and build_book("smoke", only=["x"], root=tmp_path) == 2
