"""bf16 against fp32 on short runs of ``kdnb.train.train_run`` (perf-notes §7.6, §8 correctness gate 3).

One fp32 teacher, then baseline and Hinton students over a few seeds in each precision (bf16 runs also use
channels_last, as the fast variant does). A method passes when the two precisions' mean accuracies differ by
no more than the seed spread (the larger sample standard deviation); the 2σ margin of §8 is reported too.

    python benchmarks/parity.py --out parity.json      # CIFAR-10 from $KDNB_DATA (cifar10_small.npz is enough)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from kdnb.config import RunConfig
from kdnb.store import Store
from kdnb.train import train_run


def summarise(runs: list[dict]) -> dict:
    out = {}
    for method in sorted({r["method"] for r in runs}):
        acc = {p: [r["final_acc"] for r in runs if r["method"] == method and r["precision"] == p]
               for p in ("fp32", "bf16")}
        if min(len(a) for a in acc.values()) < 2:
            continue
        mean = {p: statistics.mean(a) for p, a in acc.items()}
        sd = {p: statistics.stdev(a) for p, a in acc.items()}
        diff, spread = mean["bf16"] - mean["fp32"], max(sd.values())
        out[method] = {"fp32": acc["fp32"], "bf16": acc["bf16"], "mean_fp32": mean["fp32"], "mean_bf16": mean["bf16"],
                       "sd_fp32": sd["fp32"], "sd_bf16": sd["bf16"], "diff": diff, "within_spread": abs(diff) <= spread,
                       "within_2sd": abs(diff) <= 2 * spread}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--student", default="resnet8")
    ap.add_argument("--teacher", default="resnet26")
    ap.add_argument("--methods", nargs="+", default=["baseline", "hinton"])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--train-per-class", type=int, default=1000)
    ap.add_argument("--test-per-class", type=int, default=200)
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--store", help="run store (default: a temporary folder)")
    ap.add_argument("--out", help="JSON written after every run")
    a = ap.parse_args(argv)

    store = Store(a.store or tempfile.mkdtemp(prefix="kdnb-parity-"))
    data = {"dataset": a.dataset, "train_per_class": a.train_per_class, "test_per_class": a.test_per_class}
    common = {"student": a.student, "epochs": a.epochs, "data": data}
    result: dict = {"config": vars(a), "runs": []}

    def write() -> None:
        result["summary"] = summarise(result["runs"])
        if a.out:
            Path(a.out).write_text(json.dumps(result, indent=1))

    t0 = time.perf_counter()
    teacher = None
    if any(m != "baseline" for m in a.methods):
        tcfg = RunConfig.from_dict({"method": "baseline", "student": a.teacher, "epochs": a.epochs, "data": data})
        trec = train_run(tcfg, store, a.device, progress=False)
        teacher = trec["run_id"]
        result["teacher"] = {"run_id": teacher, "final_acc": trec["final_acc"], "wall_s": trec["wall_s"]}
        write()
    for seed in range(a.seeds):  # seed-major: an interrupted run still leaves pairs of precisions
        for method in a.methods:
            for precision in ("fp32", "bf16"):
                cfg = RunConfig.from_dict({**common, "method": method, "seed": seed, "precision": precision,
                                           "channels_last": precision == "bf16",
                                           **({"teacher": a.teacher, "teacher_run": teacher}
                                              if method != "baseline" else {})})
                rec = train_run(cfg, store, a.device, progress=False)
                result["runs"].append({"method": method, "seed": seed, "precision": precision,
                                       "final_acc": rec.get("final_acc"), "wall_s": rec.get("wall_s"),
                                       "device": rec.get("device")})
                print(f"{method:9s} seed {seed} {precision}: {rec.get('final_acc')} ({rec.get('wall_s', 0):.1f} s)",
                      flush=True)
                write()
    result["total_s"] = time.perf_counter() - t0
    write()
    for method, s in result["summary"].items():
        print(f"{method}: fp32 {s['mean_fp32']:.2f}±{s['sd_fp32']:.2f}  bf16 {s['mean_bf16']:.2f}±{s['sd_bf16']:.2f}  "
              f"diff {s['diff']:+.2f}  within spread: {s['within_spread']}  within 2sd: {s['within_2sd']}")
    return 0 if all(s["within_2sd"] for s in result["summary"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
