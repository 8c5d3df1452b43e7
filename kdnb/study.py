"""Studies: expand a params file into a grid of runs, train what the store lacks, read it back.

One params file serves the notebook (papermill injects its keys as variables) and the command
line (``kdnb study params/<profile>/<section>.yaml``). Teachers are baseline runs of the teacher
architecture on the same data; they are trained first, and each student uses the teacher seed
with the highest final test accuracy (paper §III; book/protocol.md § Teachers).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from kdnb import NUMERICS_REVISION
from kdnb import store as store_mod
from kdnb.config import ConfigError, RunConfig
from kdnb.data import DataSpec
from kdnb.methods import METHODS, load_plugin

log = logging.getLogger("kdnb")

# Teacher of each student family (paper §III): ResNet-26 for ResNets, WRN-40-2 for WRNs.
DEFAULT_TEACHERS = {"resnet": "resnet26", "wrn": "wrn40_2"}
EXECUTORS = ("local", "slurm")
Reader = Callable[[str], "dict[str, Any] | None"]  # run id -> its record, or None


def duration(seconds: float) -> str:
    """``45 s``, ``12 min`` or ``3.1 h`` (empty for NaN or None)."""
    if seconds is None or pd.isna(seconds):
        return ""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 else \
        f"{seconds / 3600:.1f} h"


def check_bf16(precision: str, device: str | None, allow_emulated: bool = False) -> None:
    """Refuse bf16 on a CPU that lacks native bf16 (no AMX or AVX-512 BF16) unless allowed.

    There autocast emulates bf16: `kdnb bench` on an AMD EPYC (AVX2) measured bf16 at 0.15x and
    0.12x of the conventional fp32 loop, against 1.46x and 1.29x for kdnb in fp32: about 10x slower.
    """
    from kdnb.store import cpu_name, native_bf16
    from kdnb.train import parse_device

    if precision != "bf16" or parse_device(device).type != "cpu" or native_bf16():
        return
    msg = (f"precision bf16 on this CPU ({cpu_name()}, no native bf16) runs about 10x slower than fp32 "
           f"(kdnb bench); use precision fp32 (another run id) or allow it with --allow-emulated-bf16")
    if not allow_emulated:
        raise ConfigError(msg)
    log.warning("%s: allowed", msg.split(";")[0])


class MissingRuns(RuntimeError):
    """Runs the grid needs that the store lacks, when training is not allowed."""


class TeacherFailed(RuntimeError):
    """Every seed of a teacher failed, so its students cannot run."""


@dataclass
class Params:
    """The keys of a params file (and of every notebook's parameters cell)."""

    profile: str = "smoke"
    section: str = "generalization"
    store: str = "store"
    dataset: str = "cifar10"
    train_per_class: int | None = None
    test_per_class: int | None = None
    students: list[str] = field(default_factory=lambda: ["resnet8"])
    teachers: dict[str, str] = field(default_factory=dict)  # student -> teacher; default by family
    methods: list[str] = field(default_factory=lambda: ["baseline", "hinton"])
    seeds: list[int] = field(default_factory=lambda: [0])
    teacher_seeds: list[int] = field(default_factory=lambda: [0])
    epochs: int = 200
    teacher_epochs: int | None = None  # default: epochs
    noise: list[float] = field(default_factory=lambda: [0.0])
    imbalance: list[float | None] = field(default_factory=lambda: [None])
    imbalance_n_max: int = 5000
    imbalance_n_min: int = 250
    batch_size: int = 128
    precision: str = "fp32"
    method_args: dict[str, dict[str, Any]] = field(default_factory=dict)
    device: str = "auto"
    data_root: str | None = None
    transfer: dict[str, Any] = field(default_factory=dict)  # transferability settings (section 04)
    executor: str = "local"  # local: processes on this machine; slurm: a job array through submitit
    workers: int = 1  # processes (local: spread over the visible GPUs) or array tasks (slurm)
    slurm: dict[str, Any] = field(default_factory=dict)  # submitit parameters, e.g. slurm_partition, timeout_min
    plugins: list[str] = field(default_factory=list)  # files of users' methods, relative to the working directory

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Params:
        if not isinstance(d, dict):
            raise ConfigError(f"a params file must be a YAML mapping, got {type(d).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        if bad := sorted(set(d) - set(names)):
            raise ConfigError(f"unknown params key {bad[0]!r}; valid: {', '.join(names)}")
        p = cls(**d)
        for k in ("students", "methods", "seeds", "teacher_seeds", "noise", "imbalance"):
            v = getattr(p, k)
            if not isinstance(v, list):
                v = [v]
                setattr(p, k, v)
            if not v:
                raise ConfigError(f"params key {k!r} must not be an empty list")
        p.plugins = [p.plugins] if isinstance(p.plugins, str) else list(p.plugins or [])
        for path in p.plugins:  # before the methods are checked: they register theirs (book/add-method.md)
            load_plugin(path)
        for m in p.methods:
            if m not in METHODS:
                raise ConfigError(f"unknown method {m!r}; valid: {', '.join(METHODS)}")
        if p.executor not in EXECUTORS:
            raise ConfigError(f"unknown executor {p.executor!r}; valid: {', '.join(EXECUTORS)}")
        if not isinstance(p.workers, int) or isinstance(p.workers, bool) or not 1 <= p.workers <= 10000:
            raise ConfigError(f"workers {p.workers!r} must be an integer in [1, 10000]")
        from kdnb.train import parse_device

        parse_device(p.device)  # its form; whether this machine has it is asked where it trains
        return p

    def teacher_of(self, student: str) -> str:
        if student in self.teachers:
            return self.teachers[student]
        family = "wrn" if student.startswith("wrn") else "resnet"
        suffix = "x4" if student.endswith("x4") else ""  # CIFAR-100 ResNets are width 4 (book/protocol.md § Models)
        return DEFAULT_TEACHERS[family] + (suffix if family == "resnet" else "")


def read_yaml(path: str | os.PathLike, what: str = "params file") -> dict[str, Any]:
    """The mapping in a YAML file; a missing file, malformed YAML or another value raises ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {str(path)!r} not found")
    try:
        d = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"malformed YAML in {path}{where}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{what} {path} must hold a YAML mapping")
    return d


def load_params(path: str | os.PathLike, **overrides: Any) -> Params:
    """Read a params YAML file (``read_yaml``), ``overrides`` that are not None replacing its keys."""
    d = read_yaml(path)
    d.update({k: v for k, v in overrides.items() if v is not None})
    return Params.from_dict(d)


@dataclass
class Condition:
    """One data condition of a grid (noise rate, imbalance ratio) with its runs."""

    data: DataSpec
    teachers: dict[str, list[RunConfig]]  # teacher architecture -> one config per teacher seed
    students: list[RunConfig]  # teacher_run left None until the teacher is chosen


class Study:
    """The grid of a params file over one store."""

    def __init__(self, params: Params):
        self.params = params
        self.store = store_mod.Store(params.store)
        # every config is built through RunConfig.from_dict (in _base), so the whole grid is validated here
        self.conditions = [self._condition(n, g) for n in params.noise for g in params.imbalance]
        self._check_seeds()

    def _check_seeds(self) -> None:
        """Refuse a student that would share its teacher's seed: same init, same batches, not independent.

        The teacher of architecture A at seed s is the baseline run of A at seed s; a student of
        architecture A at seed s would start from the teacher's own initial weights.
        """
        p = self.params
        shared = sorted(set(p.seeds) & set(p.teacher_seeds))
        for cond in self.conditions[:1]:
            clash = sorted({c.student for c in cond.students} & set(cond.teachers))
            if clash and shared:
                raise ConfigError(f"student {clash[0]} seed {shared[0]} would share its teacher's seed "
                                  f"(teacher_seeds {p.teacher_seeds}, seeds {p.seeds}); use disjoint seeds, "
                                  f"e.g. teacher_seeds: [100, 101, ...]")

    def _base(self, data: DataSpec, **kw: Any) -> RunConfig:
        p = self.params
        return RunConfig.from_dict({"data": dataclasses.asdict(data), "batch_size": p.batch_size,
                                    "precision": p.precision, **kw})

    def _condition(self, noise: float, gamma: float | None) -> Condition:
        p = self.params
        data = DataSpec(dataset=p.dataset, train_per_class=p.train_per_class, test_per_class=p.test_per_class,
                        noise=noise, imbalance=gamma, imbalance_n_max=p.imbalance_n_max,
                        imbalance_n_min=p.imbalance_n_min)
        teachers: dict[str, list[RunConfig]] = {}
        students = []
        for student in p.students:
            for method in p.methods:
                teacher = p.teacher_of(student) if METHODS[method].uses_teacher else None
                if teacher and teacher not in teachers:
                    teachers[teacher] = [self._base(data, method="baseline", student=teacher, seed=s,
                                                    epochs=p.teacher_epochs or p.epochs) for s in p.teacher_seeds]
                for seed in p.seeds:
                    students.append(self._base(data, method=method, student=student, teacher=teacher, seed=seed,
                                               epochs=p.epochs, method_args=p.method_args.get(method, {})))
        return Condition(data, teachers, students)

    # --- state ------------------------------------------------------------------------------
    def best_teacher(self, cond: Condition, teacher: str, read: Reader | None = None) -> str | None:
        """Run id of the finished teacher seed with the highest final accuracy: the one place where the
        teacher seed is chosen (each student's record keeps the choice as ``config.teacher_run``).

        None while any teacher seed is unfinished; raises TeacherFailed when every seed failed.
        ``read`` (run id -> record or None) replaces the store's reads within one pass over the grid.
        """
        read = read or self.store.read_or_none
        recs = [read(c.run_id) for c in cond.teachers[teacher]]
        if not all(r and r.get("status") in ("done", "failed") for r in recs):
            return None
        done = [r for r in recs if r["status"] == "done"]
        if not done:
            raise TeacherFailed(f"every seed of teacher {teacher} failed ({recs[0].get('error')})")
        return max(done, key=lambda r: r["final_acc"])["run_id"]

    def resolved(self, cond: Condition, cfg: RunConfig, read: Reader | None = None) -> RunConfig | None:
        """The student config with its teacher run filled in (None while the teacher is unfinished)."""
        if cfg.teacher is None:
            return cfg
        tid = self.best_teacher(cond, cfg.teacher, read)
        return cfg.replace(teacher_run=tid) if tid else None

    def status(self) -> pd.DataFrame:
        """One row per run of the grid: role, method, student, seed, noise, imbalance, state.

        States: done, stale (done under an older ``kdnb.NUMERICS_REVISION``), failed, running (a
        live process holds its lock), interrupted (a checkpoint and no lock: re-run to resume),
        missing, corrupt, waiting for teacher, teacher failed.
        """
        rows = []
        for cond in self.conditions:
            rows += [self._status_row("teacher", c, c) for cfgs in cond.teachers.values() for c in cfgs]
            for c in cond.students:
                try:
                    rows.append(self._status_row("student", c, self.resolved(cond, c)))
                except TeacherFailed:
                    rows.append(self._status_row("student", c, None, "teacher failed"))
        return pd.DataFrame(rows)

    def _status_row(self, role: str, cfg: RunConfig, resolved: RunConfig | None,
                    state: str = "waiting for teacher") -> dict[str, Any]:
        run_id = None
        if resolved is not None:
            run_id = resolved.run_id
            try:
                rec = self.store.read(run_id)
                state = rec["status"] if rec else "missing"
            except store_mod.CorruptRecord:
                state = "corrupt"
            if state == "done" and rec.get("numerics_revision", 1) != NUMERICS_REVISION:
                state = "stale"  # made by training code whose numerics have changed since
            if state not in ("done", "failed", "stale"):
                if self.store.locked(run_id):
                    state = "running"
                elif self.store.checkpoint_path(run_id).exists():
                    state = "interrupted"
        return {"role": role, "method": cfg.method, "student": cfg.student, "teacher": cfg.teacher,
                "seed": cfg.seed, "noise": cfg.data.noise, "imbalance": cfg.data.imbalance, "state": state,
                "run_id": run_id}

    def time_left(self, status: pd.DataFrame | None = None) -> dict[str, Any]:
        """An estimate of the training time the grid's runs still need (those not done, failed or waiting on a
        failed teacher), in seconds of one process: each run timed by the median ``wall_s`` of the grid's
        finished runs of the same role, method, student and data condition, else of the same role, method
        and student in any condition; on the machines that made those records, a run under way or interrupted
        counted whole. Returns ``seconds``, ``runs`` (timed) and ``untimed`` (no finished peer to time them by)."""
        st = self.status() if status is None else status
        st = st.assign(condition=[f"{n}/{g}" for n, g in zip(st["noise"], st["imbalance"], strict=True)])
        done = st[st["state"].isin(("done", "stale"))]
        wall = {r: (self.store.read_or_none(r) or {}).get("wall_s") for r in done["run_id"]}
        done = done.assign(wall_s=pd.to_numeric(done["run_id"].map(wall))).dropna(subset=["wall_s"])
        keys = (["role", "method", "student", "condition"], ["role", "method", "student"])
        medians = [done.groupby(k)["wall_s"].median().to_dict() for k in keys]
        todo = st[~st["state"].isin(("done", "stale", "failed", "teacher failed"))]
        seconds, timed = 0.0, 0
        for r in todo.to_dict("records"):
            s = next((m[tuple(r[c] for c in k)] for k, m in zip(keys, medians, strict=True)
                      if tuple(r[c] for c in k) in m), None)
            if s is not None:
                seconds, timed = seconds + s, timed + 1
        return {"seconds": seconds, "runs": timed, "untimed": len(todo) - timed}

    def missing(self) -> pd.DataFrame:
        st = self.status()
        return st[~st.state.isin(["done", "stale"])]

    # --- work -------------------------------------------------------------------------------
    def run(self, train: bool = True, progress: bool = True, retry_failed: bool = False,
            retrain_stale: bool = False, allow_emulated_bf16: bool = False, poll_s: float = 5.0) -> pd.DataFrame:
        """Train every missing run (teachers first, students seed by seed), then return the grid's results.

        Several processes may run the same study on one store (workers on a node, a Slurm array):
        each run is trained by whichever process takes its lock first; the others go on with other
        runs and wait only for runs that are still being trained elsewhere. Stale records are kept
        (and said so) unless ``retrain_stale``. bf16 on a CPU without native bf16 is refused unless
        ``allow_emulated_bf16`` (see ``check_bf16``).
        """
        stale = self.status().query("state == 'stale'")
        if len(stale):
            log.warning("%d records of this grid were made under an older numerics revision (now %d)%s", len(stale),
                        NUMERICS_REVISION, ": retraining them" if retrain_stale and train else
                        "; kept as they are (--retrain-stale retrains them)")
        if not train:
            missing = self.missing()
            if len(missing):
                listing = "; ".join(f"{r.role} {r.method}/{r.student} seed {r.seed} noise {r.noise} "
                                    f"imbalance {r.imbalance} ({r.state})" for r in missing.itertuples())
                raise MissingRuns(f"{len(missing)} runs missing from store {self.params.store}: {listing}")
            return self.results()
        from kdnb.train import train_run

        p = self.params
        status = self.status()
        n_missing = int((~status["state"].isin(("done", "stale"))).sum())
        if n_missing:
            check_bf16(p.precision, p.device, allow_emulated_bf16)
        left = self.time_left(status)
        log.info("study %s/%s: %d of %d runs to train%s", p.profile, p.section, n_missing, len(status),
                 f" (about {duration(left['seconds'])} of one process for the {left['runs']} timed by finished runs "
                 "of their method; kdnb study --status says how)" if left["runs"] else "")

        def locked(cfg: RunConfig) -> bool:  # trained here, or left to the process that holds its lock
            return train_run(cfg, self.store, p.device, progress, p.data_root, retry_failed=retry_failed,
                             retrain_stale=retrain_stale)["status"] == "locked"

        while True:
            busy = 0  # runs that another process is training, or that wait for its teacher
            for cond in self.conditions:
                busy += sum(locked(c) for cfgs in cond.teachers.values() for c in cfgs)
                for c in sorted(cond.students, key=lambda c: c.seed):  # seed-major: each seed a paired table
                    try:
                        r = self.resolved(cond, c)
                    except TeacherFailed as err:
                        log.error("skipping %s %s seed %d: %s", c.method, c.student, c.seed, err)
                        continue
                    if r is None:
                        busy += 1
                        continue
                    busy += locked(r)
            if not busy:
                return self.results()
            log.info("%d runs are being trained by other processes; waiting", busy)
            time.sleep(poll_s)

    def results(self) -> pd.DataFrame:
        """The grid's runs that have a record, one row each with the columns of ``kdnb.store.load``, ``role``
        (teacher or student), ``teaches`` (a teacher that its students learn from: ``best_teacher``) and the
        run's per-epoch ``history``. Each record of the grid is read once, and no other."""
        read = functools.cache(self.store.read_or_none)
        rows: list[tuple[str, str, bool]] = []  # run id, role, teaches
        for cond in self.conditions:
            chosen = {}
            for arch in cond.teachers:
                try:
                    chosen[arch] = self.best_teacher(cond, arch, read)
                except TeacherFailed:
                    chosen[arch] = None
            rows += [(c.run_id, "teacher", c.run_id == chosen[a]) for a, cs in cond.teachers.items() for c in cs]
            rows += [(c.replace(teacher_run=chosen[c.teacher]).run_id if c.teacher else c.run_id, "student", False)
                     for c in cond.students if c.teacher is None or chosen[c.teacher]]
        recs = [(read(r), role, teaches) for r, role, teaches in dict.fromkeys(rows)]
        df = pd.DataFrame([{**store_mod._row(rec), "role": role, "teaches": teaches, "history": rec.get("history", [])}
                           for rec, role, teaches in recs if rec is not None and rec.get("kind", "run") == "run"])
        if df.empty:
            return pd.DataFrame(columns=[*store_mod.COLUMNS, "status", "kind", "role", "teaches", "history"])
        return df

    def transfer(self, student: str, runs: pd.DataFrame | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
        """Fig. 1 for the grid's ``student`` architecture: (matrix, record); see ``transfer_for``."""
        return transfer_for(self.params, self.results() if runs is None else runs, student)


def teacher_grids(p: Params, **overrides: Any) -> list[Params]:
    """One baseline grid per (data condition, teacher architecture) of ``p``: exactly its teacher runs.

    A teacher run is a baseline run of the teacher architecture with the teacher seeds and epochs, so
    these grids have the same run ids as the teachers that ``Study(p)`` trains, and training them trains
    the teachers alone. ``overrides`` (store, device, data_root) replace fields that do not change a run.
    """
    archs = sorted({p.teacher_of(s) for s in p.students for m in p.methods if METHODS[m].uses_teacher})
    return [dataclasses.replace(p, students=[t], teachers={}, methods=["baseline"], seeds=list(p.teacher_seeds),
                                epochs=p.teacher_epochs or p.epochs, teacher_epochs=None, noise=[n],
                                imbalance=[g], method_args={}, **overrides)
            for n in p.noise for g in p.imbalance for t in archs]


def teacher_runs(grids: list[Params], train: bool = True) -> pd.DataFrame:
    """The finished teacher runs of the grids, one row per run (``results``' columns, ``teacher`` = the
    architecture), ``teaches`` marking the seed that the grid's students learn from.

    Each grid's teachers are trained first when ``train`` (else missing ones raise MissingRuns), without
    its students. A grid without teachers (baseline runs of teacher architectures, as the teachers
    page's own) contributes its runs as teachers.
    """
    frames = []
    for p in grids:
        tgrids = teacher_grids(p)
        ran = [Study(tg).run(train=train, progress=False) for tg in tgrids or [p]]
        res = Study(p).results() if tgrids else ran[0]
        frames.append(res[res["role"] == "teacher"] if tgrids else res.assign(role="teacher", teaches=False))
    df = pd.concat([f for f in frames if len(f)] or frames[:1], ignore_index=True)
    df = df[df["status"] == "done"].sort_values("teaches", ascending=False, kind="stable").drop_duplicates("run_id")
    return df.assign(teacher=df["student"]).reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Fig. 1: the transfer matrix of a grid's students, kept as a record in the store (it needs the weights,
# which a committed store does not carry).

# PGD of the paper's §IV-D (protocol § Transferability); test_per_class None: the test set of the grid
TRANSFER_DEFAULTS: dict[str, Any] = {"eps": 0.031, "step": 0.003, "steps": 20, "seed": 0, "test_per_class": None,
                                     "batch_size": 500}


class TransferUnavailable(FileNotFoundError):
    """Neither the stored transfer matrix nor the weights to compute it are there."""


def transfer_settings(p: Params) -> dict[str, Any]:
    if bad := sorted(set(p.transfer) - set(TRANSFER_DEFAULTS)):
        raise ValueError(f"unknown transfer setting {bad[0]!r}; valid: {', '.join(TRANSFER_DEFAULTS)}")
    return {**TRANSFER_DEFAULTS, **p.transfer}


def transfer_sources(runs: pd.DataFrame, student: str) -> tuple[dict[str, list[str]], str | None]:
    """Run ids per method (seed order, finished students of ``student``) and the teacher run they learned
    from, as their records say (``teacher_run``; None when no method uses a teacher)."""
    st = runs[(runs["role"] == "student") & (runs["student"] == student) & (runs["status"] == "done")]
    ids = {m: list(st[st["method"] == m].sort_values("seed")["run_id"])
           for m in METHODS if m in set(st["method"])}
    teachers = sorted(st["teacher_run"].dropna().unique()) if "teacher_run" in st else []
    if len(teachers) > 1:
        raise ValueError(f"the {student} students learned from {len(teachers)} teacher runs ({', '.join(teachers)}); "
                         "a transfer matrix needs a grid of one data condition")
    return ids, (teachers[0] if teachers else None)


def transfer_key(ids: Mapping[str, list[str]], teacher: str | None, settings: Mapping[str, Any], p: Params) -> str:
    """The record's name: which runs (by id), which attack, which test images. The weights it attacked are
    checked separately (the record's ``weights``), since a run id can be retrained."""
    attack = {k: settings[k] for k in ("eps", "step", "steps", "seed")}
    data = {"dataset": p.dataset, "test_per_class": settings["test_per_class"] or p.test_per_class}
    return store_mod.config_hash({"sources": dict(ids), "teacher": teacher, "attack": attack, "data": data})


def transfer_path(store: str | Path, key: str) -> Path:
    return Path(store) / "transfer" / f"{key}.json"


def _matrix_to_json(df: pd.DataFrame) -> dict[str, Any]:
    return {"index": list(df.index), "columns": list(df.columns),
            "data": [[None if pd.isna(v) else float(v) for v in row] for row in df.to_numpy()]}


def _matrix_from_json(d: Mapping[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(d["data"], index=pd.Index(d["index"], name="target"),
                        columns=pd.Index(d["columns"], name="source"), dtype=float)


def transfer_for(p: Params, runs: pd.DataFrame, student: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Fig. 1 for one student architecture of a grid: (matrix, record). Index: target methods and ``mean``;
    columns: source methods, ``mean``, ``teacher``.

    The record ``<store>/transfer/<transfer_key>.json`` holds the matrix and ``weights``, the
    ``attacks.weights_hash`` of every model it attacked. With the weights in the store, the record is
    used only if those hashes match (retrained weights under the same run ids are attacked anew; PGD
    examples are cached by weights under ``<store>/transfer/pgd``); without them (a committed store
    carries records only), the record is used as it was made, and the returned record says so
    (``weights_checked`` False). A record without ``weights`` predates them: it is matched by run ids.
    """
    settings = transfer_settings(p)
    ids, teacher = transfer_sources(runs, student)
    if not ids:
        raise TransferUnavailable(f"no finished {student} students in store {p.store}")
    key = transfer_key(ids, teacher, settings, p)
    path = transfer_path(p.store, key)
    rec = json.loads(path.read_text()) if path.is_file() else None
    store = store_mod.Store(p.store)
    needed = list(dict.fromkeys([r for rs in ids.values() for r in rs] + ([teacher] if teacher else [])))
    absent = [str(store.model_path(r)) for r in needed if not store.model_path(r).is_file()]
    if absent and rec is None:
        raise TransferUnavailable(
            f"transfer matrix {path} is not stored, and the weights to compute it are missing for "
            f"{len(absent)} of {len(needed)} runs: {', '.join(absent)}")
    if absent:
        return _matrix_from_json(rec["matrix"]), {**rec, "weights_checked": False}
    from kdnb.attacks import weights_hash
    from kdnb.train import load_model, resolve_device

    device = resolve_device(p.device)
    models = {r: load_model(store, r, device) for r in needed}
    weights = {r: weights_hash(m) for r, m in models.items()}
    if rec is None or rec.get("weights") != weights:
        rec = {**_compute_transfer(p, settings, models, ids, teacher, device), "key": key, "student": student,
               "weights": weights}
        store_mod.atomic_write_bytes(path, json.dumps(rec, indent=1, sort_keys=True).encode())
    return _matrix_from_json(rec["matrix"]), {**rec, "weights_checked": True}


def _compute_transfer(p: Params, settings: dict[str, Any], models: dict[str, Any], ids: dict[str, list[str]],
                      teacher: str | None, device: Any) -> dict[str, Any]:
    import torch

    from kdnb.attacks import transfer_matrix
    from kdnb.data import make_splits

    spec = DataSpec(dataset=p.dataset, train_per_class=p.train_per_class,
                    test_per_class=settings["test_per_class"] or p.test_per_class)
    _, test = make_splits(spec, p.data_root)
    x = torch.from_numpy(test.x).permute(0, 3, 1, 2).float().div(255).to(device)
    y = torch.from_numpy(test.y).to(device)
    t0 = time.perf_counter()
    mat = transfer_matrix({m: [models[r] for r in rs] for m, rs in ids.items()}, x, y,
                          teacher=models[teacher] if teacher else None, cache_dir=Path(p.store) / "transfer" / "pgd",
                          seed=settings["seed"], batch_size=settings["batch_size"], progress=False,
                          eps=settings["eps"], step=settings["step"], steps=settings["steps"])
    return {"kind": "transfer", "sources": ids, "teacher": teacher, "settings": settings, "n_images": len(y),
            "matrix": _matrix_to_json(mat.rename(columns={"Teacher": "teacher"})),
            "wall_s": time.perf_counter() - t0, "device": str(device), "code_version": store_mod.code_version(),
            "created": datetime.now(timezone.utc).isoformat()}


# ---------------------------------------------------------------------------------------------
# Dispatch: several processes, or a Slurm job array, all working on one store through run locks.


class _Worker:
    """One array task: runs the study until nothing is left; requeued as is on preemption."""

    def __init__(self, params: dict[str, Any], flags: dict[str, bool] | None = None):
        self.params, self.flags = params, flags or {}

    def __call__(self, index: int) -> int:
        Study(Params.from_dict(self.params)).run(progress=False, **self.flags)
        return index

    def checkpoint(self, *args: Any) -> Any:  # submitit calls this on preemption or timeout
        import submitit

        return submitit.helpers.DelayedSubmission(self, *args)


def dispatch(params: Params, cluster: str | None = None, allow_emulated_bf16: bool = False,
             retry_failed: bool = False, retrain_stale: bool = False) -> int:
    """Run a study with ``params.executor`` and ``params.workers``; returns an exit status.

    ``local`` starts ``workers`` processes of ``kdnb study`` (each on its own GPU when several are
    visible); ``slurm`` submits a job array of ``workers`` tasks with ``params.slurm`` resources.
    Either way the workers read ``params`` as resolved here, with the command line's --students,
    --methods, --seeds and plugins. Each run is trained once, whichever process locks it first; a
    killed or requeued worker's runs resume from their last checkpoint.
    """
    Study(params)  # validate the whole grid before anything starts
    if params.executor == "local":
        check_bf16(params.precision, params.device, allow_emulated_bf16)
    flags = {"retry_failed": retry_failed, "retrain_stale": retrain_stale}
    if params.executor == "slurm" or cluster:
        return _submit(params, cluster, flags)
    if params.workers == 1:
        Study(params).run(allow_emulated_bf16=allow_emulated_bf16, **flags)
        return 0
    import subprocess
    import sys

    import torch

    gpus, path = torch.cuda.device_count(), _write_params(params)
    args = [f"--{k.replace('_', '-')}" for k, on in {**flags, "allow_emulated_bf16": allow_emulated_bf16}.items() if on]
    procs = []
    for i in range(params.workers):
        env = dict(os.environ, **({"CUDA_VISIBLE_DEVICES": str(i % gpus)} if gpus > 1 else {}))
        procs.append(subprocess.Popen([sys.executable, "-m", "kdnb.cli", "study", path, "--store", params.store,
                                       "--workers", "1", "--no-progress", *args] +
                                      (["--device", params.device] if params.device else []), env=env))
    return max(p.wait() for p in procs)


def _write_params(params: Params) -> str:
    """The resolved params for the workers, named by content: studies dispatched at once never share it."""
    text = yaml.safe_dump(dataclasses.asdict(params)).encode()
    name = f"{params.profile}-{params.section}-{hashlib.sha256(text).hexdigest()[:8]}.yaml"
    path = Path(params.store) / "dispatch" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    store_mod.atomic_write_bytes(path, text)
    return str(path)


def _submit(params: Params, cluster: str | None, flags: dict[str, bool]) -> int:
    try:
        import submitit
    except ImportError:
        raise ConfigError("executor 'slurm' needs submitit: pip install 'kdnb[slurm]'") from None
    executor = submitit.AutoExecutor(folder=str(Path(params.store) / "slurm" / "%j"), cluster=cluster)
    executor.update_parameters(**{"timeout_min": 24 * 60, "slurm_array_parallelism": params.workers, **params.slurm})
    as_dict = {**dataclasses.asdict(params), "executor": "local", "workers": 1}
    jobs = executor.map_array(_Worker(as_dict, flags), list(range(params.workers)))
    log.info("submitted %d tasks: %s", len(jobs), ", ".join(j.job_id for j in jobs))
    for job in jobs:
        job.result()  # waits; raises if a task failed
    return 0
