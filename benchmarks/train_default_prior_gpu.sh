#!/usr/bin/env bash
# The default convergence prior trained on one GPU and checked, in one go (issue 17):
# simulate the training and held-out maps, train (configs/train_convergence_64_gpu.yaml), draw
# from the prior at 64, 128 and 256 pixels a side against fresh simulations
# (benchmarks/prior_samples.py), and run `calibrate` on held-out maps (SHARDS processes).
# $OUT (default runs/gpu_default/out) receives the prior file in 15 MB parts (join them with
# cat), steps.log, and results.tar.gz with every log, curve and JSON, refreshed after each stage
# so that a run cut short keeps what it finished. Sizes and limits come from the environment,
# so that a small CPU run (DEVICE=cpu NUM=200 ...) tries the same path. It runs the package
# from the checkout (python3 -m posterior_diffusion.cli): where it is not installed, put the
# checkout and the dependencies on PYTHONPATH (on the lent H200: wheels of astropy, pyerfa,
# astropy-iers-data, jsonargparse, docstring-parser, typeshed-client and h5netcdf).
set -uo pipefail
DEVICE=${DEVICE:-cuda}
NUM=${NUM:-20000}              # training maps
TRAIN_TIME=${TRAIN_TIME:-00:00:05:00}  # the measured run (docs/default_prior.md)
MAX_STEPS=${MAX_STEPS:-100000}
BATCH=${BATCH:-256}
TRAIN_ARGS=${TRAIN_ARGS:-}     # more `train` options, e.g. "--model.net.init_args.norm none"
DRAWS=${DRAWS:-1024}           # prior draws (and simulations) at 64 x 64
DRAWS_128=${DRAWS_128:-64}     # ... at 128 x 128
DRAWS_256=${DRAWS_256:-32}     # ... at 256 x 256
TESTS=${TESTS:-100}            # calibrate's held-out tests
SHARDS=${SHARDS:-4}            # calibrate processes sharing the GPU (4: 4.2 s per test on an H200)
CAL_BATCH=${CAL_BATCH:-32}     # members each calibrate process samples at once
CAL_SECONDS=${CAL_SECONDS:-150}
TOTAL_SECONDS=${TOTAL_SECONDS:-100000}  # calibrate stops 15 s before this, counted from the start
START=$(date +%s)
WORK=${WORK:-runs/gpu_default}
OUT=${OUT:-$WORK/out}
PD="python3 -m posterior_diffusion.cli"
RESULTS="$WORK/results"
mkdir -p "$WORK" "$OUT" "$RESULTS"
log() { echo "[$(date +%T)] $*" | tee -a "$OUT/steps.log"; }
pack() { tar czf "$OUT/results.tar.gz" --exclude prior.pt -C "$WORK" results; }

log "simulate $NUM training maps and $TESTS held-out maps; meanwhile time training steps"
$PD simulate convergence "$WORK/convergence_64.h5" --num "$NUM" --shape 64 64 --seed 2 &
sim=$!
$PD simulate convergence "$WORK/held_out.h5" --num "$TESTS" --shape 64 64 --seed 777 || exit 1
python3 benchmarks/gpu_train_speed.py --config configs/train_convergence_64_gpu.yaml \
    --device "$DEVICE" --batch-sizes "$BATCH" >"$RESULTS/train_speed.jsonl" 2>&1
cat "$RESULTS/train_speed.jsonl" | tee -a "$OUT/steps.log"
wait $sim || exit 1

log "train for $TRAIN_TIME"
$PD train --config configs/train_convergence_64_gpu.yaml --data.path "$WORK/convergence_64.h5" \
    --data.batch_size "$BATCH" --trainer.default_root_dir "$WORK/train" \
    --trainer.logger.init_args.save_dir "$WORK/train" \
    --trainer.max_time "$TRAIN_TIME" --trainer.max_steps "$MAX_STEPS" \
    --trainer.enable_progress_bar false $TRAIN_ARGS >"$RESULTS/train.log" 2>&1
log "train exited with $?"
tail -3 "$RESULTS/train.log"
prior=$(ls -t "$WORK"/train/lightning_logs/version_*/prior.pt | head -1) || exit 1
cp "$prior" "$RESULTS/prior.pt"
cp "$(dirname "$prior")"/metrics.csv "$(dirname "$prior")"/hparams.yaml "$RESULTS"/
ls "$WORK"/train/lightning_logs/version_*/checkpoints | tee -a "$OUT/steps.log"
sha256sum "$RESULTS/prior.pt" | tee -a "$OUT/steps.log"
split -b 15M "$RESULTS/prior.pt" "$OUT/prior.pt.part-"
pack

log "prior draws against simulations"
for spec in "64 $DRAWS" "128 $DRAWS_128" "256 $DRAWS_256"; do
    set -- $spec
    python3 benchmarks/prior_samples.py --prior "$RESULTS/prior.pt" --num "$2" --shape "$1" "$1" \
        --device "$DEVICE" --json "$RESULTS/prior_samples_$1.json" >"$RESULTS/prior_samples_$1.md" 2>&1
    log "draws at $1: exit $?"
    pack
done
grep -A8 "issue 17's bar" "$RESULTS/prior_samples_64.md"

left=$((START + TOTAL_SECONDS - $(date +%s) - 15))
CAL_SECONDS=$((left < CAL_SECONDS ? left : CAL_SECONDS))
log "calibrate: $TESTS tests in $SHARDS shards, at most $CAL_SECONDS s"
for ((i = 0; i < SHARDS; i++)); do
    OMP_NUM_THREADS=2 timeout "$CAL_SECONDS" $PD calibrate --prior "$RESULTS/prior.pt" \
        --forward-model lensing --simulations "$WORK/held_out.h5" --num-tests "$TESTS" \
        --num-samples 32 --batch-size "$CAL_BATCH" --shape 64 64 --seed 3 --device "$DEVICE" \
        --no-progress \
        --shard "$i/$SHARDS" -o "$RESULTS/calibration" >"$RESULTS/calibrate_$i.log" 2>&1 &
done
wait
log "calibrate: $(ls "$RESULTS"/calibration/tests 2>/dev/null | wc -l) files in tests/"
pack
log done
