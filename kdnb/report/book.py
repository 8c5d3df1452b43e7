"""Build the book: execute the result notebooks with papermill, then build the HTML with Jupyter Book.

``kdnb book`` builds the checkout it is run from: the working directory, or ``--root DIR``, which
must hold ``book/``, ``params/`` and (to build the HTML) ``_config.yml`` and ``_toc.yml``. Notebooks
in git have no outputs; the executed copies are build products, all under that checkout:

    build/book/<profile>/<name>.ipynb  the executed notebooks (a copy is replaced only when its run succeeded)
    build/site/                        the book's sources as they are in the checkout (_config.yml, _toc.yml,
                                       book/*.md, book/_static) with the executed notebooks in book/ and
                                       each page's runs as book/data/<name>-runs.csv
    _build/html/                       the HTML: ``jupyter-book build build/site --path-output . -W -n --keep-going``

``--profile auto`` (the default of ``make book``) draws each results page from the most faithful profile
of ``FIDELITY`` whose store holds that page's grid for at least one complete seed (every run of the seed
done; for the transfer page, its matrix stored too), restricted to its complete seeds, else from mini,
whose store is committed complete: the effective params files are written to ``build/params/auto/``
(``auto_params``) and each page says which regime it comes from.

Outside the paper profile every page gets a banner saying which profile built it. Each cell has a
time limit (``cell_timeout``; by default only when the build trains nothing), so a stuck notebook
fails naming itself and the cell.
"""

from __future__ import annotations

import functools
import logging
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from kdnb.report import paper
from kdnb.report.analysis import params_images_text
from kdnb.report.grids import transfer_seeds
from kdnb.report.pages import banner, with_provenance

# notebook (book/<name>.ipynb) -> section (params/<profile>/<section>.yaml), in the order they are executed:
# the summary page (first in _toc.yml) reads the stored runs of the others, so it is executed last
NOTEBOOKS = {"00-teachers": "teachers", "01-generalization": "generalization", "02-label-noise": "label_noise",
             "03-imbalance": "imbalance", "04-transferability": "transferability", "summary": "summary"}
TEACHERS_PAGE = "00-teachers"  # also reports the teachers of every other grid of the profile
SUMMARY_PAGE = "summary"  # reports the students of every other grid of the profile; its params file has no grid
# Seconds per cell when nothing is trained: the slowest cell of the mini book takes about 30 s on a
# loaded 2-core CPU, so 30 minutes leaves a margin of 60x and still ends a hang.
DEFAULT_CELL_TIMEOUT = 1800
# Run states of `Study.status` that a notebook allowed to train would train (or wait for).
TO_TRAIN = ("missing", "interrupted", "running", "waiting for teacher", "corrupt")
# Longest single wait on a kernel socket; see _kernel_manager_class.
POLL_S = 1.0
AUTO = "auto"  # --profile auto: each results page from the most faithful profile that holds it (auto_params)
# The profiles auto draws from, most faithful first: subset60 (60 epochs, 3 seeds; issue of its own store) and
# mini (8 epochs, 2 seeds), whose committed store is complete and so the fallback.
FIDELITY = ("subset60", "mini")


def _say(msg: str) -> None:
    print(f"kdnb book: {msg}", file=sys.stderr, flush=True)


def checkout_problem(root: Path, build: bool = True) -> str | None:
    """Why ``root`` is not a kdnb checkout that ``kdnb book`` can run in, or None when it is."""
    need = ["book/", "params/", *(["_config.yml", "_toc.yml"] if build else [])]
    missing = [n for n in need if not (root / n.rstrip("/")).exists()]
    if not missing:
        return None
    return (f"{root} is not a kdnb checkout (no {', '.join(missing)}); run kdnb book in the repository's "
            "root folder or pass --root DIR")


def select(only: list[str] | None) -> list[str]:
    """Notebook names for ``--only`` values (section, notebook name or its number: ``label_noise``,
    ``02-label-noise``, ``02``); all of them for None. An unknown value raises ValueError."""
    if not only:
        return list(NOTEBOOKS)
    chosen = []
    for value in only:
        v = value.strip().removesuffix(".ipynb").replace("-", "_")
        hits = [n for n, s in NOTEBOOKS.items() if v in (s, n.replace("-", "_"), n[:2])]
        if not hits:
            raise ValueError(f"unknown section {value!r}; valid: {', '.join(NOTEBOOKS.values())}")
        chosen += [h for h in hits if h not in chosen]
    return [n for n in NOTEBOOKS if n in chosen]


def _first_line(text: str) -> str:
    lines = [s.strip() for s in str(text).splitlines() if s.strip()]
    return lines[0] if lines else ""


def _cell_summary(cell) -> str:
    """The cell's first line of code that is not an import, shortened: enough to find the cell."""
    code = [s.strip() for s in cell.source.splitlines() if s.strip() and not s.lstrip().startswith("#")]
    snippet = next((s for s in code if not s.startswith(("import ", "from "))), code[0] if code else "")
    return snippet if len(snippet) <= 60 else snippet[:57] + "..."


@functools.cache
def _kernel_manager_class() -> type:
    """The kernel manager papermill runs notebooks with: jupyter_client's, but its client waits on the
    shell and IOPub sockets in slices of at most POLL_S seconds, each slice polling afresh.

    A single long wait can miss a message that is already there (the socket's edge-triggered
    readiness signal is lost), and nbclient waits for a cell's reply with the cell's whole time
    limit, or forever: the executed cell is done and its kernel idle, yet the notebook hangs until
    the limit runs out. A fresh poll sees the waiting message at once.
    """
    from jupyter_client.asynchronous import AsyncKernelClient
    from jupyter_client.channels import AsyncZMQSocketChannel
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import Type, default

    class SlicedWaitChannel(AsyncZMQSocketChannel):
        async def get_msg(self, timeout: float | None = None) -> dict:
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                left = POLL_S if deadline is None else min(POLL_S, max(0.0, deadline - time.monotonic()))
                try:
                    return await super().get_msg(left)
                except queue.Empty:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise

    class SlicedWaitClient(AsyncKernelClient):
        shell_channel_class = Type(SlicedWaitChannel)
        iopub_channel_class = Type(SlicedWaitChannel)

    class KernelManager(AsyncKernelManager):
        @default("client_factory")
        def _sliced_wait_client(self) -> type:
            return SlicedWaitClient

    return KernelManager


def execute(name: str, params_file: Path, out_dir: Path, train: bool, root: Path,
            cell_timeout: int | None = DEFAULT_CELL_TIMEOUT, params_dir: Path | None = None) -> str | None:
    """Run book/<name>.ipynb of ``root`` with the params file (plus ``train``, and ``params_dir`` where given:
    the folder of the page's other grids) into out_dir/<name>.ipynb.

    The notebook is written to a temporary file and moved into place only when it ran without error,
    so a failed run never replaces the last good page. A cell that runs longer than ``cell_timeout``
    seconds (None or 0: no limit) is stopped with its kernel. Returns None, or the error in one line.
    """
    import papermill as pm
    from nbclient.exceptions import CellTimeoutError

    logging.getLogger("papermill").setLevel(logging.WARNING)  # one line per notebook is ours to print
    params = yaml.safe_load(params_file.read_text()) or {}
    params["train"] = train
    if params_dir is not None:
        params["params_dir"] = str(params_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{name}.", suffix=".ipynb")
    os.close(fd)
    src = root / "book" / f"{name}.ipynb"
    current: dict = {}  # the code cell being executed, for the error line

    def on_cell_execute(cell, cell_index: int) -> None:
        current.update(cell=cell, index=cell_index)

    try:
        pm.execute_notebook(str(src), tmp, parameters=params, kernel_name="python3", cwd=str(root),
                            progress_bar=False, log_output=False, execution_timeout=cell_timeout or None,
                            on_cell_execute=on_cell_execute, kernel_manager_class=_kernel_manager_class())
    except pm.PapermillExecutionError as err:
        Path(tmp).unlink(missing_ok=True)
        return f"book/{name}.ipynb failed in cell {err.exec_count}: {err.ename}: {_first_line(err.evalue)}"
    except CellTimeoutError:
        Path(tmp).unlink(missing_ok=True)
        cell = current.get("cell")
        which = (f"cell {cell.get('execution_count') or current['index']} (`{_cell_summary(cell)}`)"
                 if cell is not None else "a cell")
        return (f"book/{name}.ipynb: {which} ran past the limit of {cell_timeout} s per cell and was stopped "
                "(kdnb book --cell-timeout SECONDS; 0 for no limit)")
    except Exception as err:  # the kernel died, a bad parameter, ...
        Path(tmp).unlink(missing_ok=True)
        return f"book/{name}.ipynb failed: {type(err).__name__}: {_first_line(err)}"
    os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
    os.replace(tmp, out_dir / f"{name}.ipynb")
    return None


# --- each page's runs as a CSV ---------------------------------------------------------------------


def _study(params_file: Path, root: Path):
    from kdnb.study import Study, load_params

    p = load_params(params_file)
    if not Path(p.store).is_absolute():  # stores are named relative to the checkout
        p.store = str(root / p.store)
    return Study(p)


def grid_files(pdir: Path) -> list[Path]:
    """The params files of a profile that define a grid of runs (all but the summary page's)."""
    return [f for f in sorted(pdir.glob("*.yaml")) if f.stem != NOTEBOOKS[SUMMARY_PAGE]]


TEACHER = "teacher"


def page_grids(name: str, pdir: Path) -> list[tuple[Path, str | None]]:
    """(params file, role or None for every role) of the grids whose runs book/<name>.ipynb shows:
    its section's file and its variants (``generalization_cifar100.yaml``); the teachers page adds
    the teachers of every other grid of the profile, the summary page shows the students of all but
    the teachers section's grid. The runs of that grid (baseline runs of a teacher architecture)
    are teachers, whatever role the grid gives them."""
    teachers_file = pdir / f"{NOTEBOOKS[TEACHERS_PAGE]}.yaml"
    if name == SUMMARY_PAGE:  # the teachers section's grid is teachers (baseline runs of ResNet-26), not students
        return [(f, "student") for f in grid_files(pdir) if f != teachers_file]
    section = NOTEBOOKS[name]
    own = sorted({*pdir.glob(f"{section}.yaml"), *pdir.glob(f"{section}_*.yaml")})
    grids: list[tuple[Path, str | None]] = [(f, TEACHER if f == teachers_file else None) for f in own]
    if name == TEACHERS_PAGE:
        grids += [(f, "teacher") for f in grid_files(pdir) if f not in own]
    return grids


def page_runs(name: str, pdir: Path, root: Path):
    """The runs of a page, one row per run with the columns of ``kdnb.store.load`` and ``role``; ``epochs`` and
    ``cpu`` as the runs trained (``pages.with_provenance``)."""
    import pandas as pd

    from kdnb import store

    frames = []
    teachers_file = pdir / f"{NOTEBOOKS[TEACHERS_PAGE]}.yaml"
    for params_file, role in page_grids(name, pdir):
        study = _study(params_file, root)
        grid = study.status().dropna(subset=["run_id"])[["run_id", "role"]]
        if params_file == teachers_file:
            grid = grid.assign(role=TEACHER)
        elif role:
            grid = grid[grid["role"] == role]
        runs = store.load(study.params.store).merge(grid.drop_duplicates("run_id"), on="run_id")
        frames.append(with_provenance(runs, [study.params.store]))
    if not frames:
        return pd.DataFrame(columns=[*store.COLUMNS, "status", "kind", "role"])
    df = pd.concat(frames, ignore_index=True)
    # a run that is a teacher in one of the page's grids is shown as one
    df = df.sort_values("role", key=lambda r: r != "teacher", kind="stable").drop_duplicates("run_id")
    df = df.sort_values(["role", "student", "method", "noise", "imbalance", "seed"], kind="stable",
                        na_position="first")
    return df.assign(in_paper=df["method"].isin(paper.METHODS)).reset_index(drop=True)  # False: a plugin's


def summary_runs(profile: str, root: Path):
    """The runs the summary page reads: the students of every committed store (``claims.regimes``: the
    paper's protocol, subset60, mini), each row naming its ``profile``; a build of another profile (smoke)
    reads its own store only."""
    import pandas as pd

    from kdnb.report.claims import REGIMES

    profiles = [p for p in REGIMES if (root / "params" / p).is_dir()] if profile in (AUTO, *REGIMES) else [profile]
    frames = [page_runs(SUMMARY_PAGE, root / "params" / p, root).assign(profile=p) for p in profiles]
    found = [f for f in frames if len(f)]
    return pd.concat(found, ignore_index=True) if found else pd.DataFrame(columns=["run_id", "role", "profile"])


# --- --profile auto: each results page from the most faithful profile that holds it --------------------


def complete_seeds(params_file: Path, root: Path) -> list[int]:
    """The seeds of a grid whose runs are all done: the teachers and, for the seed, every method's run in
    every data condition (a seed is complete when all of its methods' runs are). For a transferability grid,
    the longest prefix of them whose transfer matrix is stored (the book attacks nothing without training)."""
    try:
        study = _study(params_file, root)
        st = study.status()
    except Exception:  # an unreadable store or params file: nothing to draw from it
        return []
    done = st["state"].isin(("done", "stale"))
    if st.empty or not done[st["role"] == "teacher"].all():
        return []
    per_seed = done[st["role"] == "student"].groupby(st["seed"]).all()
    seeds = [int(s) for s in study.params.seeds if per_seed.get(s, False)]
    if study.params.section == "transferability":
        seeds = transfer_seeds(study.params, seeds)
    return seeds


def auto_params(root: Path, out: Path | None = None) -> dict[str, tuple[str, list[int]]]:
    """Write the params files of ``--profile auto`` to ``out`` (default ``build/params/auto``): for each
    section, the file of the first profile of ``FIDELITY`` that has at least one complete seed
    (``complete_seeds``), restricted to those seeds, else mini's as it is; the summary page's is mini's, and
    each page's ablations (``pages.ABLATIONS``) come from its own profile. Returns section -> (profile, seeds)."""
    out = out or root / "build" / "params" / AUTO
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    chosen = {}
    for section in [s for n, s in NOTEBOOKS.items() if n != SUMMARY_PAGE]:
        for profile in FIDELITY:
            src = root / "params" / profile / f"{section}.yaml"
            if not src.is_file():
                continue
            seeds = complete_seeds(src, root) if profile != FIDELITY[-1] else None
            if seeds or profile == FIDELITY[-1]:
                break
        d = yaml.safe_load(src.read_text())
        if seeds is not None:
            d["seeds"] = seeds
        note = (f"# kdnb book --profile auto: {src.relative_to(root)}" + (f" restricted to seeds {seeds}, those whose "
                f"runs are all in {d['store']}" if seeds is not None else "") + "\n")
        (out / f"{section}.yaml").write_text(note + yaml.safe_dump(d, sort_keys=False))
        chosen[section] = (profile, list(d["seeds"]))
        for name in ablation_files(section):  # a page's ablations pair with its own grid: same profile
            if (src.parent / "ablations" / name).is_file():
                (out / "ablations").mkdir(exist_ok=True)
                shutil.copy2(src.parent / "ablations" / name, out / "ablations" / name)
    summary = root / "params" / FIDELITY[-1] / f"{NOTEBOOKS[SUMMARY_PAGE]}.yaml"
    if summary.is_file():
        shutil.copy2(summary, out / summary.name)
    return chosen


def ablation_files(section: str) -> list[str]:
    """The files of the ablations shown on ``section``'s page (``pages.ABLATIONS``): each control and its
    reference."""
    from kdnb.report.pages import ABLATIONS

    return [f for a in ABLATIONS if a.section == section for f in (a.file, a.ref)]


def auto_banner(chosen: dict[str, tuple[str, list[int]]], root: Path) -> str:
    """The banner of the book's text pages under ``--profile auto``: which regime each results page comes
    from (HTML)."""
    from kdnb.report.pages import load_params_file

    pages = {s: n for n, s in NOTEBOOKS.items()}
    items = []
    for section, (profile, seeds) in chosen.items():
        p = load_params_file(root / "params" / profile / f"{section}.yaml")[0]
        images = params_images_text(p)
        items.append(f'<a href="{pages[section]}.html">{section.replace("_", " ")}</a>: <code>{profile}</code> '
                     f"({images}, {p.epochs} epochs, seed{'' if len(seeds) == 1 else 's'} "
                     f"{', '.join(map(str, seeds))})")
    return ('<div class="kdnb-banner">Each results page comes from the most faithful profile whose store holds '
            "its runs for at least one complete seed (reduced protocols, not the paper's: compare gains, "
            "orderings and trends, not values): " + "; ".join(items) + ".</div>")


def _link_runs(notebook: Path, csv: str, n_runs: int) -> None:
    """Insert, after the notebook's title cell, a paragraph linking the page's runs as a CSV."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    at = next((i + 1 for i, c in enumerate(nb.cells)
               if c.cell_type == "markdown" and any(s.startswith("# ") for s in c.source.splitlines())), 0)
    text = (f"**Runs of this page:** {{download}}`{csv} <data/{csv}>`, {n_runs} run{'' if n_runs == 1 else 's'}, "
            "one row per run: its configuration, final and best test accuracy, wall time, device and code "
            "version (the columns of `kdnb.store.load`, `role`, `in_paper`: false for a method the paper "
            "does not have, and on the summary page `profile`, the store each run comes from).")
    nb.cells.insert(at, nbformat.v4.new_markdown_cell(text, id="kdnb-runs-csv"))
    nbformat.write(nb, notebook)


# --- the HTML ---------------------------------------------------------------------------------------


def _with_banner(text: str, html: str) -> str:
    """Markdown with the banner after its first heading."""
    lines = text.splitlines()
    at = next((i + 1 for i, line in enumerate(lines) if line.startswith("# ")), 0)
    return "\n".join([*lines[:at], "", html, "", *lines[at:]]) + "\n"


def page_dirs(profile: str, root: Path) -> dict[str, Path]:
    """The params folder each notebook is executed with: ``params/<profile>``; under ``--profile auto``,
    ``build/params/auto`` (``auto_params``) for every page but the summary, which reads mini's."""
    if profile != AUTO:
        return dict.fromkeys(NOTEBOOKS, root / "params" / profile)
    return {n: root / "params" / FIDELITY[-1] if n == SUMMARY_PAGE else root / "build" / "params" / AUTO
            for n in NOTEBOOKS}


def assemble(profile: str, executed: Path, site: Path, root: Path, html: str | None = None) -> None:
    """Copy the book's sources and the executed notebooks into ``site`` (same layout as the checkout),
    with each results page's runs as ``book/data/<name>-runs.csv`` and a link to it on the page;
    ``html``: the text pages' banner (default: the profile's)."""
    missing = [n for n in NOTEBOOKS if not (executed / f"{n}.ipynb").is_file()]
    if missing:
        raise FileNotFoundError(f"no executed copy of {', '.join(missing)} in {executed}; run `kdnb book --profile "
                                f"{profile}` without --only first")
    if site.exists():
        shutil.rmtree(site)
    (site / "book" / "data").mkdir(parents=True)
    for f in ("_config.yml", "_toc.yml"):
        shutil.copy2(root / f, site / f)
    html = banner(profile) if html is None else html
    dirs = page_dirs(profile, root)
    for md in (root / "book").glob("*.md"):
        text = md.read_text()
        (site / "book" / md.name).write_text(_with_banner(text, html) if html else text)
    shutil.copytree(root / "book" / "_static", site / "book" / "_static")
    for n in NOTEBOOKS:
        shutil.copy2(executed / f"{n}.ipynb", site / "book" / f"{n}.ipynb")
        runs = summary_runs(profile, root) if n == SUMMARY_PAGE else page_runs(n, dirs[n], root)
        runs.to_csv(site / "book" / "data" / f"{n}-runs.csv", index=False)
        _link_runs(site / "book" / f"{n}.ipynb", f"{n}-runs.csv", len(runs))


def jupyter_book(site: Path, out: Path) -> int:
    """``jupyter-book build`` with warnings as errors; the HTML lands in out/_build/html."""
    exe = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(site), "--path-output", str(out), "--all",
           "-W", "-n", "--keep-going"]
    return subprocess.run(cmd).returncode


def trains(pdir: Path, root: Path) -> bool:
    """Whether a notebook of this profile, allowed to train, would train: some run of one of its grids
    is missing from the store (or is being trained elsewhere)."""
    for params_file in grid_files(pdir):
        try:
            states = _study(params_file, root).status()["state"]
        except Exception:  # a bad params file: its notebook fails at once and says why
            continue
        if states.isin(TO_TRAIN).any():
            return True
    return False


def build_book(profile: str = "mini", train: bool = True, only: list[str] | None = None, build: bool = True,
               root: str | os.PathLike | None = None, cell_timeout: int | None = None,
               out: str | os.PathLike | None = None) -> int:
    """Execute the notebooks of a profile (``only``: some of them; ``auto``: each results page from the most
    faithful profile that holds it, see ``auto_params``) and build the HTML book of the checkout ``root``
    (default: the working directory).

    The HTML lands in ``<out>/_build/html`` (default ``out``: the checkout; the tests build the smoke book
    elsewhere, so that they never replace the book a reader built). ``cell_timeout`` is the limit in seconds
    per notebook cell (0: none). By default a build that
    trains nothing (``train`` False, or every run of the profile stored) gets DEFAULT_CELL_TIMEOUT,
    and one that trains gets no limit: a single cell trains a page's whole grid (minutes for smoke,
    hours for mini, days for paper), so any limit short enough to end a hang would stop real work.

    Returns 0 on success, 1 when a notebook or the HTML build failed (each failure is printed with
    the notebook and its error line), 2 on bad arguments or when ``root`` is not a kdnb checkout.
    """
    root = Path(root if root is not None else Path.cwd()).resolve()
    pdir = root / "params" / (FIDELITY[-1] if profile == AUTO else profile)
    problem = checkout_problem(root, build) or _arguments_problem(root, pdir, cell_timeout)
    if not problem:
        try:
            names = select(only)
        except ValueError as err:
            problem = str(err)
    if problem:
        _say(f"error: {problem}")
        return 2
    html = None
    if profile == AUTO:
        chosen = auto_params(root)
        for section, (source, seeds) in chosen.items():
            _say(f"{section}: profile {source}, seeds {seeds}")
        html = auto_banner(chosen, root)
    dirs = page_dirs(profile, root)
    if cell_timeout is None:
        cell_timeout = None if train and any(trains(d, root) for d in set(dirs.values())) else DEFAULT_CELL_TIMEOUT
    executed = root / "build" / "book" / profile
    failures = _execute_all(names, dirs, executed, train, root, cell_timeout, pass_dir=profile == AUTO)
    if failures:
        _say(f"{len(failures)} of {len(names)} notebooks failed; the book was not built:")
        for f in failures:
            _say(f"  {f}")
        return 1
    return _build_site(profile, executed, root, html, Path(out).resolve() if out is not None else root) if build else 0


def _arguments_problem(root: Path, pdir: Path, cell_timeout: int | None) -> str | None:
    if not pdir.is_dir():
        known = sorted(p.name for p in (root / "params").iterdir() if p.is_dir())
        return f"no params folder {pdir}; profiles: {', '.join([*known, AUTO])}"
    if cell_timeout is not None and not (isinstance(cell_timeout, int) and cell_timeout >= 0):
        return f"cell timeout {cell_timeout!r} must be a whole number of seconds >= 0 (0: no limit)"
    return None


def _execute_all(names: list[str], dirs: dict[str, Path], executed: Path, train: bool, root: Path,
                 cell_timeout: int | None, pass_dir: bool = False) -> list[str]:
    """Execute each notebook with its params file (``dirs``: the folder of each; ``pass_dir``: tell the
    notebook its folder, ``params_dir``, where it is not ``params/<profile>``); the failures, one line each."""
    limit = f"{cell_timeout} s per cell" if cell_timeout else "no time limit per cell"
    failures = []
    for name in names:
        params_file = dirs[name] / f"{NOTEBOOKS[name]}.yaml"
        if not params_file.is_file():
            failures.append(f"book/{name}.ipynb: no params file {params_file}")
            continue
        t0 = time.perf_counter()
        _say(f"executing book/{name}.ipynb with {params_file.relative_to(root)} (train={train}, {limit})")
        err = execute(name, params_file, executed, train, root, cell_timeout,
                      params_dir=dirs[name].relative_to(root) if pass_dir and name != SUMMARY_PAGE else None)
        if err:
            failures.append(err)
            _say(f"FAILED {err}")
        else:
            _say(f"executed book/{name}.ipynb in {time.perf_counter() - t0:.0f} s -> {executed / name}.ipynb")
    return failures


def _build_site(profile: str, executed: Path, root: Path, html: str | None, out: Path) -> int:
    """Assemble the executed notebooks with the book's pages (``html``: their banner) and run Jupyter Book,
    whose HTML lands in ``out/_build/html``."""
    try:
        assemble(profile, executed, root / "build" / "site", root, html)
    except FileNotFoundError as err:
        _say(f"error: {err}")
        return 1
    t0 = time.perf_counter()
    rc = jupyter_book(root / "build" / "site", out)
    if rc:
        _say(f"jupyter-book build failed (exit {rc}); see the warnings above")
        return 1
    _say(f"built the {profile} book in {time.perf_counter() - t0:.0f} s: {out / '_build' / 'html' / 'index.html'}")
    return 0
