"""The ``kdnb`` command: train one run, run a study grid, benchmark the loop.

``kdnb book`` is added by the report layer (``kdnb.report.cli``, the installed entry point), so the
engine never imports it. Bad input exits with status 2 and one line naming the bad value and the
valid choices.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Callable
from typing import Any

from kdnb.config import ConfigError, RunConfig

EXIT_USAGE = 2
# RunConfig fields that `kdnb train` takes as flags (--batch-size for batch_size), by type
RUN_FLAGS = {str: ("method", "student", "teacher", "dataset", "precision"), float: ("noise", "imbalance"),
             int: ("seed", "epochs", "batch_size", "train_per_class", "test_per_class")}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, no usage dump
        print(f"kdnb: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


# A subcommand: its help, a function that adds its arguments, and its handler.
Command = tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]


def _parser(extra: dict[str, Command]) -> argparse.ArgumentParser:
    p = _Parser(prog="kdnb", description="Knowledge Distillation Beyond Model Compression, re-run.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, add, help_ in (("train", _train_parser, "train one run (and its teacher when missing)"),
                             ("study", _study_parser, "train what a params file's grid lacks in the store")):
        add(c := sub.add_parser(name, help=help_))
        c.add_argument("--no-progress", action="store_true")
        c.add_argument("--allow-emulated-bf16", action="store_true", help="train in bf16 on a CPU without native bf16")
        c.add_argument("--plugin", action="append", default=[], metavar="FILE",
                       help="a file with your own method, loaded before anything else (book/add-method.md)")
    bench = sub.add_parser("bench", help="the kdnb loop against a conventional loop, side by side")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.add_argument("--device", default="auto")
    bench.add_argument("--steps", type=int)
    bench.add_argument("--pairs", nargs="+")
    for name, (help_, add_arguments, _) in extra.items():
        add_arguments(sub.add_parser(name, help=help_))
    return p


def _train_parser(t: argparse.ArgumentParser) -> None:
    t.add_argument("config", nargs="?", help="YAML file with RunConfig fields (flags override it)")
    for type_, names in RUN_FLAGS.items():
        for name in names:
            t.add_argument("--" + name.replace("_", "-"), type=type_)
    t.add_argument("--teacher-run", help="run id of the teacher (default: found or trained in the store)")
    t.add_argument("--teacher-epochs", type=int, help="epochs of the teacher if it must be trained")
    t.add_argument("--teacher-seeds", type=int, nargs="+", default=[0])
    t.add_argument("--store", default="store")
    t.add_argument("--device", default="auto")
    t.add_argument("--data-root")


def _study_parser(s: argparse.ArgumentParser) -> None:
    s.add_argument("params", help="params/<profile>/<section>.yaml")
    s.add_argument("--store", help="store directory (overrides the params file)")
    s.add_argument("--device", help="device (overrides the params file)")
    s.add_argument("--status", action="store_true", help="show what is done, running, failed and missing")
    s.add_argument("--no-train", action="store_true", help="refuse to train; fail naming the missing runs")
    s.add_argument("--executor", choices=["local", "slurm"], help="where the runs execute (default: params file)")
    s.add_argument("--workers", type=int, help="processes or Slurm array tasks working on the grid together")
    s.add_argument("--students", nargs="+", help="only these students (one cell of a table: with --methods, --seeds)")
    s.add_argument("--methods", nargs="+", help="only these methods")
    s.add_argument("--seeds", type=int, nargs="+", help="only these student seeds")
    s.add_argument("--retry-failed", action="store_true", help="train failed runs again")
    s.add_argument("--retrain-stale", action="store_true",
                   help="retrain runs recorded under an older numerics revision (default: keep them)")


def _train(a: argparse.Namespace) -> int:
    from kdnb.store import Store
    from kdnb.study import Params, Study, check_bf16, read_yaml
    from kdnb.train import train_run

    d = read_yaml(a.config, "config file") if a.config else {}
    flags = [*(n for names in RUN_FLAGS.values() for n in names), "teacher_run"]
    d.update({k: getattr(a, k) for k in flags if getattr(a, k) is not None})
    cfg = RunConfig.from_dict(d)
    store = Store(a.store)
    if store.done(cfg.run_id) is None:
        check_bf16(cfg.precision, a.device, a.allow_emulated_bf16)
    if cfg.teacher is not None and cfg.teacher_run is None:
        data = {k: v for k, v in dataclasses.asdict(cfg.data).items() if k in Params.__dataclass_fields__}
        study = Study(Params(store=a.store, students=[cfg.student], teachers={cfg.student: cfg.teacher},
                             methods=[cfg.method], seeds=[cfg.seed], teacher_seeds=a.teacher_seeds, epochs=cfg.epochs,
                             teacher_epochs=a.teacher_epochs, batch_size=cfg.batch_size, precision=cfg.precision,
                             device=a.device, data_root=a.data_root,
                             **{**data, "noise": [data["noise"]], "imbalance": [data["imbalance"]]}))
        cond = study.conditions[0]
        for c in cond.teachers[cfg.teacher]:
            train_run(c, store, a.device, not a.no_progress, a.data_root)
        cfg = cfg.replace(teacher_run=study.best_teacher(cond, cfg.teacher))
    rec = train_run(cfg, store, a.device, not a.no_progress, a.data_root)
    if rec["status"] != "done":
        print(f"kdnb: run {rec['run_id']} failed: {rec.get('error')}", file=sys.stderr)
        return 1
    print(f"{rec['run_id']}  {cfg.method} {cfg.student} seed {cfg.seed}: final {rec['final_acc']:.2f}%  "
          f"best {rec['best_acc']:.2f}%  ({rec['wall_s']:.0f} s)")
    return 0


def _study(a: argparse.Namespace) -> int:
    from kdnb.study import Study, dispatch, load_params

    params = load_params(a.params, store=a.store, device=a.device, executor=a.executor, workers=a.workers,
                         students=a.students, methods=a.methods, seeds=a.seeds)
    params.plugins += a.plugin  # for the workers of dispatch
    study = Study(params)
    if a.status:
        st = study.status()
        counts = st.groupby("state").size().to_dict()
        print(st.drop(columns=["run_id"]).to_string(index=False))
        print("  ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
        if left := _time_left_text(study.time_left(st)):
            print(left)
        return 0
    if not a.no_train and (params.executor != "local" or params.workers > 1):
        return dispatch(params, allow_emulated_bf16=a.allow_emulated_bf16, retry_failed=a.retry_failed,
                        retrain_stale=a.retrain_stale)
    df = study.run(train=not a.no_train, progress=not a.no_progress, retry_failed=a.retry_failed,
                   retrain_stale=a.retrain_stale, allow_emulated_bf16=a.allow_emulated_bf16)
    cols = ["role", "method", "student", "seed", "noise", "imbalance", "final_acc", "best_acc", "wall_s"]
    print(df[[c for c in cols if c in df]].to_string(index=False))
    return 0


def _time_left_text(left: dict[str, Any]) -> str:
    """``Study.time_left`` in one line (empty when nothing is left to train)."""
    if not left["runs"] and not left["untimed"]:
        return ""
    from kdnb.study import duration

    text = (f"left to train: about {duration(left['seconds'])} of one process for {left['runs']} run"
            f"{'' if left['runs'] == 1 else 's'} (the median wall time of this grid's finished runs of the same "
            "method, student and condition, on the machines that made them; runs under way counted whole)")
    if left["untimed"]:
        text += f"; {left['untimed']} more with no finished run to time them by"
    return text


def _bench(a: argparse.Namespace) -> int:
    from kdnb.bench import main as bench_main

    return bench_main(json_out=a.json, device=a.device, steps=a.steps, pairs=a.pairs)


def main(argv: list[str] | None = None, extra: dict[str, Command] | None = None) -> int:
    """Run the command line; ``extra`` adds subcommands (the report layer adds ``book``)."""
    extra = extra or {}
    try:
        args = _parser(extra).parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a usage error (2, already printed in one line)
        return int(exit_.code or 0)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    from kdnb.data import DataNotFound
    from kdnb.methods import load_plugin
    from kdnb.store import CorruptRecord
    from kdnb.study import MissingRuns, TeacherFailed

    handlers = {"train": _train, "study": _study, "bench": _bench, **{k: v[2] for k, v in extra.items()}}
    try:
        for path in getattr(args, "plugin", []):  # first: a params file may name their methods
            load_plugin(path)
        return handlers[args.command](args)
    except (ConfigError, DataNotFound, MissingRuns) as err:
        print(f"kdnb: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (TeacherFailed, CorruptRecord) as err:  # CorruptRecord: e.g. a teacher whose weights are absent
        print(f"kdnb: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # disk full, unwritable store: one line, never a traceback
        where = f": {err.filename}" if err.filename else ""
        print(f"kdnb: error: {err.strerror or err}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("kdnb: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
