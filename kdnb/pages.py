"""What the book's notebooks share besides figures: their parameters, the profile banner, the
teacher grids of Table II, and the transfer matrix of Fig. 1 kept as a record in the store.

The transfer matrix needs the students' weights (``model.pt``), which a committed store does not
carry, so the computed matrix is stored as ``<store>/transfer/<key>.json`` (written atomically),
keyed by the run ids of the models and the attack settings; a page renders from it when the
weights are absent.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from kdnb import paper
from kdnb.methods import METHODS
from kdnb.store import Store, atomic_write_bytes, code_version, config_hash
from kdnb.study import Params, Study

PARAM_KEYS = tuple(f.name for f in dataclasses.fields(Params))

# PGD of the paper's §IV-D (spec part 2 §7); test_per_class None: the test set of the grid
TRANSFER_DEFAULTS: dict[str, Any] = {"eps": 0.031, "step": 0.003, "steps": 20, "seed": 0, "test_per_class": None,
                                     "batch_size": 500}


# ---------------------------------------------------------------------------------------------
# Parameters and banner


def params_from(ns: Mapping[str, Any]) -> tuple[Params, list[str]]:
    """Params from a notebook's variables (its parameters cell); methods not registered are dropped.

    Returns the Params and the dropped method names, which a page lists as not run.
    """
    d = copy.deepcopy({k: ns[k] for k in PARAM_KEYS if k in ns})
    methods = list(d.get("methods") or [])
    d["methods"] = [m for m in methods if m in METHODS]
    return Params.from_dict(d), [m for m in methods if m not in METHODS]


def load_params_file(path: str | Path) -> tuple[Params, list[str]]:
    """A params YAML file read like a notebook's parameters (unregistered methods dropped)."""
    d = yaml.safe_load(Path(path).read_text()) or {}
    return params_from(d)


def section_files(params_dir: str | Path, section: str, companions_only: bool = False) -> list[Path]:
    """``<section>.yaml`` and its companions ``<section>_*.yaml`` (e.g. the CIFAR-100 grid of Table IV)."""
    d = Path(params_dir)
    main = [d / f"{section}.yaml"] if (d / f"{section}.yaml").is_file() and not companions_only else []
    return main + sorted(d.glob(f"{section}_*.yaml"))


BANNERS = {
    "smoke": "Smoke profile: the numbers on this page are not results. It was executed with the <code>smoke</code> "
             "parameters (tiny synthetic data, one or two epochs) to test the code; this is not the paper's "
             "protocol.",
    "mini": "Mini profile: real CIFAR-10 runs on a reduced protocol (a subset of the training images, a shortened "
            "schedule, one student&ndash;teacher pair, two seeds). This is not the paper's protocol: compare "
            "trends, not values.",
}


def banner(profile: str) -> str:
    """The warning shown on every page of a book not built with the paper profile ('' for paper)."""
    if profile == "paper":
        return ""
    text = BANNERS.get(profile, f"Profile <code>{profile}</code>: not the paper's protocol; compare trends, "
                                "not values.")
    return f'<div class="kdnb-banner">{text}</div>'


def _n(k: int, noun: str) -> str:
    return f"{k} {noun}{'' if k == 1 else 's'}"


def setting_text(p: Params, dropped: list[str] = ()) -> str:
    """One paragraph (markdown) stating what this page ran, from its parameters."""
    label = paper.LABELS.get
    pairs = ", ".join(f"{label(s, s)} ← {label(p.teacher_of(s), p.teacher_of(s))}" for s in p.students)
    per_class = f"the first {p.train_per_class} training images per class" if p.train_per_class else \
        "the full training set"
    test = f"the first {p.test_per_class} test images per class" if p.test_per_class else "the full test set"
    seeds = f"{_n(len(p.seeds), 'seed')} ({', '.join(map(str, p.seeds))})"
    t_ep = p.teacher_epochs or p.epochs
    if any(p.noise):
        per_class += f", labels corrupted with noise rates σ ∈ {{{', '.join(f'{n:g}' for n in p.noise)}}}"
    gammas = [g for g in p.imbalance if g is not None]
    if gammas:
        per_class += (f", made imbalanced with γ ∈ {{{', '.join(f'{g:g}' for g in gammas)}}} (class sizes "
                      f"{p.imbalance_n_max} down to {p.imbalance_n_min})")
    text = (f"**This page ran** profile `{p.profile}` on {label(p.dataset, p.dataset)} with {per_class} and {test}; "
            f"student ← teacher: {pairs}; {_n(p.epochs, 'epoch')} for the students and {t_ep} for the teachers; "
            f"{seeds} per cell, teacher seeds {p.teacher_seeds}; "
            + ("" if p.precision == "fp32" else f"{p.precision} autocast (convolutions and matrix products in "
               f"{p.precision}; weights, batch-norm statistics and loss reductions in fp32); ")
            + f"store `{p.store}`. **The paper** used the full CIFAR training sets, 200 epochs, fp32 and 5 seeds.")
    if dropped:
        text += (" Methods listed in the parameters but not available in this version of kdnb, shown as "
                 f"*not run*: {', '.join(label(m, m) for m in dropped)}.")
    return text


def teachers_text(grids: list[Params], params_dir: str | Path) -> str:
    """What the teachers page ran (markdown): its teacher grids, from the profile's params files."""
    label = paper.LABELS.get
    archs = sorted({s for g in grids for s in g.students})
    conds = sorted({(g.dataset, n, -1.0 if i is None else i) for g in grids for n in g.noise for i in g.imbalance})
    seeds = sorted({s for g in grids for s in g.seeds})
    epochs = sorted({g.epochs for g in grids})
    p = grids[0]
    return (f"**This page ran** profile `{p.profile}`: the teachers of every grid in `{params_dir}` "
            f"({', '.join(label(a, a) for a in archs)}; {len(conds)} data conditions), each a baseline run with "
            f"seeds {seeds} and {', '.join(map(str, epochs))} epoch{'' if epochs == [1] else 's'}; "
            f"store `{p.store}`. **The paper** trained its teachers on the full CIFAR training sets for 200 epochs "
            "with 5 seeds.")


# ---------------------------------------------------------------------------------------------
# Table II: the teachers of a section's grid


def teacher_params(p: Params, **overrides: Any) -> list[Params]:
    """One baseline grid per (data condition, teacher architecture) of ``p``: exactly its teacher runs.

    A teacher run is a baseline run of the teacher architecture with the teacher seeds and epochs,
    so these grids have the same run ids as the teachers that ``Study(p)`` trains. ``overrides``
    (store, device, data_root) replace fields that do not change a run.
    """
    archs = sorted({p.teacher_of(s) for s in p.students for m in p.methods if METHODS[m].uses_teacher})
    return [dataclasses.replace(p, students=[t], teachers={}, methods=["baseline"], seeds=list(p.teacher_seeds),
                                epochs=p.teacher_epochs or p.epochs, teacher_epochs=None, noise=[n],
                                imbalance=[g], method_args={}, **overrides)
            for n in p.noise for g in p.imbalance for t in archs]


def teacher_runs(grids: list[Params], train: bool = True) -> pd.DataFrame:
    """The finished teacher runs of the grids (one row per run; duplicates across grids dropped)."""
    frames = [Study(tp).run(train=train, progress=False) for tp in grids]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=["run_id", "dataset", "student", "noise", "imbalance", "seed", "final_acc"])
    df = pd.concat(frames, ignore_index=True).drop_duplicates("run_id")
    return df[df["status"] == "done"].assign(teacher=lambda d: d["student"]).reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Fig. 1: the transfer matrix, computed from weights or read from its record


class TransferUnavailable(FileNotFoundError):
    """Neither the stored transfer matrix nor the weights to compute it are there."""


def transfer_settings(p: Params) -> dict[str, Any]:
    bad = sorted(set(p.transfer) - set(TRANSFER_DEFAULTS))
    if bad:
        raise ValueError(f"unknown transfer setting {bad[0]!r}; valid: {', '.join(TRANSFER_DEFAULTS)}")
    return {**TRANSFER_DEFAULTS, **p.transfer}


def transfer_sources(study: Study, runs: pd.DataFrame, student: str) -> tuple[dict[str, list[str]], str | None]:
    """Run ids per method (seed order, finished students only) and the teacher's run id."""
    st = runs[(runs["role"] == "student") & (runs["student"] == student) & (runs["status"] == "done")]
    ids = {m: list(st[st["method"] == m].sort_values("seed")["run_id"])
           for m in paper.METHODS if m in set(st["method"])}
    cond = study.conditions[0]
    arch = study.params.teacher_of(student)
    teacher = study.best_teacher(cond, arch) if arch in cond.teachers else None
    return ids, teacher


def transfer_key(ids: Mapping[str, list[str]], teacher: str | None, settings: Mapping[str, Any],
                 p: Params) -> str:
    attack = {k: settings[k] for k in ("eps", "step", "steps", "seed")}
    data = {"dataset": p.dataset, "test_per_class": settings["test_per_class"] or p.test_per_class}
    return config_hash({"sources": dict(ids), "teacher": teacher, "attack": attack, "data": data})


def transfer_path(store: str | Path, key: str) -> Path:
    return Path(store) / "transfer" / f"{key}.json"


def _matrix_to_json(df: pd.DataFrame) -> dict[str, Any]:
    return {"index": list(df.index), "columns": list(df.columns),
            "data": [[None if pd.isna(v) else float(v) for v in row] for row in df.to_numpy()]}


def _matrix_from_json(d: Mapping[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(d["data"], index=pd.Index(d["index"], name="target"),
                        columns=pd.Index(d["columns"], name="source"), dtype=float)


def transfer_for(study: Study, runs: pd.DataFrame, student: str) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Fig. 1 for one student architecture: (matrix, record). Read from the store when stored, else
    computed from the weights (PGD examples cached under ``<store>/transfer/pgd``) and stored.

    Index: target methods and ``mean``; columns: source methods, ``mean``, ``teacher``.
    """
    p = study.params
    settings = transfer_settings(p)
    ids, teacher = transfer_sources(study, runs, student)
    if not ids:
        raise TransferUnavailable(f"no finished {student} students in store {p.store}")
    key = transfer_key(ids, teacher, settings, p)
    path = transfer_path(p.store, key)
    if path.is_file():
        rec = json.loads(path.read_text())
        return _matrix_from_json(rec["matrix"]), rec
    store = Store(p.store)
    needed = list(dict.fromkeys([r for rs in ids.values() for r in rs] + ([teacher] if teacher else [])))
    absent = [str(store.model_path(r)) for r in needed if not store.model_path(r).is_file()]
    if absent:
        raise TransferUnavailable(
            f"transfer matrix {path} is not stored, and the weights to compute it are missing for "
            f"{len(absent)} of {len(needed)} runs: {', '.join(absent)}")
    rec = _compute_transfer(p, store, ids, teacher, settings)
    rec.update(key=key, student=student)
    atomic_write_bytes(path, json.dumps(rec, indent=1, sort_keys=True).encode())
    return _matrix_from_json(rec["matrix"]), rec


def _compute_transfer(p: Params, store: Store, ids: dict[str, list[str]], teacher: str | None,
                      settings: dict[str, Any]) -> dict[str, Any]:
    import torch

    from kdnb.attacks import transfer_matrix
    from kdnb.data import DataSpec, make_splits
    from kdnb.train import load_model, resolve_device

    device = resolve_device(p.device)
    spec = DataSpec(dataset=p.dataset, train_per_class=p.train_per_class,
                    test_per_class=settings["test_per_class"] or p.test_per_class)
    _, test = make_splits(spec, p.data_root)
    x = torch.from_numpy(test.x).permute(0, 3, 1, 2).float().div(255).to(device)
    y = torch.from_numpy(test.y).to(device)
    t0 = time.perf_counter()
    models = {m: [load_model(store, r, device) for r in rs] for m, rs in ids.items()}
    t_model = load_model(store, teacher, device) if teacher else None
    mat = transfer_matrix(models, x, y, teacher=t_model, cache_dir=Path(p.store) / "transfer" / "pgd", ids=ids,
                          teacher_id=teacher, seed=settings["seed"], batch_size=settings["batch_size"],
                          progress=False, eps=settings["eps"], step=settings["step"], steps=settings["steps"])
    mat = mat.rename(columns={"Teacher": "teacher"})
    return {"kind": "transfer", "sources": ids, "teacher": teacher, "settings": settings,
            "n_images": len(y), "matrix": _matrix_to_json(mat), "wall_s": time.perf_counter() - t0,
            "device": str(device), "code_version": code_version(),
            "created": datetime.now(timezone.utc).isoformat()}


# Observations of the paper's §IV-D about Fig. 1, checked on any matrix
HINTON_FAMILY = ("hinton", "fitnet", "fsp")
RELATIONAL = ("sp", "rkd_d", "rkd_a", "rkd_da")


def _ranked(values: pd.Series, n: int | None = None, lowest: bool = False) -> str:
    v = values.sort_values(ascending=lowest)
    return ", ".join(f"{paper.LABELS.get(m, m)} {x:.1f}" for m, x in (v if n is None else v.iloc[:n]).items())


def transfer_rankings(mat: pd.DataFrame) -> str:
    """Markdown: the teacher column and the mean row of a matrix, highest first."""
    methods = [m for m in paper.TRANSFER_SOURCES if m in mat.index]
    parts = []
    if "teacher" in mat.columns:
        parts.append(f"- examples crafted on the teacher, by target: {_ranked(mat.loc[methods, 'teacher'].dropna())}")
    if "mean" in mat.index:
        means = _ranked(mat.loc["mean", methods].dropna())
        parts.append(f"- examples crafted on each method, mean over targets: {means}")
    return "\n".join(parts)


def _top_is(values: pd.Series, method: str) -> bool | None:
    return None if method not in values or len(values) < 2 else bool(values.idxmax() == method)


def _second_is(values: pd.Series, first: str, second: str) -> bool | None:
    if first not in values or second not in values or len(values) < 3:
        return None
    return bool(list(values.sort_values(ascending=False).index[:2]) == [first, second])


def _lowest_are(values: pd.Series, group: tuple[str, ...]) -> bool | None:
    fam = [m for m in group if m in values]
    if len(fam) < 2 or len(values) <= len(fam):
        return None
    return bool(set(values.nsmallest(len(fam)).index) == set(fam))


def _between(values: pd.Series) -> tuple[bool | None, str]:
    fam, rel = [m for m in HINTON_FAMILY if m in values], [m for m in RELATIONAL if m in values]
    if not fam or not rel or "at" not in values:
        return None, "needs AT, a relational method and a Hinton-family method"
    lo, mid, hi = values[fam].mean(), values[rel].mean(), values["at"]
    return bool(lo < mid < hi), f"Hinton family {lo:.1f}, relational {mid:.1f}, AT {hi:.1f}"


def transfer_observations(mat: pd.DataFrame) -> pd.DataFrame:
    """The paper's observations about Fig. 1 (§IV-D), checked on ``mat``: one row each with ``holds``
    (True, False, or None when a method it needs is missing) and the numbers behind it."""
    methods = [m for m in paper.TRANSFER_SOURCES if m in mat.index]
    teacher = mat.loc[methods, "teacher"].dropna() if "teacher" in mat.columns else pd.Series(dtype=float)
    source = mat.loc["mean", methods].dropna() if "mean" in mat.index else pd.Series(dtype=float)
    between, between_detail = _between(teacher)
    fam = ", ".join(paper.LABELS[m] for m in HINTON_FAMILY)
    rows = [
        ("Examples crafted on the teacher transfer best to AT", _top_is(teacher, "at"), f"top: {_ranked(teacher, 1)}"),
        ("BSS comes second after AT in transfer from the teacher", _second_is(teacher, "at", "bss"),
         f"top two: {_ranked(teacher, 2)}"),
        ("Relational methods (SP, RKD-D/A/DA) lie between the Hinton family and AT (teacher column, group means)",
         between, between_detail),
        (f"The Hinton family ({fam}) has the lowest transfer from the teacher", _lowest_are(teacher, HINTON_FAMILY),
         f"lowest: {_ranked(teacher, 3, lowest=True)}"),
        ("Examples crafted on AT transfer best to the other students (mean row)", _top_is(source, "at"),
         f"top: {_ranked(source, 1)}"),
        (f"Examples crafted on the Hinton family ({fam}) transfer least (mean row)",
         _lowest_are(source, HINTON_FAMILY), f"lowest: {_ranked(source, 3, lowest=True)}"),
    ]
    return pd.DataFrame(rows, columns=["observation", "holds", "detail"])
