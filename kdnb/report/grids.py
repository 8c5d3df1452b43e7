"""A profile's params files as the grids a page runs: the notebooks' parameters, ``params/<profile>/<section>.yaml``
and its companions (``<section>_*.yaml``), read with the user's plugins registered and unregistered methods dropped."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from kdnb.methods import METHODS, load_plugin
from kdnb.study import Params, Study, transfer_key, transfer_path, transfer_settings, transfer_sources

PARAM_KEYS = tuple(f.name for f in dataclasses.fields(Params))


def params_from(ns: Mapping[str, Any]) -> tuple[Params, list[str]]:
    """Params from a notebook's variables (its parameters cell); methods not registered are dropped.

    Returns the Params and the dropped method names, which a page lists as not run.
    """
    d = copy.deepcopy({k: ns[k] for k in PARAM_KEYS if k in ns})
    for path in [d["plugins"]] if isinstance(d.get("plugins"), str) else d.get("plugins") or []:
        load_plugin(path)  # registers the user's methods before the filter below (book/add-method.md)
    if "methods" not in d:  # the default grid's methods
        return Params.from_dict(d), []
    methods = list(d["methods"] or [])
    d["methods"] = [m for m in methods if m in METHODS]
    return Params.from_dict(d), [m for m in methods if m not in METHODS]


def load_params_file(path: str | Path) -> tuple[Params, list[str]]:
    """A params YAML file read like a notebook's parameters (unregistered methods dropped)."""
    d = yaml.safe_load(Path(path).read_text()) or {}
    return params_from(d)


def load_grids(params_dir: str | Path, sections: Sequence[str], companions_only: bool = False,
               **overrides: Any) -> list[Params]:
    """The grids of ``sections`` in a profile's params folder (``section_files``), with ``overrides``
    (store, device, data_root: fields that do not change a run) applied."""
    files = [f for s in sections for f in section_files(params_dir, s, companions_only)]
    return [dataclasses.replace(load_params_file(f)[0], **overrides) for f in files]


def section_files(params_dir: str | Path, section: str, companions_only: bool = False) -> list[Path]:
    """``<section>.yaml`` and its companions ``<section>_*.yaml`` (e.g. the CIFAR-100 grid of Table IV)."""
    d = Path(params_dir)
    main = [d / f"{section}.yaml"] if (d / f"{section}.yaml").is_file() and not companions_only else []
    return main + sorted(d.glob(f"{section}_*.yaml"))


def stored_transfer_path(p: Params, runs: pd.DataFrame, student: str) -> Path | None:
    """The stored Fig. 1 record of ``student``'s finished runs in ``runs`` under ``p``'s settings, None if absent."""
    ids, teacher = transfer_sources(runs, student)
    path = transfer_path(p.store, transfer_key(ids, teacher, transfer_settings(p), p))
    return path if ids and path.is_file() else None


def transfer_seeds(p: Params, seeds: Sequence[int]) -> list[int]:
    """The longest prefix of ``seeds`` whose transfer matrix the store holds for every student of ``p``'s grid (a
    store in progress holds its complete seeds' matrix while the next seed trains); [] when none."""
    for k in range(len(seeds), 0, -1):
        q = dataclasses.replace(p, seeds=list(seeds[:k]))
        runs = Study(q).results()
        if all(stored_transfer_path(q, runs, s) for s in q.students):
            return list(seeds[:k])
    return []
