"""The run store: one JSON record per run, keyed by a hash of its configuration.

Layout under a store directory::

    runs/<run_id>/record.json     config, history, accuracies, code version, environment (in git)
    runs/<run_id>/checkpoint.pt   the last epoch's training state, for resume (never in git)
    runs/<run_id>/model.pt        the deployed student's weights (never in git)

Every write goes to a temporary file in the same folder and is moved into place with
``os.replace``, so an interrupted write leaves the old file or none, never half a file. Records
carry a checksum of their content; a record that fails it is reported and treated as missing.
Weights are read with ``torch.load(weights_only=True)``: a store received from someone else cannot
run code on load.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import logging
import os
import platform
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import torch

log = logging.getLogger("kdnb")

COLUMNS = ["run_id", "dataset", "student", "teacher", "method", "seed", "noise", "imbalance", "epochs",
           "final_acc", "best_acc", "wall_s", "device", "code_version"]


class CorruptRecord(RuntimeError):
    """A record or checkpoint whose checksum or structure is wrong."""


def config_hash(config: dict[str, Any]) -> str:
    """A short, stable id for a configuration (sorted-key JSON, sha256)."""
    blob = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_torch_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def safe_torch_load(path: Path, map_location: Any = "cpu") -> Any:
    """Load tensors and plain containers only; anything else is refused."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise CorruptRecord(f"{path}: unreadable or not a weights-only file ({type(err).__name__})") from None


def _checksum(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


# Sources whose uncommitted changes make a record untraceable unless the change itself is recorded.
TRACKED_SOURCES = ("kdnb", "params")
DIFF_KEPT_BYTES = 64_000  # a diff up to this size is stored in the record itself


def _git(top: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(top), *args], capture_output=True, text=True, timeout=10, check=True).stdout


@functools.cache
def source_state() -> dict[str, Any]:
    """The code a process runs: commit, and the uncommitted diff of kdnb/ and params/ with its hash.

    Read once per process (the code it imported at its start), so a run records the code that
    trained it even if the tree is edited while it runs. Untracked files under kdnb/ and params/
    count as part of the diff. Without ``.git`` (a device machine), the host's ``KDNB_SOURCE_STATE`` names it.
    """
    from kdnb import __version__

    top = Path(__file__).resolve().parent.parent
    try:
        sha = _git(top, "rev-parse", "--short=12", "HEAD").strip()
        diff = _git(top, "diff", "HEAD", "--", *TRACKED_SOURCES)
        for name in _git(top, "ls-files", "--others", "--exclude-standard", "--", *TRACKED_SOURCES).split():
            diff += f"\n--- untracked {name}\n" + (top / name).read_text(errors="replace")
    except (OSError, subprocess.SubprocessError):
        m = re.fullmatch(r"([0-9a-f]{7,40})(?::([0-9a-f]{64}))?", passed := os.environ.get("KDNB_SOURCE_STATE", ""))
        if passed and not m:
            raise ValueError(f"KDNB_SOURCE_STATE={passed!r}: not '<commit>[:<sha256>]' in hex") from None
        return {"version": __version__, "commit": m and m[1], "diff_sha256": m and m[2], "diff": None}
    digest = hashlib.sha256(diff.encode()).hexdigest() if diff else None
    return {"version": __version__, "commit": sha, "diff_sha256": digest,
            "diff": diff if diff and len(diff.encode()) <= DIFF_KEPT_BYTES else None}


def code_version() -> str:
    """'<version>+<commit>', with '.dirty-<12 hex of the diff's sha256>' from an uncommitted tree."""
    st = source_state()
    if not st["commit"]:
        return st["version"]
    dirty = f".dirty-{st['diff_sha256'][:12]}" if st["diff_sha256"] else ""
    return f"{st['version']}+{st['commit']}{dirty}"


def cpu_name() -> str:
    """The CPU model as the kernel names it (e.g. 'AMD EPYC'), or the machine type."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def native_bf16() -> bool:
    """Whether the CPU computes bf16 natively (AMX or AVX-512 BF16); without it bf16 is emulated, slowly."""
    try:
        flags = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
    except OSError:
        return False
    return any(f in flags.split() for f in ("amx_bf16", "avx512_bf16"))


def environment(device: torch.device) -> dict[str, Any]:
    import numpy

    env = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
           "platform": platform.platform(), "processor": platform.machine(), "cpu": cpu_name(),
           "native_bf16": native_bf16(), "threads": str(torch.get_num_threads())}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = str(torch.version.cuda)
    return env


class Store:
    """A folder of run records."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def run_dir(self, run_id: str) -> Path:
        if not run_id or any(c not in "0123456789abcdef" for c in run_id):
            raise ValueError(f"bad run id {run_id!r}")  # ids are hex: they cannot escape the store
        return self.root / "runs" / run_id

    def record_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "record.json"

    def checkpoint_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "checkpoint.pt"

    def model_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "model.pt"

    def stage_path(self, key: str) -> Path:
        return self.root / "stages" / f"{key}.pt"

    def write(self, record: dict[str, Any]) -> None:
        record = dict(record)
        record["checksum"] = _checksum(record)
        data = json.dumps(record, indent=1, sort_keys=True, default=str).encode()
        atomic_write_bytes(self.record_path(record["run_id"]), data)

    def read(self, run_id: str) -> dict[str, Any] | None:
        """The record, or None if absent. A corrupt record raises CorruptRecord."""
        path = self.record_path(run_id)
        if not path.exists():
            return None
        try:
            record = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise CorruptRecord(f"{path}: not valid JSON") from None
        if not isinstance(record, dict) or record.get("checksum") != _checksum(record):
            raise CorruptRecord(f"{path}: checksum mismatch")
        return record

    def done(self, run_id: str) -> dict[str, Any] | None:
        """The record if the run finished (status 'done'), else None; corrupt counts as missing."""
        rec = self.read_or_none(run_id)
        return rec if rec and rec.get("status") == "done" else None

    def read_or_none(self, run_id: str) -> dict[str, Any] | None:
        """The record; a corrupt one is reported and counts as absent (the run is redone)."""
        try:
            return self.read(run_id)
        except CorruptRecord as err:
            log.warning("%s; the run will be redone", err)
            return None

    @contextlib.contextmanager
    def lock(self, run_id: str) -> Iterator[bool]:
        """Hold the run's lock if no other process holds it; yields whether it was acquired.

        An flock is released by the kernel when its process dies, even by SIGKILL, so a crashed
        worker never leaves a stale lock behind.
        """
        path = self.run_dir(run_id) / "lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {platform.node()}\n".encode())
            yield True
        finally:
            os.close(fd)

    def locked(self, run_id: str) -> bool:
        """Whether a live process holds the run's lock."""
        path = self.run_dir(run_id) / "lock"
        if not path.exists():
            return False
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    def records(self) -> Iterator[dict[str, Any]]:
        for path in sorted((self.root / "runs").glob("*/record.json")):
            rec = self.read_or_none(path.parent.name)
            if rec is not None:
                yield rec


def _row(rec: dict[str, Any]) -> dict[str, Any]:
    cfg, data = rec.get("config", {}), rec.get("config", {}).get("data", {})
    return {
        "run_id": rec["run_id"], "dataset": data.get("dataset"), "student": cfg.get("student"),
        "teacher": cfg.get("teacher"), "method": cfg.get("method"), "seed": cfg.get("seed"),
        "noise": data.get("noise", 0.0), "imbalance": data.get("imbalance"), "epochs": cfg.get("epochs"),
        "final_acc": rec.get("final_acc"), "best_acc": rec.get("best_acc"), "best_epoch": rec.get("best_epoch"),
        "wall_s": rec.get("wall_s"), "device": rec.get("device"), "cpu": rec.get("environment", {}).get("cpu"),
        "precision": cfg.get("precision"), "code_version": rec.get("code_version"),
        "status": rec.get("status"), "kind": rec.get("kind", "run"), "teacher_run": cfg.get("teacher_run"),
        "train_per_class": data.get("train_per_class"), "test_per_class": data.get("test_per_class"),
        # an imbalanced set's largest and smallest class (protocol § Class imbalance); None when balanced
        **{k: data.get(k) if data.get("imbalance") is not None else None
           for k in ("imbalance_n_max", "imbalance_n_min")},
        "error": rec.get("error"), "class_acc": rec.get("class_acc"),  # per-class test accuracy (%), newer records
    }


def load(path: str | os.PathLike) -> pd.DataFrame:
    """One row per run record in the store at ``path`` (columns: COLUMNS and a few more)."""
    df = pd.DataFrame([_row(r) for r in Store(path).records() if r.get("kind", "run") == "run"])
    return pd.DataFrame(columns=[*COLUMNS, "status", "kind"]) if df.empty else df


def history(path: str | os.PathLike) -> pd.DataFrame:
    """Per-epoch history of every run (long format: run_id, method, seed, epoch, metric columns)."""
    rows = []
    for rec in Store(path).records():
        cfg = rec.get("config", {})
        for h in rec.get("history", []):
            rows.append({"run_id": rec["run_id"], "method": cfg.get("method"), "student": cfg.get("student"),
                         "seed": cfg.get("seed"), "noise": cfg.get("data", {}).get("noise", 0.0),
                         "imbalance": cfg.get("data", {}).get("imbalance"), **h})
    return pd.DataFrame(rows)
