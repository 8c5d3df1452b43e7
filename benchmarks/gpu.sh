#!/usr/bin/env bash
# The whole GPU measurement of perf-notes §8 in one script, within 10 minutes on one H100. Parts, in order,
# each with a time limit (s) inside a budget of 580 s for all of them:
#   env          45   device, driver, clocks, versions
#   gate         45   fused step == separate steps on the GPU (fp32 with TF32 off, fp64)          (§8 gate 1)
#   bench_resnet 190  kdnb bench --json, ResNet-8 <- ResNet-26: conventional, kdnb fp32, bf16 +
#                     channels_last, compiled (train.py's default mode; reduce-overhead + compiled
#                     optimizer), fused N = 1, 5, 10                                             (§8 C0, G0-G4)
#   parity       150  bf16 vs fp32: 15 epochs, 1000/class, 3 seeds, baseline + Hinton, R8 <- R26 (§8 gate 3)
#   bench_wrn    210  the same bench for WRN-16-2 <- WRN-40-2; then both merged into bench.json
#   paper        rest paper-protocol cells of the ResNet-8 column (fp32, no TF32), resumed from
#                     results/paper: the ResNet-26 teachers first, then baseline and Hinton students;
#                     records, weights and checkpoints in $OUT/paper, ready to copy into results/paper
#   profile      90   top kernels, kernel launches per step of the fastest kdnb variant (ResNet pair)
#   profile_conventional 45, procs 120 (K concurrent processes of that variant, §8 G4p), fusedc 150
#                     (fused N=5 under torch.compile): only with the time that is left
# Every part writes into $OUT as it goes (the bench after every round), so a part that fails or is cut
# leaves its partial results and the others'. A killed paper run keeps its last epoch's checkpoint and
# resumes from it wherever the store goes next. Usage, from the repository root or anywhere:
#   KDNB_DATA=/folder/with/cifar10.npz bash benchmarks/gpu.sh [OUT]     (OUT default ./gpu-results)
#   KDNB_GPU_PARTS="paper" bash benchmarks/gpu.sh [OUT]                 (only the named parts)
set -u
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-./gpu-results}}
mkdir -p "$OUT"
BUDGET=${KDNB_GPU_BUDGET:-580}   # seconds for all parts together
PROCS=${KDNB_GPU_PROCS:-4}
PY=${PYTHON:-python3}
DEV=${KDNB_GPU_DEVICE:-cuda}                 # cpu: a dry run of this script, with the two settings below
BENCH_ARGS=${KDNB_GPU_BENCH_ARGS:-}          # e.g. "--steps 1 --repeats 1 --variants conventional kdnb"
PARITY_ARGS=${KDNB_GPU_PARITY_ARGS:-}        # e.g. "--epochs 1 --seeds 2 --dataset synthetic"
PARTS=${KDNB_GPU_PARTS:-}                    # empty: every part
PAPER_PARAMS=${KDNB_GPU_PAPER_PARAMS:-params/paper/generalization.yaml}
PAPER_FROM=${KDNB_GPU_PAPER_FROM:-results/paper}   # the committed paper store, resumed
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export TORCHINDUCTOR_CACHE_DIR=${TORCHINDUCTOR_CACHE_DIR:-/tmp/kdnb-inductor}   # shared by the procs part
SUMMARY="$OUT/summary.txt"
: > "$SUMMARY"

note() { echo "$*" | tee -a "$SUMMARY"; }

part() {  # part NAME MAX_SECONDS COMMAND...: stdout to NAME.txt, stderr to NAME.log
  local name=$1 max=$2; shift 2
  if [ -n "$PARTS" ] && [[ " $PARTS " != *" $name "* ]]; then return 1; fi
  local left=$(( BUDGET - SECONDS ))
  (( left < max )) && max=$left
  if (( max < 20 )); then note "skip $name: ${left}s of the budget left"; return 1; fi
  note "== $name (limit ${max}s, at ${SECONDS}s)"
  local t0=$SECONDS rc
  timeout -k 10 "$max" "$@" > "$OUT/$name.txt" 2> "$OUT/$name.log"; rc=$?
  note "   $name: exit $rc after $(( SECONDS - t0 ))s"
  return $rc
}

# --- set-up: torch with CUDA is assumed; kdnb runs from this checkout (no install needed, no network) ---------
if [ "$DEV" = cuda ] && ! $PY -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
  note "torch with CUDA not importable: installing torch==2.14.1 torchvision==0.29.1"
  $PY -m pip install -q torch==2.14.1 torchvision==0.29.1 >> "$OUT/setup.log" 2>&1
fi
if ! $PY -c "import kdnb.train, kdnb.bench" 2>> "$OUT/setup.log"; then
  note "kdnb not importable from the checkout: pip install -e ."
  $PY -m pip install -q -e . >> "$OUT/setup.log" 2>&1 || $PY -m pip install -q --no-deps -e . >> "$OUT/setup.log" 2>&1
fi
[ -n "${KDNB_DATA:-}" ] || note "KDNB_DATA is not set: the bench uses random images, the parity part will fail"

part env 45 bash -c "nvidia-smi || true; nvidia-smi -q -d CLOCK | head -40; lscpu | head -20; $PY -c '
import torch, platform, os
print(\"torch\", torch.__version__, \"cuda\", torch.version.cuda, \"cudnn\", torch.backends.cudnn.version())
print(\"device\", torch.cuda.get_device_name(), \"python\", platform.python_version(), \"cpus\", os.cpu_count())'"

part gate 45 $PY -c "
import json, torch
from benchmarks.fused import check_equivalence
torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
cases = {'fp32_resnet8': ('resnet8', 'resnet26', torch.float32, 1),
         'fp32_wrn16_2': ('wrn16_2', 'wrn40_2', torch.float32, 1),
         'fp64_resnet8': ('resnet8', 'resnet26', torch.float64, 2)}
r = {}
for name, (s, t, dtype, steps) in cases.items():  # written after each case
    r[name] = check_equivalence(s, t, n=3, dtype=dtype, device='$DEV', steps=steps)
    r['pass'] = all(v['grad_rel'] < 1e-3 and v['bn_abs'] < 1e-4 for k, v in r.items() if k != 'pass')
    open('$OUT/gate.json', 'w').write(json.dumps(r, indent=1))
print(json.dumps(r, indent=1))"

# one process per pair, so that a slow compile of the second pair cannot lose the first one's numbers
part bench_resnet 190 $PY -m kdnb.bench --json --device $DEV --pairs resnet8:resnet26 $BENCH_ARGS \
  --out "$OUT/bench-resnet.json"

part parity 150 $PY benchmarks/parity.py --device $DEV $PARITY_ARGS --out "$OUT/parity.json"
tail -n 3 "$OUT/parity.txt" | tee -a "$SUMMARY"


part bench_wrn 210 $PY -m kdnb.bench --json --device $DEV --pairs wrn16_2:wrn40_2 $BENCH_ARGS \
  --out "$OUT/bench-wrn.json"
$PY - "$OUT" > "$OUT/bench-table.txt" 2>> "$OUT/bench.log" <<'PYEOF'
import json, pathlib, sys
from benchmarks.bench import _grid, _summary, table
out = pathlib.Path(sys.argv[1])
parts = [json.loads(f.read_text()) for f in (out / "bench-resnet.json", out / "bench-wrn.json") if f.exists()]
if parts:
    merged = {**parts[0], "pairs": {k: v for r in parts for k, v in r["pairs"].items()}}
    for pr in merged["pairs"].values():  # a part killed by its time limit left partial rounds only
        _summary(pr)
    _grid(merged)
    (out / "bench.json").write_text(json.dumps(merged, indent=1))
    print(table(merged))
PYEOF
cat "$OUT/bench-table.txt" >> "$SUMMARY"

# Paper-protocol cells with the rest of the budget: the study trains the teachers first, then the students
# in grid order (baseline seeds 0-4, then Hinton once the best of the five teacher seeds is known).
mkdir -p "$OUT/paper"
[ -d "$PAPER_FROM/runs" ] && cp -r "$PAPER_FROM/." "$OUT/paper/"
rm -f "$OUT"/paper/runs/*/lock
part paper $(( BUDGET - SECONDS )) $PY -m kdnb.cli study "$PAPER_PARAMS" --students resnet8 --methods baseline hinton \
  --store "$OUT/paper" --device $DEV --no-progress
$PY -m kdnb.cli study "$PAPER_PARAMS" --students resnet8 --methods baseline hinton --store "$OUT/paper" --status \
  2>&1 | tail -n 12 | tee -a "$SUMMARY"
rm -f "$OUT"/paper/runs/*/lock

BEST=$($PY -c "
import json
r = json.load(open('$OUT/bench.json'))['pairs']['resnet8<-resnet26']
v = {k: x['images_per_s'] for k, x in r['variants'].items() if 'images_per_s' in x and k.startswith('kdnb')}
print(max(v, key=v.get))" 2>/dev/null || echo kdnb_bf16_cl)
part profile 90 $PY -m kdnb.bench --profile "$BEST" --pairs resnet8:resnet26 --device $DEV --steps 20 \
  --out "$OUT/profile.json"
part profile_conventional 45 $PY -m kdnb.bench --profile conventional --pairs resnet8:resnet26 --device $DEV \
  --steps 20 --out "$OUT/profile-conventional.json"

# G4p: PROCS processes of the single-run step at once (their compile hits the inductor cache of the bench part)
rm -rf "$OUT/procs" /tmp/kdnb-barrier && mkdir -p "$OUT/procs"
part procs 120 bash -c "
for i in \$(seq $PROCS); do
  $PY -m kdnb.bench --json --device $DEV --pairs resnet8:resnet26 --steps 100 $BENCH_ARGS --variants $BEST \
    --barrier /tmp/kdnb-barrier --procs $PROCS --out $OUT/procs/\$i.json > /dev/null 2> $OUT/procs/\$i.log &
done
wait
$PY -c \"
import glob, json
rs = [json.load(open(f)) for f in sorted(glob.glob('$OUT/procs/*.json'))]
ips = [x for r in rs for p in r['pairs'].values() for x in [p['variants']['$BEST'].get('images_per_s')] if x]
print(json.dumps({'variant': '$BEST', 'procs': $PROCS, 'finished': len(ips), 'images_per_s_each': ips,
                  'images_per_s_total': sum(ips)}))\""

part fusedc 150 $PY -m kdnb.bench --json --device $DEV --pairs resnet8:resnet26 --steps 100 \
  $BENCH_ARGS --variants fused5_compile --out "$OUT/fused-compile.json"

note "total ${SECONDS}s; results in $OUT"
