#!/usr/bin/env bash
# Run ON THE GPU MACHINE (device tool), after scripts/gpu_prepare.sh here:
#   bash scripts/gpu_train.sh vgg_s,resnet_s 120 [extra train_all.py args]
# Trains the members with KERAS_BACKEND=jax on .gpu/fer2013-tv.npz.xz (Training + PublicTest) and
# puts each finished member, without checkpoints, in $OUT/<member>.tar (at most 8 files of 16 MiB come
# back). Choose EPOCHS so that every member finishes inside the call: an unfinished member's
# checkpoint is too big to bring back. Here, untar each into models/<member>/ and run train_all.py
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
"$PY" train_all.py --data "${DATA:-.gpu/fer2013-tv.npz.xz}" --members "$MEMBERS" --epochs "$EPOCHS" --out "$work" \
  --no-ensemble "$@" 2>&1 | tee "$OUT/train.log"
rc=${PIPESTATUS[0]}
for d in "$work"/*/; do
  m=$(basename "$d")
  [ -f "$d/member.json" ] && tar -C "$d" --exclude=ckpt -cf "$OUT/$m.tar" .
done
ls -la "$OUT"
exit "$rc"
