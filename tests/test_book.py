"""Building the book: the checkout it is run from, a time limit per cell, each page's runs as a CSV,
the protocol appendix with its anchors, and MathJax served from the book itself (offline)."""

import csv
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest
import yaml

from kdnb import store
from kdnb.report.book import NOTEBOOKS, checkout_problem, page_grids, trains

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
# The protocol's sections and their MyST labels: code comments cite them as `protocol § <Heading>`.
ANCHORS = {"Data": "protocol-data", "Label noise": "protocol-label-noise", "Class imbalance": "protocol-imbalance",
           "Models": "protocol-models", "Feature taps": "protocol-feature-taps", "Training": "protocol-training",
           "Teachers": "protocol-teachers", "Hinton": "protocol-hinton", "BSS": "protocol-bss",
           "FitNet": "protocol-fitnet", "FSP": "protocol-fsp", "AT": "protocol-at", "SP": "protocol-sp",
           "RKD": "protocol-rkd", "ONE": "protocol-one", "DML": "protocol-dml", "Evaluation": "protocol-evaluation",
           "Transferability": "protocol-transferability", "Seeds": "protocol-seeds",
           "Cited code": "protocol-code"}


def kdnb_cli(*args: str, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", KDNB_DATA=os.environ.get("KDNB_DATA", str(ROOT.parent / "shared" /
                                                                                           "data")))
    return subprocess.run([sys.executable, "-m", "kdnb.report.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def tiny_notebook(title: str, *code: str) -> nbformat.NotebookNode:
    """A notebook like the book's: a title cell, a parameters cell, then ``code`` cells."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("train = True", metadata={"tags": ["parameters", "remove-cell"]})
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}\n\nA stand-in page."), params,
                *(nbformat.v4.new_code_cell(c) for c in code)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


# --- the protocol appendix and the citations -------------------------------------------------------


def test_protocol_has_every_section_with_its_label_in_order():
    text = (ROOT / "book" / "protocol.md").read_text()
    found = re.findall(r"^\((protocol-[a-z-]+)\)=\n## (.+)$", text, flags=re.M)
    assert [(h, lab) for lab, h in found] == list(ANCHORS.items())
    assert text.startswith("# Protocol decisions\n")
    assert "- file: book/protocol\n" in (ROOT / "_toc.yml").read_text()


def test_no_page_cites_the_absent_spec():
    for md in sorted((ROOT / "book").glob("*.md")):
        hits = re.findall(r".{0,30}\b(?:spec part|spec DECISIONS|DECISIONS\.md|methods-part)\b.{0,30}", md.read_text())
        assert not hits, f"{md.name}: {hits}"


def test_methods_page_states_the_paired_design_and_cites_the_methods_papers():
    text = (ROOT / "book" / "methods.md").read_text()
    assert "paired" in text and "100–104" in text and "0–4" in text and "kdnb study" in text
    for arxiv in ("2007.01922", "1503.02531", "1805.05532", "1412.6550", "1612.03928", "1907.09682", "1904.05068",
                  "1806.04606", "1706.00384"):
        assert f"https://arxiv.org/abs/{arxiv}" in text, arxiv
    assert "Yim_A_Gift_From_CVPR_2017_paper" in text  # FSP has no arXiv version
    assert "https://arxiv.org/abs/2007.01922" in (ROOT / "book" / "intro.md").read_text()


def test_mathjax_is_vendored_and_configured():
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    path = config["sphinx"]["config"]["mathjax_path"]
    static = ROOT / config["sphinx"]["config"]["html_static_path"][0]
    assert not path.startswith(("http:", "https:", "//")) and (static / path).is_file()
    fonts = list((static / Path(path).parent / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff"))
    assert len(fonts) == 23
    size = sum(f.stat().st_size for f in (static / Path(path).parent).rglob("*") if f.is_file())
    assert size < 2_000_000, f"vendored MathJax is {size} bytes; keep only the component the book uses"


# --- which checkout, which grids -------------------------------------------------------------------


def test_checkout_problem_names_what_is_missing(tmp_path):
    assert checkout_problem(ROOT) is None
    msg = checkout_problem(tmp_path)
    assert "not a kdnb checkout" in msg and "book/" in msg and "_config.yml" in msg and "\n" not in msg
    (tmp_path / "book").mkdir()
    (tmp_path / "params").mkdir()
    assert checkout_problem(tmp_path, build=False) is None and "_toc.yml" in checkout_problem(tmp_path)


def test_kdnb_book_outside_a_checkout_fails_in_one_line(tmp_path):
    for args, cwd in (((), tmp_path), (("--root", str(tmp_path / "nowhere")), ROOT)):
        r = kdnb_cli("book", "--profile", "mini", "--no-train", *args, cwd=cwd, timeout=120)
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert r.returncode == 2 and len(lines) == 1 and "is not a kdnb checkout" in lines[0], r.stderr


def test_page_grids():
    pdir = ROOT / "params" / "paper"
    grids = {name: page_grids(name, pdir) for name in NOTEBOOKS}
    assert grids["01-generalization"] == [(pdir / "generalization.yaml", None),
                                          (pdir / "generalization_cifar100.yaml", None)]
    assert grids["02-label-noise"] == [(pdir / "label_noise.yaml", None)]
    others = sorted(set(pdir.glob("*.yaml")) - {pdir / "teachers.yaml", pdir / "summary.yaml"})
    teachers = grids["00-teachers"]
    assert teachers[0] == (pdir / "teachers.yaml", "teacher")  # baseline runs of the teacher architectures
    assert [f for f, role in teachers[1:] if role == "teacher"] == others and len(teachers) == 1 + len(others)
    if "summary" in grids:  # the summary page: the students of every grid but the teachers'; its own has none
        assert grids["summary"] == [(f, "student") for f in others]


def test_trains_is_true_only_when_a_run_is_missing(tmp_path):
    (tmp_path / "params" / "mini").mkdir(parents=True)
    params = yaml.safe_load((ROOT / "params" / "mini" / "label_noise.yaml").read_text())
    (tmp_path / "params" / "mini" / "label_noise.yaml").write_text(yaml.safe_dump(params))
    # the summary page's params file names a store but no grid: it must not count as runs to train
    (tmp_path / "params" / "mini" / "summary.yaml").write_text("profile: mini\nsection: summary\nstore: results/mini\n")
    shutil.copytree(ROOT / "results" / "mini", tmp_path / "results" / "mini")  # the committed, complete store
    assert trains(tmp_path / "params" / "mini", tmp_path) is False
    victim = next(p for p in (tmp_path / "results" / "mini" / "runs").iterdir() if (p / "record.json").is_file())
    shutil.rmtree(victim)
    assert trains(tmp_path / "params" / "mini", tmp_path) is True


# --- a stuck notebook --------------------------------------------------------------------------------


def test_kernel_client_waits_in_short_slices_up_to_the_whole_timeout():
    """Each wait on a kernel socket is cut into polls of at most POLL_S seconds (a fresh poll sees a
    message whose wake-up was lost), and still honours the caller's timeout, or none."""
    import asyncio
    from queue import Empty

    import zmq
    import zmq.asyncio
    from jupyter_client.session import Session

    from kdnb.report.book import POLL_S, _kernel_manager_class

    client = _kernel_manager_class()(kernel_name="python3").client()
    channel_class = type(client).shell_channel_class.default_value
    assert type(client).iopub_channel_class.default_value is channel_class

    async def scenario() -> None:
        ctx = zmq.asyncio.Context()
        kernel_side, client_side = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
        port = kernel_side.bind_to_random_port("tcp://127.0.0.1")
        client_side.connect(f"tcp://127.0.0.1:{port}")
        session = Session(key=b"")
        channel = channel_class(client_side, session)
        polls = []
        poll = client_side.poll

        def counting_poll(timeout=None, flags=zmq.POLLIN):
            polls.append(timeout)
            return poll(timeout, flags)

        client_side.poll = counting_poll
        t0 = time.monotonic()
        with pytest.raises(Empty):
            await channel.get_msg(timeout=2.5 * POLL_S)
        assert 2.4 * POLL_S <= time.monotonic() - t0 < 10 * POLL_S
        assert len(polls) >= 3 and all(t <= POLL_S * 1000 for t in polls)
        polls.clear()

        async def reply_later() -> None:
            await asyncio.sleep(1.6 * POLL_S)
            session.send(kernel_side, "status", {"execution_state": "idle"})

        task = asyncio.ensure_future(reply_later())
        msg = await channel.get_msg(timeout=None)  # no limit: keeps polling past the first slice
        await task
        assert msg["content"] == {"execution_state": "idle"} and len(polls) >= 2
        kernel_side.close()
        client_side.close()
        ctx.term()

    asyncio.run(scenario())



@pytest.mark.notebook
def test_a_stuck_cell_stops_the_notebook_and_is_named(tmp_path, capsys):
    from kdnb.report.book import build_book

    (tmp_path / "book").mkdir()
    (tmp_path / "params" / "tiny").mkdir(parents=True)
    (tmp_path / "params" / "tiny" / "label_noise.yaml").write_text("profile: tiny\n")
    nbformat.write(tiny_notebook("Stuck", "x = 1", "import time\ntime.sleep(120)  # never ends in time"),
                   tmp_path / "book" / "02-label-noise.ipynb")
    t0 = time.perf_counter()
    assert build_book("tiny", train=False, only=["02"], build=False, root=tmp_path, cell_timeout=3) == 1
    assert time.perf_counter() - t0 < 90  # the kernel's start and stop, not the sleep
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("kdnb book: FAILED")]
    assert len(lines) == 1, lines
    line = lines[0]
    # cell 4: the parameters cell, the injected one, `x = 1`, then the stuck one
    assert "book/02-label-noise.ipynb" in line and "cell 4 (`time.sleep(120)" in line, line
    assert "3 s per cell" in line and "--cell-timeout" in line, line
    assert not list((tmp_path / "build" / "book" / "tiny").glob("*.ipynb"))  # no page from a stopped run


# --- a copy of the tree, built from where it lies -----------------------------------------------------


@pytest.fixture(scope="module")
def copied_book(tmp_path_factory) -> Path:
    """The book's sources, params and committed mini store copied to a temporary folder, with a tiny
    stand-in for each results notebook, built by ``kdnb book --profile mini --no-train`` run there."""
    tree = tmp_path_factory.mktemp("checkout")
    for f in ("_config.yml", "_toc.yml"):
        shutil.copy2(ROOT / f, tree / f)
    (tree / "book").mkdir()
    for md in (ROOT / "book").glob("*.md"):
        shutil.copy2(md, tree / "book" / md.name)
    shutil.copytree(ROOT / "book" / "_static", tree / "book" / "_static")
    shutil.copytree(ROOT / "params" / "mini", tree / "params" / "mini")
    shutil.copytree(ROOT / "results" / "mini", tree / "results" / "mini")
    for name in NOTEBOOKS:
        nbformat.write(tiny_notebook(f"Stand-in {name}", "import os\nprint('ran in', os.getcwd())"),
                       tree / "book" / f"{name}.ipynb")
    r = kdnb_cli("book", "--profile", "mini", "--no-train", cwd=tree)
    assert r.returncode == 0, r.stderr[-3000:]
    return tree


@pytest.mark.notebook
@pytest.mark.slow
def test_kdnb_book_builds_the_checkout_it_is_run_from(copied_book):
    for name in NOTEBOOKS:
        nb = nbformat.read(copied_book / "build" / "book" / "mini" / f"{name}.ipynb", as_version=4)
        printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
        assert f"ran in {copied_book}" in printed  # the copy's notebook, run in the copy
    html = copied_book / "_build" / "html"
    for page in ("intro", "methods", "protocol", "reproducing", *NOTEBOOKS):
        assert (html / "book" / f"{page}.html").is_file(), page
    assert "Stand-in 02-label-noise" in (html / "book" / "02-label-noise.html").read_text()


@pytest.mark.notebook
@pytest.mark.slow
def test_every_results_page_links_its_runs_as_a_csv(copied_book):
    html = copied_book / "_build" / "html" / "book"
    runs = {}
    for name in NOTEBOOKS:
        page = (html / f"{name}.html").read_text()
        links = re.findall(r'href="([^"]*_downloads/[^"]*/' + re.escape(name) + r'-runs\.csv)"', page)
        assert links, f"{name}: no link to its runs"
        target = (html / links[0]).resolve()
        assert target.is_file(), target
        with target.open() as f:
            rows = list(csv.DictReader(f))
        assert rows, name
        assert set(store.COLUMNS) <= set(rows[0]) and "role" in rows[0]
        assert len({r["run_id"] for r in rows}) == len(rows)
        assert all((copied_book / "results" / "mini" / "runs" / r["run_id"]).is_dir() for r in rows)
        runs[name] = rows
    # the label-noise page: every student of its grid, and its teacher per noise rate
    p = yaml.safe_load((copied_book / "params" / "mini" / "label_noise.yaml").read_text())
    rows = runs["02-label-noise"]
    students = [r for r in rows if r["role"] == "student"]
    assert len(students) == len(p["noise"]) * len(p["methods"]) * len(p["seeds"])
    assert {r["method"] for r in students} == set(p["methods"])
    assert {float(r["noise"]) for r in rows} == set(p["noise"])
    assert len([r for r in rows if r["role"] == "teacher"]) == len(p["noise"]) * len(p["teacher_seeds"])


@pytest.mark.notebook
@pytest.mark.slow
def test_protocol_anchors_and_local_mathjax_in_the_html(copied_book):
    html = copied_book / "_build" / "html"
    protocol = (html / "book" / "protocol.html").read_text()
    for label in ANCHORS.values():
        assert f'id="{label}"' in protocol, label
    methods = (html / "book" / "methods.html").read_text()
    assert "cdn.jsdelivr.net/npm/mathjax" not in methods and "spec part" not in methods
    src = re.search(r'<script[^>]+src="([^"?]*tex-chtml\.js)[?"]', methods)
    assert src and (html / "book" / src.group(1)).resolve().is_file()
    assert 'href="protocol.html#protocol-' in methods  # the decisions link to the appendix


@pytest.mark.browser
@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium)")
def test_math_renders_offline_in_chromium(copied_book, tmp_path):
    page = copied_book / "_build" / "html" / "book" / "methods.html"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--virtual-time-budget=10000",
             f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom"]
    r = subprocess.run([str(CHROMIUM), *flags, page.as_uri()], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    dom = r.stdout
    assert dom.count("<mjx-container") > 50, "MathJax did not typeset the page"
    text = re.sub(r"<script.*?</script>|<[^>]+>", " ", dom, flags=re.S)
    assert "\\(" not in text and "\\[" not in text and "\\mathrm" not in text, "raw TeX left on the page"
    assert "<mjx-merror" not in dom, "a formula failed to typeset"


# --- --profile auto: each results page from the most faithful profile that holds it ---------------------


def _two_profiles(tmp_path: Path) -> Path:
    """A checkout with mini (its committed, complete store) and a subset60 profile whose grids are mini's
    (same configurations, so the same run ids) over an empty store results/subset60; returns its root."""
    from kdnb.report.book import FIDELITY

    assert FIDELITY == ("subset60", "mini")
    shutil.copytree(ROOT / "params" / "mini", tmp_path / "params" / "mini")
    (tmp_path / "params" / "subset60").mkdir()
    for f in (ROOT / "params" / "mini").glob("*.yaml"):
        d = yaml.safe_load(f.read_text())
        d.update(profile="subset60", store="results/subset60")
        (tmp_path / "params" / "subset60" / f.name).write_text(yaml.safe_dump(d))
    shutil.copytree(ROOT / "results" / "mini", tmp_path / "results" / "mini")
    (tmp_path / "results" / "subset60" / "runs").mkdir(parents=True)
    return tmp_path


def _copy_runs(root: Path, section: str, seeds: set[int] | None = None, skip: str | None = None) -> None:
    """Copy into results/subset60 the done records of a mini section's teachers and of its students of ``seeds``
    (all: None), but for method ``skip``."""
    from kdnb.report.pages import load_params_file
    from kdnb.study import Study

    p = load_params_file(root / "params" / "mini" / f"{section}.yaml")[0]
    st = Study(dataclasses.replace(p, store=str(root / "results" / "mini"))).status()
    keep = st[(st["role"] == "teacher") | (st["seed"].isin(seeds) if seeds is not None else True)]
    for r in keep[keep["method"] != skip].itertuples():
        src = root / "results" / "mini" / "runs" / r.run_id
        if not (root / "results" / "subset60" / "runs" / r.run_id).exists():
            shutil.copytree(src, root / "results" / "subset60" / "runs" / r.run_id)


def test_auto_takes_mini_while_subset60_holds_nothing(tmp_path):
    from kdnb.report.book import auto_params

    root = _two_profiles(tmp_path)
    chosen = auto_params(root)
    assert chosen == {s: ("mini", [0] if s == "teachers" else [0, 1]) for s in
                      ("teachers", "generalization", "label_noise", "imbalance", "transferability")}
    out = root / "build" / "params" / "auto"
    assert (out / "generalization.yaml").read_text().split("\n", 1)[1] == \
        yaml.safe_dump(yaml.safe_load((root / "params" / "mini" / "generalization.yaml").read_text()), sort_keys=False)
    assert (out / "summary.yaml").is_file() and (out / "ablations" / "bss_official.yaml").is_file()


def test_auto_takes_the_complete_seeds_of_subset60_section_by_section(tmp_path):
    from kdnb.report.book import auto_params, complete_seeds, page_dirs

    root = _two_profiles(tmp_path)
    _copy_runs(root, "teachers")
    _copy_runs(root, "generalization", seeds={0})  # seed 0 complete, seed 1 absent
    _copy_runs(root, "label_noise", seeds={0, 1}, skip="dml")  # every seed lacks one method
    chosen = auto_params(root)
    assert chosen["teachers"] == ("subset60", [0]) and chosen["generalization"] == ("subset60", [0])
    assert chosen["label_noise"] == ("mini", [0, 1]) and chosen["imbalance"] == ("mini", [0, 1])
    # the transfer matrix of seed 0 alone is not stored: the transfer page stays on mini
    assert chosen["transferability"] == ("mini", [0, 1])
    g = yaml.safe_load((root / "build" / "params" / "auto" / "generalization.yaml").read_text())
    assert g["seeds"] == [0] and g["store"] == "results/subset60" and g["profile"] == "subset60"
    # a seed is complete only when every method's run of it is done
    victim = root / "params" / "subset60" / "generalization.yaml"
    _copy_runs(root, "generalization", seeds={1}, skip="dml")  # σ = 0 of label noise brought all but DML
    assert complete_seeds(victim, root) == [0]
    _copy_runs(root, "generalization", seeds={1})
    assert complete_seeds(victim, root) == [0, 1]
    dirs = page_dirs("auto", root)
    assert dirs["summary"] == root / "params" / "mini"
    assert dirs["01-generalization"] == root / "build" / "params" / "auto"


def test_auto_takes_all_of_subset60_once_it_holds_everything(tmp_path):
    from kdnb.report.book import auto_banner, auto_params

    root = _two_profiles(tmp_path)
    for section in ("teachers", "generalization", "label_noise", "imbalance"):
        _copy_runs(root, section)
    chosen = auto_params(root)
    assert chosen["transferability"] == ("mini", [0, 1])  # the runs are there, their matrix is not
    shutil.copytree(root / "results" / "mini" / "transfer", root / "results" / "subset60" / "transfer")
    chosen = auto_params(root)
    assert {(p, tuple(s)) for p, s in chosen.values()} == {("subset60", (0,)), ("subset60", (0, 1))}
    html = auto_banner(chosen, root)
    assert 'href="02-label-noise.html"' in html and "<code>subset60</code> (1,000 training images per class, 8 " \
        "epochs, seeds 0, 1)" in html


def test_auto_takes_each_pages_ablations_from_that_pages_profile(tmp_path):
    """An ablation pairs with its page's grid, so it comes from the profile that page comes from: never
    subset60's DML ablation beside mini's imbalance grid."""
    from kdnb.report.book import auto_params

    root = _two_profiles(tmp_path)
    (root / "params" / "subset60" / "ablations").mkdir()
    for name in ("dml_temperature.yaml", "dml_reference.yaml", "schedule_control.yaml", "schedule_reference.yaml"):
        (root / "params" / "subset60" / "ablations" / name).write_text(f"# subset60's {name}\n")
    _copy_runs(root, "teachers")
    _copy_runs(root, "generalization", seeds={0})
    chosen = auto_params(root)
    assert chosen["generalization"][0] == "subset60" and chosen["imbalance"][0] == "mini"
    out = root / "build" / "params" / "auto" / "ablations"
    assert sorted(p.name for p in out.iterdir()) == ["schedule_control.yaml", "schedule_reference.yaml"]
    assert (out / "schedule_control.yaml").read_text() == "# subset60's schedule_control.yaml\n"
    _copy_runs(root, "imbalance")
    auto_params(root)
    assert (out / "dml_temperature.yaml").is_file()


def test_page_runs_name_teachers_trained_epochs_and_cpu(tmp_path):
    from kdnb.report.book import page_runs

    root = _two_profiles(tmp_path)
    pdir = root / "params" / "mini"
    summary = page_runs("summary", pdir, root)
    assert set(summary["role"]) == {"student"} and "resnet26" not in set(summary["student"])
    teachers = page_runs("00-teachers", pdir, root)
    assert set(teachers["role"]) == {"teacher"} and set(teachers["student"]) == {"resnet26"}
    gen = page_runs("01-generalization", pdir, root).set_index(["role", "method", "seed"])
    assert gen.loc[("student", "one", 0), "epochs"] == 12 and gen.loc[("student", "baseline", 0), "epochs"] == 8
    assert gen.loc[("teacher", "baseline", 0), "epochs"] == 32


def test_the_summary_pages_runs_are_those_of_every_store_it_reads(tmp_path):
    """The summary page reads every committed store (``claims.regimes``), so its CSV lists the students of
    each, naming the profile; a smoke build reads smoke's alone."""
    from kdnb.report.book import page_runs, summary_runs

    root = _two_profiles(tmp_path)
    mini = page_runs("summary", root / "params" / "mini", root)
    runs = summary_runs("auto", root)
    assert set(runs["profile"]) == {"mini"} and len(runs) == len(mini) > 0
    _copy_runs(root, "generalization", seeds={0})
    runs = summary_runs("mini", root)
    sub = runs[runs["profile"] == "subset60"]
    assert len(sub) == 12 and set(sub["seed"]) == {0} and set(sub["role"]) == {"student"}
    assert len(runs[runs["profile"] == "mini"]) == len(mini)
    assert summary_runs("smoke", root).empty  # no smoke profile in this checkout: nothing, never an error


def test_with_provenance_fills_the_cpu_from_the_segments(tmp_path):
    from kdnb.report.pages import with_provenance

    st = store.Store(tmp_path)
    rec = {"run_id": "ab12", "kind": "run", "status": "done", "config": {"epochs": 8}, "environment": {},
           "segments": [{"device": "cpu", "cpu": "AMD EPYC"}, {"device": "cpu", "cpu": "Intel Xeon"}],
           "history": [{"stage": "main", "epoch": e, "test_acc": 1.0} for e in range(1, 13)]}
    st.write(rec)
    rows = pd.DataFrame([{"run_id": "ab12", "epochs": 8, "cpu": None}, {"run_id": "cd34", "epochs": 8, "cpu": "X"}])
    out = with_provenance(rows, [tmp_path])
    assert out["epochs"].tolist() == [12, 8] and out["cpu"].tolist() == ["AMD EPYC + Intel Xeon", "X"]


@pytest.mark.notebook
@pytest.mark.slow
def test_auto_book_renders_a_partly_trained_subset60_beside_mini(tmp_path):
    root = _two_profiles(tmp_path)
    shutil.copytree(ROOT / "book", root / "book")
    _copy_runs(root, "teachers")
    _copy_runs(root, "generalization", seeds={0})
    r = kdnb_cli("book", "--profile", "auto", "--no-train", "--only", "teachers", "generalization", "--skip-build",
                 cwd=root)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "generalization: profile subset60, seeds [0]" in r.stderr and "label_noise: profile mini" in r.stderr

    def text(name: str) -> str:
        nb = nbformat.read(root / "build" / "book" / "auto" / f"{name}.ipynb", as_version=4)
        return "".join(str(o.get("data", {}).get("text/markdown", "")) + str(o.get("data", {}).get("text/html", ""))
                       for c in nb.cells if c.cell_type == "code" for o in c.outputs)

    gen = text("01-generalization")
    assert "profile `subset60`" in gen and "1 seed (0) per cell" in gen
    assert "kdnb: 1,000 training images per class, 8 epochs (ONE 12), seed 0" in gen  # the gains' regime label
    assert "paper: 5,000 training images per class, 200 epochs, 5 seeds" in gen
    teachers = text("00-teachers")  # its own teacher from subset60, the other sections' from mini's store
    assert "store `results/subset60`" in teachers and teachers.count("1,000/class · 32 ep") == 2
    assert teachers.count("1,000→50/class · 32 ep") == 1  # the γ = 1 teacher, named by its class sizes
