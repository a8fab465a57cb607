#!/usr/bin/env bash
# What a lent GPU machine needs for the device check and for training there, which it cannot
# download (it reaches no network): the wheels of the packages its image lacks, for its
# Python 3.12, in .whl/, and the mnfinder training and validation images in
# .device-data/mnfinder/ (both ignored by git; a device call carries them by name).
#
#   bash scripts/device_bundle.sh [MNFINDER_FOLDER]     # default ../shared/data/mnfinder
#
# The versions are this checkout's .venv's (the ones the tests pass with). The GPU image
# already holds PyTorch, numpy, scipy, scikit-image, pandas, pyarrow, numba, onnxruntime,
# tifffile, safetensors, click, tqdm, pillow and the rest of the packages listed in the
# device tool's KINDS.md; what is missing is listed below, less two large ones that the
# device runs do without: imagecodecs (26 MB; tifffile reads the deflated mnfinder TIFFs
# with zlib) and plotly (10 MB; a plate run there writes no QC page, and says so). A call
# carries at most 64 MiB: this checkout (~11 MB), the wheels (~18 MB), the images (~23 MB).
# Then, in one device call (carry .whl and .device-data; write the run's decision rule in
# benchmarks/results/micronuclei_rule.md first, as for every candidate):
#
#   python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
#     && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 \
#     && python3 benchmarks/gpu_check.py --out $OUT \
#     && python3 examples/train_default_model.py --data .device-data/mnfinder --device cuda \
#          --loaders 8 --train-only --minutes 5 --out $OUT/nuclei_mn.safetensors \
#          --learning-rate 7e-4 --target distance --average 0.999 --keep last \
#          --start-from nuclei --micronuclei --foreground-by-class
#
# and back here, the choices on the CPU: python examples/train_default_model.py --data
# ../shared/data/mnfinder --choose-only <the model> --out <the model>.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data/mnfinder}
missing=(
    zarr numcodecs donfig google-crc32c ome-zarr ome-zarr-models pydantic pydantic-core
    annotated-types typing-inspection typing-extensions pydantic-zarr rangehttpserver
    deprecated dask distributed partd locket tblib tornado zict cp-measure centrosome
    deprecation mahotas
)
[ -x .venv/bin/python ] || { echo "no .venv here: set it up first (README)." >&2; exit 1; }
normal() { tr 'A-Z_' 'a-z-'; }
frozen=$(.venv/bin/python -m pip freeze 2>/dev/null | normal)
wanted=()
for name in "${missing[@]}"; do
    line=$(grep -E "^${name}==" <<<"$frozen" || true)
    [ -n "$line" ] || { echo "$name is not installed in .venv" >&2; exit 1; }
    wanted+=("$line")
done
rm -rf .whl
mkdir -p .whl
platforms=()
for n in 17 27 28 31 34; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platforms[@]}" --platform manylinux2014_x86_64 \
    --platform any -d .whl "${wanted[@]}"
count=$(ls .whl/*.whl | wc -l)
[ "$count" -eq "${#wanted[@]}" ] || { echo "found $count wheels for ${#wanted[@]} packages" >&2; exit 1; }

rm -rf .device-data
for folder in images nuclei_labels micronuclei_labels micronuclei_parent; do
    mkdir -p ".device-data/mnfinder/$folder"
    cp "$data/$folder"/training__* "$data/$folder"/validation__* ".device-data/mnfinder/$folder/"
done
cp "$data"/README.md "$data"/manifest.csv .device-data/mnfinder/ 2>/dev/null || true
echo "$count wheels in .whl ($(du -sh .whl | cut -f1)); mnfinder training and validation" \
    "images in .device-data ($(du -sh .device-data | cut -f1))"
