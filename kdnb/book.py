"""Build the book: execute the result notebooks with papermill, then build the HTML with Jupyter Book.

Notebooks in git have no outputs; the executed copies are build products:

    build/book/<profile>/<name>.ipynb  the executed notebooks (a copy is replaced only when its run succeeded)
    build/site/                        the book's sources as they are in the repository (_config.yml, _toc.yml,
                                       book/*.md, book/_static) with the executed notebooks in book/
    _build/html/                       the HTML: ``jupyter-book build build/site --path-output . -W -n --keep-going``

Outside the paper profile every page gets a banner saying which profile built it.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from kdnb.pages import banner

ROOT = Path(__file__).resolve().parent.parent
# notebook (book/<name>.ipynb) -> section (params/<profile>/<section>.yaml), in the book's order
NOTEBOOKS = {"00-teachers": "teachers", "01-generalization": "generalization", "02-label-noise": "label_noise",
             "03-imbalance": "imbalance", "04-transferability": "transferability"}


def _say(msg: str) -> None:
    print(f"kdnb book: {msg}", file=sys.stderr, flush=True)


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


def execute(name: str, params_file: Path, out_dir: Path, train: bool, root: Path = ROOT) -> str | None:
    """Run book/<name>.ipynb with the params file (plus ``train``) into out_dir/<name>.ipynb.

    The notebook is written to a temporary file and moved into place only when it ran without error,
    so a failed run never replaces the last good page. Returns None, or the error in one line.
    """
    import papermill as pm

    logging.getLogger("papermill").setLevel(logging.WARNING)  # one line per notebook is ours to print
    params = yaml.safe_load(params_file.read_text()) or {}
    params["train"] = train
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{name}.", suffix=".ipynb")
    os.close(fd)
    src = root / "book" / f"{name}.ipynb"
    try:
        pm.execute_notebook(str(src), tmp, parameters=params, kernel_name="python3", cwd=str(root),
                            progress_bar=False, log_output=False)
    except pm.PapermillExecutionError as err:
        Path(tmp).unlink(missing_ok=True)
        return f"book/{name}.ipynb failed in cell {err.exec_count}: {err.ename}: {err.evalue}"
    except Exception as err:  # the kernel died, a bad parameter, ...
        Path(tmp).unlink(missing_ok=True)
        return f"book/{name}.ipynb failed: {type(err).__name__}: {err}"
    os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
    os.replace(tmp, out_dir / f"{name}.ipynb")
    return None


def _with_banner(text: str, html: str) -> str:
    """Markdown with the banner after its first heading."""
    lines = text.splitlines()
    at = next((i + 1 for i, line in enumerate(lines) if line.startswith("# ")), 0)
    return "\n".join([*lines[:at], "", html, "", *lines[at:]]) + "\n"


def assemble(profile: str, executed: Path, site: Path, root: Path = ROOT) -> None:
    """Copy the book's sources and the executed notebooks into ``site`` (same layout as the repository)."""
    missing = [n for n in NOTEBOOKS if not (executed / f"{n}.ipynb").is_file()]
    if missing:
        raise FileNotFoundError(f"no executed copy of {', '.join(missing)} in {executed}; run `kdnb book --profile "
                                f"{profile}` without --only first")
    if site.exists():
        shutil.rmtree(site)
    (site / "book").mkdir(parents=True)
    for f in ("_config.yml", "_toc.yml"):
        shutil.copy2(root / f, site / f)
    html = banner(profile)
    for md in (root / "book").glob("*.md"):
        text = md.read_text()
        (site / "book" / md.name).write_text(_with_banner(text, html) if html else text)
    shutil.copytree(root / "book" / "_static", site / "book" / "_static")
    for n in NOTEBOOKS:
        shutil.copy2(executed / f"{n}.ipynb", site / "book" / f"{n}.ipynb")


def jupyter_book(site: Path, out: Path) -> int:
    """``jupyter-book build`` with warnings as errors; the HTML lands in out/_build/html."""
    exe = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(exe) if exe.exists() else "jupyter-book", "build", str(site), "--path-output", str(out), "--all",
           "-W", "-n", "--keep-going"]
    return subprocess.run(cmd).returncode


def build_book(profile: str = "mini", train: bool = True, only: list[str] | None = None, build: bool = True,
               root: Path = ROOT) -> int:
    """Execute the notebooks of a profile (``only``: some of them) and build the HTML book.

    Returns 0 on success, 1 when a notebook or the HTML build failed (each failure is printed with
    the notebook and its error line), 2 on bad arguments.
    """
    pdir = root / "params" / profile
    if not pdir.is_dir():
        known = sorted(p.name for p in (root / "params").iterdir() if p.is_dir())
        _say(f"error: no params folder {pdir}; profiles: {', '.join(known)}")
        return 2
    try:
        names = select(only)
    except ValueError as err:
        _say(f"error: {err}")
        return 2
    executed = root / "build" / "book" / profile
    failures = []
    for name in names:
        params_file = pdir / f"{NOTEBOOKS[name]}.yaml"
        if not params_file.is_file():
            failures.append(f"book/{name}.ipynb: no params file {params_file}")
            continue
        t0 = time.perf_counter()
        _say(f"executing book/{name}.ipynb with {params_file.relative_to(root)} (train={train})")
        err = execute(name, params_file, executed, train, root)
        if err:
            failures.append(err)
            _say(f"FAILED {err}")
        else:
            _say(f"executed book/{name}.ipynb in {time.perf_counter() - t0:.0f} s -> {executed / name}.ipynb")
    if failures:
        _say(f"{len(failures)} of {len(names)} notebooks failed; the book was not built:")
        for f in failures:
            _say(f"  {f}")
        return 1
    if not build:
        return 0
    site = root / "build" / "site"
    try:
        assemble(profile, executed, site, root)
    except FileNotFoundError as err:
        _say(f"error: {err}")
        return 1
    t0 = time.perf_counter()
    rc = jupyter_book(site, root)
    if rc:
        _say(f"jupyter-book build failed (exit {rc}); see the warnings above")
        return 1
    _say(f"built the {profile} book in {time.perf_counter() - t0:.0f} s: {root / '_build' / 'html' / 'index.html'}")
    return 0
