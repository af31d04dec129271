#!/usr/bin/env bash
# Recipe variants trained side by side on one GPU, on the standard synthetic corpus
# (dawnchorus synth --n-train 300 --n-test 200 --seed 1). Each variant is the cpu-small
# preset (fold 0 of 5) plus the overrides below, at the same crop budget a CPU run would
# use, so a GPU can answer in minutes what the CPU preset should be. Variants marked "+pl"
# add one pseudo-label round with the test audio. Predictions land in $OUT/<name>.csv (and
# window/frame tables in $OUT/<name>.parquet); score them with `dawnchorus evaluate`.
#
#   OUT=results bash benchmarks/gpu_recipe.sh                       # on a machine with a CUDA GPU
#   SMALL=1 DEVICE=cpu OUT=/tmp/x bash benchmarks/gpu_recipe.sh     # a quick dry run of the script
#
# SEED=2 uses the corpus of that seed instead of the standard one;
# VARIANTS_LIST="name|key=value key=value;name|..." replaces the list below; WATCHDOG_S stops the
# training still running after that many seconds (a stopped run keeps its latest best epoch,
# and its log says so; predictions still run, so leave them time: the end of four runs sharing
# an H100, out-of-fold scores and 200 test recordings each, took over a minute);
# THROUGHPUT=1 ends with the training-throughput benchmark of both presets; KEEP_RUNS=1 packs each
# trained run (config, calibration, out-of-fold tables, final weights) into $OUT/run_<name>.tgz
# before predicting, so that it can be predicted and post-processed elsewhere;
# PREDICT_TIMEOUT_S bounds each prediction.
set -u
OUT=${OUT:-bench_out}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
WORK=${WORK:-/tmp/dawnchorus_gpu}
EPOCHS=${EPOCHS:-6}
CROPS=${CROPS:-2048}
mkdir -p "$OUT" "$WORK"
DC="$PY -m dawnchorus.cli"
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUT/timeline.txt"; }

FRAME="model.head=frame loss.frame_weight=1.0 infer.frame_step_s=0.5 infer.aggregate=max"
VARIANTS=(
  "clip_tponly|loss.label_mode=tp_only"
  "frame_tponly+pl|$FRAME loss.label_mode=tp_only"
  "frame_masked+pl|$FRAME"
  "frame_masked_shift|$FRAME augment.time_shift_fraction=0.25"
)
if [ -n "${VARIANTS_LIST:-}" ]; then IFS=';' read -r -a VARIANTS <<< "${VARIANTS_LIST//\$FRAME/$FRAME}"; fi
if [ "${SMALL:-0}" = 1 ]; then
  DATA=$WORK/synth_small; N="--n-train 12 --n-test 4 --duration-s 10"; EPOCHS=1; CROPS=32
else
  DATA=bench_data/synth_300_200_seed${SEED:-1}; N="--n-train 300 --n-test 200"
fi

log "start on $($PY -c 'import torch;print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")')"
[ -f "$DATA/train_tp.csv" ] || $DC synth --out "$DATA" $N --seed "${SEED:-1}" --workers 0 > "$OUT/synth.log" 2>&1
log "corpus ready"
$DC cache warm --audio "$DATA/train" --cache "$WORK/cache32k" --sample-rate 32000 > /dev/null 2>&1
log "cache warm"
( sleep "${WATCHDOG_S:-540}"; log "watchdog: stopping what still runs"; pkill -f "dawnchorus.cli train" ) &
WATCHDOG=$!

run_variant() {  # "name|overrides"; a name ending in +pl adds a pseudo-label round
  local name=${1%%|*} overrides=${1#*|} pl=0
  [[ $name == *+pl ]] && pl=1 && name=${name%+pl}
  local sets=(--set train.device=$DEVICE --set train.num_workers=${WORKERS:-2} --set train.cache_dir=$WORK/cache32k
              --set train.epochs=$EPOCHS --set sampling.crops_per_epoch=$CROPS --set train.checkpoint_every_steps=1000
              --set pseudo.epochs=$(( (EPOCHS + 2) / 3 )))
  for s in $overrides; do sets+=(--set "$s"); done
  $DC train --data "$DATA" --out "$WORK/runs/$name" --preset cpu-small "${sets[@]}" > "$OUT/$name.train.log" 2>&1
  local fold=$WORK/runs/$name/fold0
  if [ ! -f "$fold/model.safetensors" ] && ls "$fold"/epoch_*.safetensors > /dev/null 2>&1; then
    cp "$(ls "$fold"/epoch_*.safetensors | tail -1)" "$fold/model.safetensors"  # stopped by the watchdog
    log "$name: stopped before its last epoch; predicting with $(ls "$fold"/epoch_*.safetensors | tail -1 | xargs basename)"
  fi
  if [ "${KEEP_RUNS:-0}" = 1 ]; then
    tar czf "$OUT/run_$name.tgz" -C "$WORK/runs" --exclude 'epoch_*' --exclude pseudo "$name" && log "$name: run packed"
  fi
  predict "$name" --round 0
  if [ $pl = 1 ]; then
    $DC pseudo --run "$WORK/runs/$name" --data "$DATA" --rounds 1 --audio "$DATA/test" > "$OUT/$name.pl.log" 2>&1
    predict "$name" --round 1
  fi
}
predict() {  # run name, --round N
  local out="$OUT/$1.round$3"
  timeout "${PREDICT_TIMEOUT_S:-600}" $DC predict --run "$WORK/runs/$1" --audio "$DATA/test" --out "$out.csv" --detections "$out.parquet" --device $DEVICE "$2" "$3" \
    > "$out.predict.log" 2>&1
  cp "$WORK/runs/$1/history.csv" "$OUT/$1.history.csv" 2>/dev/null
  log "$1 round $3: $($DC evaluate --truth $DATA/truth/test_labels.csv --pred $out.csv 2>&1 | sed -n 2p)"
}

for variant in "${VARIANTS[@]}"; do run_variant "$variant" & done
wait $(jobs -p | grep -v "^$WATCHDOG$")
kill $WATCHDOG 2>/dev/null
log "variants done"
if [ "${THROUGHPUT:-0}" = 1 ]; then
  for preset in cpu-small gpu; do
    log "throughput $preset: $($PY benchmarks/train_throughput.py --preset $preset --device $DEVICE --steps 20 2>&1 | tail -1)"
  done
fi
tar czf "$OUT/results.tgz" -C "$OUT" --exclude results.tgz --exclude 'run_*.tgz' . 2>/dev/null
log "end"
