#!/usr/bin/env bash
# Run ON THE GPU MACHINE (device tool), after scripts/gpu_prepare.sh here:
#   bash scripts/gpu_train.sh vgg_s,resnet_s 120 [extra train_all.py args]
# Trains the members with KERAS_BACKEND=jax on .gpu/fer2013-tv.npz.xz (Training + PublicTest) and
# puts each finished member, without checkpoints, in $OUT/<member>.tar, its log in $OUT/train_<member>.log
# (at most 8 files of 16 MiB come back: 4 members at a time). Choose EPOCHS so that every member
# finishes inside BUDGET seconds; one that does not comes back as $OUT/<member>.ckpt.tar. Here, untar each into models/<member>/ and run train_all.py
# with the same members on the full CSV: they are skipped as done, the ensemble is chosen on
# PublicTest and PrivateTest is scored.
set -uo pipefail
MEMBERS=${1:?members}; EPOCHS=${2:?epochs}; shift 2
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
PY=${PYTHON:-python3}
if ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export KERAS_BACKEND=${KERAS_BACKEND:-jax} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || true
"$PY" -c "import keras, jax; print('keras', keras.__version__, 'backend', keras.backend.backend(), jax.devices())"
work=/tmp/gpu-models
# One process per member, all at once: a 1-2M-parameter net at batch 64 leaves most of an H100 idle,
# so members train side by side in about the time of the slowest. Each process takes GPU memory as
# it needs it instead of JAX's default 75 % up front. Logs: $OUT/train_<member>.log.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
pids=()
for m in ${MEMBERS//,/ }; do
  # stopped at BUDGET seconds (default 500, inside the device's 600 s a command) so the tars below
  # are always written: a member cut short comes back as its checkpoint and resumes elsewhere
  timeout "${BUDGET:-500}" "$PY" train_all.py --data "${DATA:-.gpu/fer2013-tv.npz.xz}" --members "$m" --epochs "$EPOCHS" --out "$work" \
    --no-ensemble "$@" > "$OUT/train_$m.log" 2>&1 &
  pids+=($!)
done
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=$?; done
tail -n 3 "$OUT"/train_*.log
for d in "$work"/*/; do
  m=$(basename "$d")
  if [ -f "$d/member.json" ]; then
    tar -C "$d" --exclude=ckpt -cf "$OUT/$m.tar" .          # finished: weights, sidecar, log, curve
  elif [ -d "$d/ckpt" ]; then
    tar -C "$d" -cf "$OUT/$m.ckpt.tar" ckpt                  # cut short: untar into models/<m>/ to resume
  fi
done
ls -la "$OUT"
exit "$rc"
