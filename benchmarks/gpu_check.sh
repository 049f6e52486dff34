#!/usr/bin/env bash
# The CUDA paths in one run, for whenever a GPU machine is lent (CI never has one; issue 21):
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]        # default OUT_DIR: runs/gpu_check; sized for 10 minutes, not yet timed
#
# 1. training with bf16 autocast (--amp) for every method, a few hundred images, on cuda;
# 2. evaluation of each on cuda (every DiDiCM sampler, the Diffusion Classifier with elimination, early stopping
#    and a hybrid, DC Zero);
# 3. torchrun with nccl (every GPU of the machine) for training and evaluation, and that its evaluation equals the
#    single-process one;
# 4. the precision / torch.compile table on cuda and the frontier at GPU batch sizes (a subset of readouts).
#
# It fails loudly, it does not skip: no CUDA, a failed command or a mismatch ends it with a non-zero status and the
# line that failed. Tables go to OUT_DIR/*.md, ready to paste into docs/performance.md (with this command, the GPU
# and the date at their top).
set -euo pipefail
trap 'echo "gpu_check: FAILED at line $LINENO: $BASH_COMMAND" >&2' ERR

OUT="${1:-runs/gpu_check}"
PY="${PYTHON:-.venv/bin/python}"
mkdir -p "$OUT"

"$PY" - <<'EOF'
import sys, torch
if not torch.cuda.is_available():
    sys.exit("gpu_check: CUDA is not available (torch %s); this check needs a GPU and does not skip" % torch.__version__)
print(f"gpu_check: {torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
EOF
GPUS=$("$PY" -c "import torch; print(torch.cuda.device_count())")
DATA=(--data mnist5k --train-limit 1000 --img-size 32)
D=(--device cuda)
diffcls() { "$PY" -m diffcls.cli "$@"; }
{
  echo "# gpu_check, $(date -u +%F), $("$PY" -c 'import torch; print(torch.cuda.get_device_name(0))')"
  echo
  echo "\`bash benchmarks/gpu_check.sh $OUT\`"
  echo
} > "$OUT/summary.md"
log() { echo "$*" | tee -a "$OUT/summary.md"; }

# 1. training, bf16 autocast
diffcls train "${DATA[@]}" "${D[@]}" --amp --method standard --model didirn_small --epochs 2 -b 128 --output "$OUT/twin"
diffcls train "${DATA[@]}" "${D[@]}" --amp --method didicm --model didirn_small --epochs 2 -b 128 --output "$OUT/didicm"
diffcls train "${DATA[@]}" "${D[@]}" --amp --method didicm --model didirn_small_late1 --epochs 2 -b 128 \
  --output "$OUT/didicm_late"
diffcls train "${DATA[@]}" "${D[@]}" --amp --method standard --model resnet_small --epochs 2 -b 128 --output "$OUT/plain"
diffcls train --data mnist5k --train-limit 1000 --img-size 16 "${D[@]}" --amp --method ddpm --model unet_small \
  --epochs 2 -b 64 --val-images 20 --output "$OUT/ddpm"
R=(--data mnist5k --img-size 16 --val-holdout 100 "${D[@]}" --amp)
diffcls train "${R[@]}" --method repcond-pretrain --model dit_small --r-tokens 4 --epochs 1 --output "$OUT/pre"
diffcls train "${R[@]}" --method repcond-tune --pretrained "$OUT/pre" --data-ratio 0.1 --epochs 2 --output "$OUT/tune"
log "training (bf16 autocast on cuda): standard, didicm, didicm late1, plain ResNet, ddpm, repcond-pretrain, repcond-tune: ok"

# 2. evaluation on cuda
E=(--data mnist5k --limit 500 "${D[@]}")
diffcls eval --checkpoint "$OUT/twin" "${E[@]}" --ood-data noise --calibrate --results-file "$OUT/eval-twin.json"
for s in "cp --steps 8" "cl --steps 4 --chains 10" "onepass"; do
  name="eval-didicm-${s%% *}"
  diffcls eval --checkpoint "$OUT/didicm" "${E[@]}" --sampler $s --results-file "$OUT/$name.json"
done
diffcls eval --checkpoint "$OUT/didicm_late" "${E[@]}" --sampler cp --steps 4 --results-file "$OUT/eval-late.json"
DC=(--checkpoint "$OUT/ddpm" --data mnist5k --limit 100 "${D[@]}" --batch-size 1024)
diffcls eval "${DC[@]}" --n-samples 10,50 --to-keep 3,1 --results-file "$OUT/eval-dc.json"
diffcls eval "${DC[@]}" --schedule flat-50 --early-stop 0.01 --results-file "$OUT/eval-dc-early.json"
diffcls eval "${DC[@]}" --schedule flat-50 --proposer "$OUT/twin" --proposer-top-k 2 --results-file "$OUT/eval-hybrid.json"
diffcls eval --checkpoint "$OUT/tune" --data mnist5k --limit 200 "${D[@]}" --timesteps 500 --noise-draws 4 \
  --results-file "$OUT/eval-dcz.json"
log "evaluation on cuda: twin (+OOD, calibration), DiDiCM CP/CL/one-pass, late1, DC adaptive/early stop/hybrid, DC Zero: ok"

# 3. torchrun with nccl: training and an evaluation that must equal the single-process one
TR=("$PY" -m torch.distributed.run --standalone --nproc_per_node="$GPUS" -m diffcls.cli)
"${TR[@]}" train "${DATA[@]}" --device cuda --amp --method didicm --model didirn_small --epochs 1 -b 64 \
  --output "$OUT/didicm_ddp"
"${TR[@]}" eval --checkpoint "$OUT/didicm" "${E[@]}" --sampler cp --steps 8 --results-file "$OUT/eval-didicm-ddp.json"
"$PY" - "$OUT" <<'EOF'
import json, sys
out = sys.argv[1]
one, many = (json.load(open(f"{out}/{n}.json")) for n in ("eval-didicm-cp", "eval-didicm-ddp"))
if abs(one["top1"] - many["top1"]) > 1e-6:
    sys.exit(f"gpu_check: torchrun evaluation differs: top-1 {many['top1']} against {one['top1']} in one process")
print("torchrun evaluation equals the single-process one:", one["top1"])
EOF
log "torchrun (nccl, $GPUS processes): training and evaluation ok, evaluation equal to one process"

# 4. tables: precision / compile on cuda, the frontier at GPU batch sizes
"$PY" benchmarks/precision_compile.py --device cuda --repeats 20 > "$OUT/precision_compile.md"
"$PY" benchmarks/frontier.py --twin "$OUT/twin" --plain "$OUT/plain" --didicm "$OUT/didicm" \
  --didicm-late "$OUT/didicm_late" --ddpm "$OUT/ddpm" --limit 500 --dc-batch 2048 --output "$OUT/frontier" \
  > "$OUT/frontier.md"
log "tables: $OUT/precision_compile.md, $OUT/frontier.md (models trained for 2 epochs: costs, not accuracies)"
echo "gpu_check: all passed"
