"""Studies: expand a params file into a grid of runs, train what the store lacks, read it back.

One params file serves the notebook (papermill injects its keys as variables) and the command
line (``kdnb study params/<profile>/<section>.yaml``). Teachers are baseline runs of the teacher
architecture on the same data; they are trained first, and each student uses the teacher seed
with the highest final test accuracy (paper §III; DECISIONS.md, "teachers").
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from kdnb import store as store_mod
from kdnb.config import ConfigError, RunConfig
from kdnb.data import DataSpec
from kdnb.methods import METHODS

log = logging.getLogger("kdnb")

# Teacher of each student family (paper §III): ResNet-26 for ResNets, WRN-40-2 for WRNs.
DEFAULT_TEACHERS = {"resnet": "resnet26", "wrn": "wrn40_2"}


class MissingRuns(RuntimeError):
    """Runs the grid needs that the store lacks, when training is not allowed."""


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

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Params:
        if not isinstance(d, dict):
            raise ConfigError(f"a params file must be a YAML mapping, got {type(d).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        bad = sorted(set(d) - set(names))
        if bad:
            raise ConfigError(f"unknown params key {bad[0]!r}; valid: {', '.join(names)}")
        p = cls(**d)
        for k in ("students", "methods", "seeds", "teacher_seeds", "noise", "imbalance"):
            v = getattr(p, k)
            if not isinstance(v, list):
                v = [v]
                setattr(p, k, v)
            if not v:
                raise ConfigError(f"params key {k!r} must not be an empty list")
        for m in p.methods:
            if m not in METHODS:
                raise ConfigError(f"unknown method {m!r}; valid: {', '.join(METHODS)}")
        return p

    def teacher_of(self, student: str) -> str:
        if student in self.teachers:
            return self.teachers[student]
        family = "wrn" if student.startswith("wrn") else "resnet"
        suffix = "x4" if student.endswith("x4") else ""  # CIFAR-100 ResNets are width 4 (DECISIONS.md)
        return DEFAULT_TEACHERS[family] + (suffix if family == "resnet" else "")


def load_params(path: str | os.PathLike, **overrides: Any) -> Params:
    """Read a params YAML file; a missing file or malformed YAML raises ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file {str(path)!r} not found")
    try:
        d = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"malformed YAML in {path}{where}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"params file {path} must hold a YAML mapping")
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
        self.conditions = [self._condition(n, g) for n in params.noise for g in params.imbalance]
        for c in self.conditions:  # validate every config before anything runs
            for cfg in [*c.students, *(t for ts in c.teachers.values() for t in ts)]:
                RunConfig.from_dict(cfg.to_dict())

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
                uses_teacher = METHODS[method].uses_teacher
                teacher = p.teacher_of(student) if uses_teacher else None
                if teacher and teacher not in teachers:
                    teachers[teacher] = [self._base(data, method="baseline", student=teacher, seed=s,
                                                    epochs=p.teacher_epochs or p.epochs) for s in p.teacher_seeds]
                for seed in p.seeds:
                    students.append(self._base(data, method=method, student=student, teacher=teacher, seed=seed,
                                               epochs=p.epochs, method_args=p.method_args.get(method, {})))
        return Condition(data, teachers, students)

    # --- state ------------------------------------------------------------------------------
    def best_teacher(self, cond: Condition, teacher: str) -> str | None:
        """Run id of the finished teacher seed with the highest final accuracy, or None."""
        recs = [self.store.done(c.run_id) for c in cond.teachers[teacher]]
        if not all(recs):
            return None
        return max(recs, key=lambda r: r["final_acc"])["run_id"]

    def resolved(self, cond: Condition, cfg: RunConfig) -> RunConfig | None:
        """The student config with its teacher run filled in (None while the teacher is missing)."""
        if cfg.teacher is None:
            return cfg
        tid = self.best_teacher(cond, cfg.teacher)
        return cfg.replace(teacher_run=tid) if tid else None

    def status(self) -> pd.DataFrame:
        """One row per run of the grid: role, method, student, seed, noise, imbalance, state."""
        rows = []
        for cond in self.conditions:
            for cfgs in cond.teachers.values():
                for c in cfgs:
                    rows.append(self._status_row("teacher", c, c))
            for c in cond.students:
                rows.append(self._status_row("student", c, self.resolved(cond, c)))
        return pd.DataFrame(rows)

    def _status_row(self, role: str, cfg: RunConfig, resolved: RunConfig | None) -> dict[str, Any]:
        state, run_id = "waiting for teacher", None
        if resolved is not None:
            run_id = resolved.run_id
            try:
                rec = self.store.read(run_id)
                state = rec["status"] if rec else ("running" if self.store.checkpoint_path(run_id).exists()
                                                   else "missing")
            except store_mod.CorruptRecord:
                state = "corrupt"
        return {"role": role, "method": cfg.method, "student": cfg.student, "teacher": cfg.teacher,
                "seed": cfg.seed, "noise": cfg.data.noise, "imbalance": cfg.data.imbalance, "state": state,
                "run_id": run_id}

    def missing(self) -> pd.DataFrame:
        st = self.status()
        return st[st.state != "done"]

    # --- work -------------------------------------------------------------------------------
    def run(self, train: bool = True, progress: bool = True) -> pd.DataFrame:
        """Train every missing run (teachers first), then return the grid's results."""
        if not train:
            missing = self.missing()
            if len(missing):
                listing = "; ".join(f"{r.role} {r.method}/{r.student} seed {r.seed} noise {r.noise} "
                                    f"imbalance {r.imbalance} ({r.state})" for r in missing.itertuples())
                raise MissingRuns(f"{len(missing)} runs missing from store {self.params.store}: {listing}")
            return self.results()
        from kdnb.train import train_run

        todo = self.missing()
        log.info("study %s/%s: %d of %d runs to train", self.params.profile, self.params.section, len(todo),
                 len(self.status()))
        for cond in self.conditions:
            for cfgs in cond.teachers.values():
                for c in cfgs:
                    train_run(c, self.store, self.params.device, progress, self.params.data_root)
            for c in cond.students:
                train_run(self.resolved(cond, c), self.store, self.params.device, progress, self.params.data_root)
        return self.results()

    def results(self) -> pd.DataFrame:
        """Store rows of the grid's runs, with a ``role`` column (teacher or student)."""
        st = self.status().dropna(subset=["run_id"])
        df = store_mod.load(self.params.store)
        if df.empty:
            return df.assign(role=pd.Series(dtype=str))
        df = df.merge(st[["run_id", "role"]], on="run_id", how="inner")
        return df


def run_params(params: dict[str, Any] | Params, train: bool = True, progress: bool = True) -> pd.DataFrame:
    """Run (or read) the grid of a params mapping; what notebooks call."""
    p = params if isinstance(params, Params) else Params.from_dict(params)
    return Study(p).run(train=train, progress=progress)
