"""The device plan: paper-protocol runs of the ResNet-8 column on a lent GPU, within the device machine's limits.

Limits (README § On a GPU or a cluster): 15 minutes of device time per session, the machine's start included;
10 minutes per command; 30 s warm between calls; 64 MiB carried per call; back from ``$OUT`` at most 8 files of
16 MiB, at most 2 folders down; no network. One command per call, back to back on the warm machine::

    call  command                                     carry                                       timeout_s
    1     python3 -m benchmarks.device_plan 1         .gpu/manifest.json .gpu/cifar10.npz.1        60
    2     python3 -m benchmarks.device_plan 2         .gpu/cifar10.npz.2                           60
    3     python3 -m benchmarks.device_plan 3         .gpu/cifar10.npz.3                           60
    4     python3 -m benchmarks.device_plan 4         .gpu/cifar10.npz.4                           580
    5     python3 -m benchmarks.device_plan bench     (nothing; only with 4 minutes left)           240

Calls 1-3 check the imports and park their part of ``cifar10.npz`` (``benchmarks/datachunks.py``) in the
ignored ``.gpu/``, which stays on a warm machine. Call 4 joins the parts, then trains within ``BUDGET_S``:
``WORKERS`` processes share the grid below through the store's run locks, each taking the first run nobody
holds, in order of value: the teacher-free ResNet-8 cells (baseline, ONE, DML, seeds 0-4; finished ones are
skipped), then the ResNet-26 teachers (seeds 100-104), then the Hinton students (once every teacher seed is
done, as the study chooses the best; the first of them makes the teacher-logit table, 324 MB in the work store's
``logits/``, which is never packed, while the others wait for it). Every run checkpoints after each epoch; at the
deadline the workers are stopped (each loses at most the epoch under way), and the store's new and changed
``runs/`` and ``stages/`` files are packed into ``$OUT/paper.tar.gz`` (more volumes ``paper-2.tar.gz`` ... if over
``VOLUME_BYTES``), with ``$OUT/summary.json`` (each run's state, epoch times, the code) and ``$OUT/plan.log``.
Back on the host::

    python -m benchmarks.device_plan unpack <files_at> results/paper     # then commit results/paper

and the next loan resumes every unfinished run from its checkpoint (on any device: the data stream is drawn on
the CPU). Call 5 times the training step (``kdnb bench``, ResNet-8 <- ResNet-26, ``BENCH_VARIANTS``) into
``$OUT/bench.json``.
``--dry`` runs the same plan on the CPU (tests/test_gpu_script.py). A missing import stops with one line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEVICE_S = 900  # device time of one session, all calls and the machine's start together
START_S = 120  # a machine's start (about a minute or two) and the transfers
COMMAND_S = 600  # one command's limit
BUDGET_S = 520  # what the training call plans for: under the command's limit with room for start-up and a slow stop
STOP_S = 15  # from SIGTERM to the workers' exit (SIGKILL after)
PACK_S = 30  # packing the store and writing the summary
CALLS = {"1": 60, "2": 60, "3": 60, "4": 580}  # each call's timeout_s; then bench only with what is left
TRAIN_CALL = max(CALLS)  # the last: it carries the last part, joins them all and trains
BENCH_S = 240
# the paper configuration (fp32, channels_last) eager, with the teacher-logit cache, and with the cache and CUDA
# graphs (every set-up runs before the first timed round: the cache's table is made once, two captures cost too much)
BENCH_VARIANTS = ("conventional", "kdnb_cl", "kdnb_cl_cache", "kdnb_cl_cache_compile_ro", "kdnb_bf16_cl", "fused10")
WORKERS = 6  # processes on one GPU: a ResNet-8 step is launch-bound, several processes keep the GPU busy
VOLUME_BYTES = 15 * 2**20  # under the 16 MiB a returned file may have
MAX_FILES, MAX_DEPTH = 8, 2
STUDENT, METHODS = "resnet8", ["baseline", "one", "dml", "hinton"]
log = logging.getLogger("kdnb")


def say(out: Path | None, msg: str) -> None:
    """One line to stdout (the call's output) and to ``$OUT/plan.log``."""
    line = f"[{time.strftime('%H:%M:%S')}] {msg}"
    print(line, flush=True)
    if out is not None:
        with open(out / "plan.log", "a") as f:
            f.write(line + "\n")


def check_imports(device: str) -> str | None:
    """None, or the one line that says which import is missing (nothing can be installed: no network)."""
    try:
        import numpy  # noqa: F401
        import pandas  # noqa: F401
        import torch
        import yaml  # noqa: F401

        import kdnb.study  # noqa: F401
        import kdnb.train  # noqa: F401
    except ImportError as err:
        return f"stop: cannot import {err.name or err} ({err}); nothing can be installed there: carry wheels"
    if device == "cuda" and not torch.cuda.is_available():
        return f"stop: torch {torch.__version__} sees no CUDA device"
    return None


def deadline(start: float, budget: float = BUDGET_S) -> float:
    """When the workers are told to stop: what is left after it covers their stop and the packing."""
    return start + budget - STOP_S - PACK_S


# ---------------------------------------------------------------------------------------------------------------
# The grid and its order


def grid_params(params: str | os.PathLike, store: Path, device: str, data_root: str) -> Any:
    from kdnb.study import load_params

    p = load_params(params)
    methods = [m for m in METHODS if m in p.methods]
    return dataclasses.replace(p, students=[STUDENT], methods=methods, store=str(store), device=device,
                               data_root=data_root, noise=p.noise[:1], imbalance=p.imbalance[:1])


def ordered(p: Any) -> list[tuple[str, Any]]:
    """(label, config) by value: teacher-free students, then teachers, then the students that need them."""
    from kdnb.methods import METHODS as ALL
    from kdnb.study import Study

    cond = Study(p).conditions[0]
    free = [c for c in cond.students if not ALL[c.method].uses_teacher]
    taught = [c for c in cond.students if ALL[c.method].uses_teacher]
    teachers = [c for cs in cond.teachers.values() for c in cs]
    return [(f"{c.method}/{c.student} seed {c.seed}", c) for c in free + teachers + taught]


def work(p: Any, max_epochs: int | None) -> None:
    """One worker: one pass over the order, training each run that nobody else holds."""
    from kdnb.study import Study
    from kdnb.train import train_run

    study = Study(p)
    cond = study.conditions[0]
    for label, cfg in ordered(p):
        resolved = study.resolved(cond, cfg)
        if resolved is None:
            log.info("plan: %s waits for every teacher seed", label)
            continue
        if (rec := study.store.read_or_none(resolved.run_id)) and rec["status"] in ("done", "failed"):
            continue
        rec = train_run(resolved, study.store, p.device, progress=False, data_root=p.data_root,
                        max_epochs=max_epochs)
        if rec["status"] != "locked":
            log.info("plan: %s %s", label, rec["status"])


# ---------------------------------------------------------------------------------------------------------------
# The store: in from the tree, out packed


def seed_store(committed: Path, store: Path) -> None:
    """The committed store's runs the work store lacks (a warm machine keeps the work store between calls)."""
    for run in sorted(committed.glob("runs/*")):
        if not (store / "runs" / run.name).exists():
            shutil.copytree(run, store / "runs" / run.name, ignore=shutil.ignore_patterns("lock", "*.tmp"))


def changed(committed: Path, store: Path) -> list[str]:
    """Files of the work store that the committed store lacks or holds otherwise (paths relative to the store)."""
    out = []
    for path in sorted(store.rglob("*")):
        rel = path.relative_to(store)
        if not path.is_file() or rel.parts[0] not in ("runs", "stages") or path.name == "lock" \
                or path.name.endswith(".tmp"):
            continue
        old = committed / rel
        if not old.is_file() or old.read_bytes() != path.read_bytes():
            out.append(str(rel))
    return out


def pack(store: Path, files: list[str], out: Path, volume_bytes: int = VOLUME_BYTES) -> list[str]:
    """``files`` in gzipped tar volumes of at most ``volume_bytes``, a run's files kept together; their names."""
    groups: dict[str, list[str]] = {}
    for f in files:
        groups.setdefault("/".join(Path(f).parts[:2]), []).append(f)
    volumes: list[list[str]] = [[]]
    size = 0
    for members in groups.values():
        n = sum((store / f).stat().st_size for f in members)
        if volumes[-1] and size + n > volume_bytes:  # weights hardly compress: sizes before gzip
            volumes.append([])
            size = 0
        volumes[-1] += members
        size += n
    names = []
    for i, members in enumerate(v for v in volumes if v):
        name = "paper.tar.gz" if i == 0 else f"paper-{i + 1}.tar.gz"
        with tarfile.open(out / name, "w:gz") as tar:
            for f in members:
                tar.add(store / f, arcname=f)
        names.append(name)
    return names


def unpack(folder: str | os.PathLike, store: str | os.PathLike) -> list[str]:
    """Extract every ``paper*.tar.gz`` of ``folder`` into ``store``; a run finished there loses its old checkpoint
    (a tar cannot delete it). Returns the run ids written."""
    store = Path(store)
    ids = set()
    for vol in sorted(Path(folder).glob("paper*.tar.gz")):
        with tarfile.open(vol) as tar:
            for m in tar.getmembers():
                parts = Path(m.name).parts
                if m.isdir() or not m.isfile() or m.name.startswith("/") or ".." in parts or \
                        parts[0] not in ("runs", "stages"):
                    raise ValueError(f"{vol}: unexpected member {m.name!r}")
                ids.update(parts[1:2] if parts[0] == "runs" else [])
            tar.extractall(store, filter="data")
    for run_id in ids:
        if (store / "runs" / run_id / "record.json").is_file():
            rec = json.loads((store / "runs" / run_id / "record.json").read_text())
            if rec.get("status") in ("done", "failed"):
                (store / "runs" / run_id / "checkpoint.pt").unlink(missing_ok=True)
    return sorted(ids)


def summary(p: Any) -> list[dict[str, Any]]:
    """Each run of the order: its state, epochs, and the median epoch time of its last segment (this call's)."""
    from kdnb.store import safe_torch_load
    from kdnb.study import Study

    study = Study(p)
    rows = []
    for label, cfg in ordered(p):
        resolved = study.resolved(study.conditions[0], cfg)
        row: dict[str, Any] = {"run": label, "run_id": resolved and resolved.run_id, "state": "waiting"}
        if resolved is not None:
            rec = study.store.read_or_none(resolved.run_id)
            ck = study.store.checkpoint_path(resolved.run_id)
            src = rec or (safe_torch_load(ck) if ck.is_file() else None)
            row["state"] = rec["status"] if rec else "partial" if src else "missing"
            if src:
                seg, times = src["segments"][-1], [h["epoch_s"] for h in src["history"] if "epoch_s" in h]
                n = seg["to_epoch"] - seg["from_epoch"] if seg["to_stage"] == seg["from_stage"] else 0
                row.update(epoch=src["history"][-1].get("epoch", 0) if src["history"] else 0, of=cfg.epochs,
                           device=seg["device"], code=seg["code_version"], epochs_now=max(n, 0),
                           epoch_s=statistics.median(times[-n:]) if n > 0 and times else None,
                           final_acc=rec.get("final_acc") if rec else None)
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------------------------
# The calls


def call_part(args: argparse.Namespace, out: Path, index: int) -> int:
    from benchmarks import datachunks

    absent = datachunks.check(args.chunks, [index])
    if absent:
        say(out, f"stop: {absent[0]} not carried (carry it in this call)")
        return 2
    m = datachunks.manifest(args.chunks)
    say(out, f"part {index} of {len(m['parts'])} of {m['name']} checked; next: call {index + 1}")
    return 0


def call_train(args: argparse.Namespace, out: Path, start: float) -> int:
    from benchmarks import datachunks
    from kdnb import store as store_mod

    work = Path(args.work)
    m = datachunks.manifest(args.chunks)
    os.environ.setdefault("KDNB_SOURCE_STATE", m.get("source_state") or "")
    os.environ.setdefault("KDNB_CACHE", str(work / "cache"))
    data = datachunks.join(args.chunks, work / "data")
    say(out, f"{data.name} joined and checked ({m['sha256'][:12]}); code {store_mod.code_version()}")
    from kdnb.data import load_arrays

    load_arrays(data.stem, data.parent, download=False)  # decoded once, before the workers read the cache
    store = work / "paper"
    committed = Path(args.committed)
    seed_store(committed, store)
    p = grid_params(args.params, store, args.device, str(data.parent))
    order = ordered(p)
    say(out, "order: " + "; ".join(label for label, _ in order))
    stop_at = deadline(start, args.budget)
    (work / "logs").mkdir(parents=True, exist_ok=True)
    procs = []
    for i in range(args.workers):
        cmd = [sys.executable, "-m", "benchmarks.device_plan", "worker", "--params", args.params, "--work", args.work,
               "--device", args.device, "--data", str(data.parent)] + \
              (["--max-epochs", str(args.max_epochs)] if args.max_epochs else [])
        with open(work / "logs" / f"worker-{i}.log", "w") as logf:
            procs.append(subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=os.environ.copy(),
                                          cwd=ROOT))
    say(out, f"{args.workers} workers on {args.device} until {stop_at - start:.0f} s")
    stopped = _wait(procs, stop_at)
    say(out, f"workers {'stopped at the deadline' if stopped else 'done'} at {time.monotonic() - start:.0f} s")
    for f in sorted((work / "logs").glob("worker-*.log")):
        with open(out / "plan.log", "a") as dst:
            dst.write(f"--- {f.name}\n" + f.read_text()[-2_000_000:])
    files = changed(committed, store)
    volumes = pack(store, files, out)
    rows = summary(p)
    (out / "summary.json").write_text(json.dumps({
        "device": args.device, "workers": args.workers, "budget_s": args.budget, "wall_s": time.monotonic() - start,
        "stopped_at_deadline": stopped, "code": store_mod.code_version(), "data_sha256": m["sha256"],
        "volumes": volumes, "files": len(files), "runs": rows}, indent=1))
    say(out, f"{len(files)} files in {', '.join(volumes) or 'no volume'}; "
             + "; ".join(f"{r['run']}: {r['state']}" for r in rows if r["state"] != "missing"))
    return 0


def _wait(procs: list[subprocess.Popen], stop_at: float) -> bool:
    """Wait for the workers until ``stop_at``; then SIGTERM, and SIGKILL after ``STOP_S``. Whether they were stopped."""
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, stop_at - time.monotonic()))
        except subprocess.TimeoutExpired:
            break
    else:
        return False
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    end = time.monotonic() + STOP_S
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return True


def call_bench(args: argparse.Namespace, out: Path) -> int:
    data = Path(args.work) / "data"
    env = dict(os.environ, **({"KDNB_DATA": str(data)} if (data / "cifar10.npz").is_file() else {}))
    cmd = [sys.executable, "-m", "kdnb.bench", "--json", "--device", args.device, "--pairs", "resnet8:resnet26",
           "--variants", *BENCH_VARIANTS, "--out", str(out / "bench.json"),
           *(args.bench_args.split() if args.bench_args else [])]
    try:
        proc = subprocess.run(cmd, env=env, cwd=ROOT, timeout=args.budget - 10, capture_output=True, text=True)
        say(out, f"bench exit {proc.returncode}: " + proc.stderr.strip()[-2000:])
    except subprocess.TimeoutExpired:
        say(out, "bench stopped at its limit; bench.json holds the rounds measured")
    return 0


def main(argv: list[str] | None = None) -> int:
    start = time.monotonic()
    ap = argparse.ArgumentParser(prog="python -m benchmarks.device_plan", description=__doc__.split("\n\n")[0])
    ap.add_argument("call", choices=[*CALLS, "bench", "worker", "unpack"])
    ap.add_argument("dirs", nargs="*", help="unpack: FOLDER STORE")
    ap.add_argument("--out", default=os.environ.get("OUT", "gpu-out"))
    ap.add_argument("--chunks", default=str(ROOT / ".gpu"))
    ap.add_argument("--work", default=str(ROOT / ".gpu" / "work"))
    ap.add_argument("--params", default=str(ROOT / "params" / "paper" / "generalization.yaml"))
    ap.add_argument("--committed", default=str(ROOT / "results" / "paper"))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--workers", type=int, default=WORKERS)
    ap.add_argument("--budget", type=float, help=f"seconds (call {TRAIN_CALL}: {BUDGET_S}, bench: {BENCH_S})")
    ap.add_argument("--max-epochs", type=int, help="epochs per run and worker pass (dry runs)")
    ap.add_argument("--data", help="worker: the joined data folder")
    ap.add_argument("--bench-args", help="more options of kdnb bench")
    ap.add_argument("--dry", action="store_true", help="on the CPU: device cpu, one worker")
    a = ap.parse_args(argv)
    if a.dry:
        a.device, a.workers = "cpu", 1
    a.budget = a.budget or (BENCH_S if a.call == "bench" else BUDGET_S)
    if a.budget > BUDGET_S and a.call != "worker":
        print(f"device plan: error: --budget {a.budget:.0f} over {BUDGET_S} s", file=sys.stderr)
        return 2
    if a.call == "unpack":
        if len(a.dirs) != 2:
            print("device plan: error: unpack takes FOLDER STORE", file=sys.stderr)
            return 2
        print(f"{len(unpack(*a.dirs))} runs unpacked into {a.dirs[1]}")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    if a.call == "worker":
        work(grid_params(a.params, Path(a.work) / "paper", a.device, a.data), a.max_epochs)
        return 0
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if stop := check_imports(a.device):
        say(out, stop)
        return 3
    try:
        if a.call in CALLS and a.call != TRAIN_CALL:
            return call_part(a, out, int(a.call))
        return call_train(a, out, start) if a.call == TRAIN_CALL else call_bench(a, out)
    except Exception as err:  # one line for the call's output; the traceback in the log
        say(out, f"stop: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")
        import traceback

        with open(out / "plan.log", "a") as f:
            traceback.print_exc(file=f)
        return 1


if __name__ == "__main__":
    sys.exit(main())
