"""Run configuration: one flat record of everything that decides a run's result, validated up front.

The run id is a hash of the fields that change the result (`RunConfig.identity`); device, compile,
layout, teacher-logit cache and evaluation-batch switches are recorded but not hashed (they change
results by float rounding at most), so a run is found again wherever it was trained. The method's
part of the validation (its arguments, its defaults, its own checks) lives in ``kdnb.methods.validate``.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any

from kdnb import ConfigError, methods
from kdnb.data import DATASETS, NUM_CLASSES, DataSpec
from kdnb.models import canonical_name, names
from kdnb.store import config_hash

__all__ = ["ConfigError", "RunConfig", "validate", "PRECISIONS", "SHORTCUTS", "EVAL_BATCH", "COMPILE"]

PRECISIONS = ("fp32", "bf16")  # fp32 is the paper's; bf16 autocast (protocol § Training)
SHORTCUTS = ("A", "B")  # ResNet down-sampling shortcuts, B by default (protocol § Models)
COMPILE = (False, True, "reduce-overhead")  # eager; torch.compile; and CUDA graphs (CUDA only; protocol § Training)
# Test batch when eval_batch_size is None. The CPU is cache-bound: at 1000 images the activations
# leave the cache and evaluation ran at 0.5-0.8x of batches of 128 (benchmarks/RESULTS.md); a GPU is
# launch-bound and wants few, large batches. Evaluation mode makes accuracy independent of it.
EVAL_BATCH = {"cpu": 128, "cuda": 1000}


@dataclass
class RunConfig:
    """One training run; the defaults are the paper's standard scheme (paper §III; protocol § Training).

    ``epochs`` is the standard scheme's length (200 in the paper). Every other recipe (BSS, ONE,
    FitNet/FSP stage 1) is scaled by ``epochs / 200`` so that a shortened profile shortens all of
    them in proportion. Milestones are fractions of a stage's epochs.
    """

    method: str = "baseline"
    student: str = "resnet8"
    teacher: str | None = None
    teacher_run: str | None = None  # run id of the teacher's baseline run
    seed: int = 0
    data: DataSpec = field(default_factory=DataSpec)
    epochs: int = 200  # paper §III
    batch_size: int = 128  # paper §III
    lr: float = 0.1  # paper §III
    momentum: float = 0.9  # no Nesterov (protocol § Training)
    weight_decay: float = 5e-4  # the AT and WRN code the paper follows (protocol § Training)
    milestones: tuple[float, ...] = (0.3, 0.6, 0.75)  # epochs 60, 120, 150 of 200 (paper §III)
    lr_decay: float = 0.2  # paper §III
    shortcut: str = "B"
    method_args: dict[str, Any] = field(default_factory=dict)
    precision: str = "fp32"
    # Not part of the identity: how, not what, is computed.
    channels_last: bool = True  # 1.4x on the CPU (benchmarks/RESULTS.md); math unchanged
    compile: bool | str = False  # one of COMPILE
    teacher_cache: bool | None = None  # teacher logits read from a cache of every view; None: on CUDA where it fits
    eval_batch_size: int | None = None  # None: EVAL_BATCH of the device
    plugin: dict[str, str] | None = None  # file and sha256 of a plugin method (set by validation); None: built in

    HASHED = ("method", "student", "teacher", "teacher_run", "seed", "data", "epochs", "batch_size", "lr",
              "momentum", "weight_decay", "milestones", "lr_decay", "shortcut", "method_args", "precision")

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES[self.data.dataset]

    def seed_for(self, purpose: str) -> int:
        """An independent 63-bit seed per purpose (init, data, method) from the run seed (protocol § Seeds)."""
        return int.from_bytes(hashlib.sha256(f"{self.seed}:{purpose}".encode()).digest()[:8], "little") >> 1

    def eval_batch(self, device_type: str) -> int:
        return self.eval_batch_size or EVAL_BATCH.get(device_type, EVAL_BATCH["cuda"])

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    def identity(self) -> dict[str, Any]:
        d = self.to_dict()
        return {k: d[k] for k in self.HASHED}

    @property
    def run_id(self) -> str:
        return config_hash(self.identity())

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        """Build and validate a config from plain data (YAML, JSON, a record's ``config``)."""
        if not isinstance(d, dict):
            raise ConfigError(f"a run config must be a mapping, got {type(d).__name__}")
        d = dict(d)
        data_fields = {f.name for f in dataclasses.fields(DataSpec)}
        data = {**(d.pop("data", None) or {}), **{k: d.pop(k) for k in list(d) if k in data_fields}}
        if bad := sorted(set(data) - data_fields):
            raise ConfigError(f"unknown data field {bad[0]!r}; valid: {', '.join(sorted(data_fields))}")
        fields = {f.name for f in dataclasses.fields(cls)}
        if bad := sorted(set(d) - fields):
            raise ConfigError(f"unknown config field {bad[0]!r}; valid: {', '.join(sorted(fields | data_fields))}")
        if "milestones" in d:
            d["milestones"] = tuple(d["milestones"])
        try:
            cfg = cls(data=DataSpec(**data), **d)
        except TypeError as err:
            raise ConfigError(str(err)) from None
        return validate(cfg)


def _check(ok: bool, msg: str) -> None:
    if not ok:
        raise ConfigError(msg)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _integer(v: Any, low: int, high: float = float("inf")) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def _validate_data(d: DataSpec) -> DataSpec:
    """Check the data fields; reset those that cannot matter, so equal runs get equal ids."""
    _check(d.dataset in DATASETS, f"unknown dataset {d.dataset!r}; valid: {', '.join(DATASETS)}")
    _check(_number(d.noise) and 0.0 <= d.noise <= 1.0, f"noise {d.noise!r} outside [0, 1]")
    _check(d.imbalance is None or (_number(d.imbalance) and d.imbalance > 0),
           f"imbalance ratio {d.imbalance!r} must be > 0 (or null for balanced data)")
    for k in ("train_per_class", "test_per_class"):
        v = getattr(d, k)
        _check(v is None or (isinstance(v, int) and v >= 1), f"{k} {v!r} must be a positive integer or null")
    if d.imbalance is None:
        d = dataclasses.replace(d, imbalance_n_max=DataSpec.imbalance_n_max, imbalance_n_min=DataSpec.imbalance_n_min)
    if d.noise == 0:
        d = dataclasses.replace(d, noise_seed=DataSpec.noise_seed)
    if d.dataset != "synthetic":
        d = dataclasses.replace(d, synthetic_train=DataSpec.synthetic_train, synthetic_test=DataSpec.synthetic_test)
    return d


def validate(cfg: RunConfig) -> RunConfig:
    """Check every field; fill the method's default arguments. Returns the completed config."""
    for role in ("student", "teacher"):
        name = getattr(cfg, role)
        if name is None and role == "teacher":
            continue
        try:
            setattr(cfg, role, canonical_name(str(name)))
        except ValueError:
            raise ConfigError(f"unknown {role} model {name!r}; valid: {', '.join(names())}") from None
    cfg.data = _validate_data(cfg.data)
    _check(_integer(cfg.epochs, 1), f"epochs {cfg.epochs!r} must be an integer >= 1")
    _check(_integer(cfg.batch_size, 1, 65536), f"batch_size {cfg.batch_size!r} must be an integer in [1, 65536]")
    _check(_integer(cfg.seed, 0, 2**31 - 1), f"seed {cfg.seed!r} must be an integer in [0, 2^31)")
    _check(_number(cfg.lr) and cfg.lr > 0, f"lr {cfg.lr!r} must be > 0")
    _check(_number(cfg.weight_decay) and cfg.weight_decay >= 0, f"weight_decay {cfg.weight_decay!r} must be >= 0")
    _check(all(_number(m) and 0 < m < 1 for m in cfg.milestones),
           f"milestones {list(cfg.milestones)!r} must be fractions of the epochs in (0, 1)")
    _check(cfg.shortcut in SHORTCUTS, f"unknown shortcut {cfg.shortcut!r}; valid: {', '.join(SHORTCUTS)}")
    _check(cfg.precision in PRECISIONS, f"unknown precision {cfg.precision!r}; valid: {', '.join(PRECISIONS)}")
    _check(cfg.compile in COMPILE and not _number(cfg.compile),
           f"compile {cfg.compile!r} must be false, true or reduce-overhead (CUDA graphs)")
    _check(cfg.teacher_cache in (None, True, False) and not _number(cfg.teacher_cache),
           f"teacher_cache {cfg.teacher_cache!r} must be true, false or null (on CUDA where it fits)")
    _check(cfg.eval_batch_size is None or _integer(cfg.eval_batch_size, 1),
           f"eval_batch_size {cfg.eval_batch_size!r} must be a positive integer or null")
    return methods.validate(cfg)
