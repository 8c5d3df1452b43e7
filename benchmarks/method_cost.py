"""CPU cost of each distillation method relative to Hinton: one epoch of each stage, and a whole run.

Runs ``kdnb.train``'s set-up (``build_method``) and step (``train_step``: the method's step, the
metrics on the device) over one epoch of the same data for every method, ResNet-8 student,
ResNet-26 teacher, without the per-epoch evaluation. Each stage runs at its own recipe's batch size (BSS 256, ONE 128,
the others ``--batch-size``). A whole run weighs each stage's per-epoch cost by its length in the
paper's 200-epoch protocol: FitNet/FSP 100 stage-1 + 200 Hinton epochs, ONE 300, BSS 200 of which
the first 149 attack (β_e > 0, protocol § BSS) and the rest do not.

The teacher is randomly initialised (its accuracy does not change the FLOPs), so few samples would
be jointly correct; by default the BSS attack is therefore given its full load, ``attack_size``
samples per batch, which is what a real run attacks once the models are reasonably trained
(``--bss-load natural`` keeps the real selection).

    KDNB_DATA=../shared/data python benchmarks/method_cost.py [--per-class 100] [--epochs 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from kdnb import attacks, losses
from kdnb.config import RunConfig
from kdnb.data import DeviceData, make_splits
from kdnb.methods import METHODS, Method, Stage
from kdnb.models import build
from kdnb.train import Metrics, build_method, train_step

CPU = torch.device("cpu")


def epoch_seconds(method: Method, stage: Stage, data: DeviceData, epoch: int) -> float:
    """Seconds for one epoch of ``stage`` (the loop of kdnb.train without evaluation)."""
    opts = method.optimizers(stage)
    for opt in opts:
        for pg in opt.param_groups:
            pg["lr"] = stage.lr_at(epoch)
    method.train()
    gen = torch.Generator().manual_seed(0)  # the same batches for every method
    metrics = Metrics(CPU)
    t0 = time.perf_counter()
    for x, y in data.batches(stage.batch_size, gen):
        train_step(method, stage, epoch, opts, x, y, metrics)
    metrics.read()
    return time.perf_counter() - t0


def phases(method: Method) -> list[tuple[str, Stage, int, int]]:
    """(label, stage, epoch index to time, epochs of this kind in a 200-epoch run) for each phase."""
    out = []
    for stage in method.stages():
        if method.name == "bss":  # the attack runs while β_e > 0 (protocol § BSS)
            attack = sum(losses.bss_weights(e, stage.epochs)[1] > 0 for e in range(1, stage.epochs + 1))
            out += [("attack", stage, 0, attack), ("β=0", stage, stage.epochs - 1, stage.epochs - attack)]
        else:
            out.append((stage.name, stage, 0, stage.epochs))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="cifar10", choices=["cifar10", "synthetic"])
    ap.add_argument("--per-class", type=int, default=100, help="training images per class")
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per phase, interleaved (the minimum is kept)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--student", default="resnet8")
    ap.add_argument("--teacher", default="resnet26")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bss-load", choices=["full", "natural"], default="full")
    ap.add_argument("--methods", nargs="*", default=list(METHODS))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    base = {"student": args.student, "epochs": 200, "batch_size": args.batch_size,
            "data": {"dataset": args.dataset, "train_per_class": args.per_class, "test_per_class": 1}}
    data = DeviceData(make_splits(RunConfig.from_dict(base).data)[0], CPU)
    if args.bss_load == "full":
        attacks.bss_select = lambda t, s, y, attack_size=32: torch.arange(min(attack_size, len(y)))

    todo = []
    for name in args.methods:
        cfg = RunConfig.from_dict({**base, "method": name, "teacher": args.teacher})
        torch.manual_seed(0)
        teacher = build(args.teacher, cfg.num_classes).eval().requires_grad_(False) if cfg.teacher else None
        method = build_method(cfg, teacher, CPU)
        todo += [(name, method, *phase) for phase in phases(method)]
    best = [float("inf")] * len(todo)
    for r in range(args.epochs):  # rounds over all phases, so that load from elsewhere spreads over them
        for i, (name, method, label, stage, epoch, _) in enumerate(todo):
            best[i] = min(best[i], epoch_seconds(method, stage, data, epoch))
            print(f"  round {r + 1}: {name:9s} {label:9s} {best[i]:7.2f} s/epoch", flush=True)
    rows = [(name, label, stage.batch_size, secs, n)
            for (name, _, label, stage, _, n), secs in zip(todo, best, strict=True)]

    hinton = next(s for m, _, _, s, _ in rows if m == "hinton")
    run = {m: sum(s * n for mm, _, _, s, n in rows if mm == m) / (200 * hinton) for m, *_ in rows}
    print(f"\n{len(data)} images, {args.student} <- {args.teacher}, {args.threads} thread(s), "
          f"BSS attack load: {args.bss_load}")
    print(f"{'method':9s} {'phase':9s} {'batch':>5s} {'s/epoch':>8s} {'x hinton':>8s} {'epochs':>6s} {'run x':>6s}")
    for m, label, bs, secs, n in rows:
        first = label == next(lab for mm, lab, *_ in rows if mm == m)
        total = f"{run[m]:6.2f}" if first else ""
        print(f"{m:9s} {label:9s} {bs:5d} {secs:8.2f} {secs / hinton:8.2f} {n:6d} {total:>6s}")


if __name__ == "__main__":
    main()
