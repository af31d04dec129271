#!/usr/bin/env bash
# Recipe variants trained side by side on one GPU, on the standard synthetic corpus
# (dawnchorus synth --n-train 300 --n-test 200 --seed 1), plus GPU throughput numbers.
# Every variant trains fold 0 of 5 like cpu-small; predictions land in $OUT/<name>.csv
# (and window/frame tables in $OUT/<name>.parquet) for `dawnchorus evaluate`.
#
#   OUT=results bash benchmarks/gpu_recipe.sh          # on a machine with a CUDA GPU
#   SMALL=1 DEVICE=cpu OUT=/tmp/x bash benchmarks/gpu_recipe.sh   # a quick dry run of the script
set -u
OUT=${OUT:-bench_out}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
WORK=${WORK:-/tmp/dawnchorus_gpu}
mkdir -p "$OUT" "$WORK"
DC="$PY -m dawnchorus.cli"
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/timeline.txt"; }

if [ "${SMALL:-0}" = 1 ]; then
  DATA=$WORK/synth_small; N="--n-train 12 --n-test 4 --duration-s 10"; SHORT=1; LONG=3; CROPS=32; GPU_CROPS=16
else
  DATA=bench_data/synth_300_200_seed1; N="--n-train 300 --n-test 200"; SHORT=6; LONG=30; CROPS=2048; GPU_CROPS=4096
fi
COMMON=(--set train.device=$DEVICE --set train.num_workers=3 --set train.cache_dir=$WORK/cache32k)

log "start on $($PY -c 'import torch;print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")')"
[ -f "$DATA/train_tp.csv" ] || $DC synth --out "$DATA" $N --seed 1 --workers 0 > "$OUT/synth.log" 2>&1
log "corpus ready"
$DC cache warm --audio "$DATA/train" --cache "$WORK/cache32k" --sample-rate 32000 > /dev/null 2>&1
log "cache warm"

variant() {  # name, seconds allowed, then --set overrides
  local name=$1 limit=$2; shift 2
  local sets=(); for s in "$@"; do sets+=(--set "$s"); done
  timeout "$limit" $DC train --data "$DATA" --out "$WORK/runs/$name" --preset cpu-small "${COMMON[@]}" "${sets[@]}" \
    > "$OUT/$name.train.log" 2>&1
  predict "$name" "$name"
}
predict() {  # name of the result, run directory name (a run with pseudo rounds predicts with its last)
  $DC predict --run "$WORK/runs/$2" --audio "$DATA/test" --out "$OUT/$1.csv" --detections "$OUT/$1.parquet" --device $DEVICE \
    > "$OUT/$1.predict.log" 2>&1
  cp "$WORK/runs/$2/history.csv" "$OUT/$1.history.csv" 2>/dev/null
  log "$1 done: $($DC evaluate --truth $DATA/truth/test_labels.csv --pred $OUT/$1.csv 2>&1 | sed -n 2p)"
}
FRAME=(model.head=frame loss.frame_weight=1.0 infer.frame_step_s=0.5 infer.aggregate=max)

( sleep "${WATCHDOG_S:-540}"; log "watchdog: stopping what still runs"; pkill -f "dawnchorus.cli (train|predict)"; pkill -f gpu_recipe_pl ) &
WATCHDOG=$!
variant clip_long 270 train.epochs=$LONG sampling.crops_per_epoch=$CROPS train.average_best=3 &
variant frame_long_tponly 270 "${FRAME[@]}" loss.label_mode=tp_only train.epochs=$LONG sampling.crops_per_epoch=$CROPS train.average_best=3 &
variant frame_long_mixup 270 "${FRAME[@]}" augment.mixup_prob=0.5 augment.time_shift_fraction=0.25 train.epochs=$LONG sampling.crops_per_epoch=$CROPS train.average_best=3 &
(
  variant frame_long 240 "${FRAME[@]}" train.epochs=$LONG sampling.crops_per_epoch=$CROPS train.average_best=3
  timeout 150 $PY - "$WORK/runs/frame_long" gpu_recipe_pl "$DATA" "$DEVICE" > "$OUT/frame_long_pl.train.log" 2>&1 <<'EOF'
import dataclasses, sys
from dawnchorus.config import load_config
from dawnchorus.pseudo import train_pseudo_rounds
run, _, data, device = sys.argv[1:]
config = load_config(f"{run}/config.yaml")
config = dataclasses.replace(config, pseudo=dataclasses.replace(config.pseudo, epochs=max(2, config.train.epochs // 3)))
train_pseudo_rounds(run_dir=run, data_dir=data, rounds=1, audio_dir=f"{data}/test", config=config, progress=True)
EOF
  predict frame_long_pl frame_long
) &
(
  timeout 270 $DC train --data "$DATA" --out "$WORK/runs/gpu" --preset gpu --set train.device=$DEVICE --set train.num_workers=3 \
    --set train.train_folds=[0] --set train.epochs=$((LONG / 3)) --set sampling.crops_per_epoch=$GPU_CROPS \
    > "$OUT/gpu.train.log" 2>&1
  predict gpu gpu
) &
wait $(jobs -p | grep -v "^$WATCHDOG$")
log "variants done"
$PY benchmarks/train_throughput.py --preset gpu --device $DEVICE --steps 20 >> "$OUT/throughput.txt" 2>&1
$PY benchmarks/train_throughput.py --preset cpu-small --device $DEVICE --steps 20 >> "$OUT/throughput.txt" 2>&1
log "throughput done"
kill $WATCHDOG 2>/dev/null
tar czf "$OUT/results.tgz" -C "$OUT" --exclude results.tgz . 2>/dev/null
log "end"
