#!/usr/bin/env bash
# Run HERE (the CPU machine) before a GPU run: packs Training + PublicTest as uint8 .npz.xz into
# .gpu/ and downloads the wheels the GPU machine lacks (keras, namex, optree) into .whl/, both kept out
# of git by .git/info/exclude. Then call the device tool with carry [".gpu", ".whl"] and the command
# `bash scripts/gpu_train.sh MEMBERS EPOCHS` (see docs/training.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
DATA=${1:-../shared/datasets/fer2013/fer2013.csv.gz}
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .gpu .whl
[ -f .gpu/fer2013-tv.npz.xz ] || "$PY" -m fer_core pack --data "$DATA" --splits Training,PublicTest --out .gpu/fer2013-tv.npz.xz
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
for pkg in keras==3.15.1 namex optree; do
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" -d .whl "$pkg"
done
du -ch .gpu/* .whl/* | tail -1
