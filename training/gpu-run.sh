#!/bin/sh
# The prepared GPU training run (cmtrain/gpurun.py says what it does; training/README.md "A GPU session"). From the
# repository root:
#   on the lent GPU:  run(command="sh training/gpu-run.sh", carry=["training/gpu-data"], timeout_s=570)
#   rehearsal here:   OUT=/tmp/gpu-rehearsal CM_GPU_MINUTES=0.3 sh training/gpu-run.sh
# (training/gpu-data/ first: `cd training && /usr/bin/python3 -m cmtrain.gpurun pack`.)
set -eu
: "${OUT:?OUT: the folder the results go to (the device sets it)}"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")"
# The python3 that has torch: the device's plain python3, Debian's /usr/bin/python3 here.
for py in python3 /usr/bin/python3; do
  if "$py" -c 'import torch' 2>/dev/null; then
    exec env PYTHONUNBUFFERED=1 "$py" -m cmtrain.gpurun train --out "$OUT" --minutes "${CM_GPU_MINUTES:-6.5}" "$@"
  fi
done
echo "gpu-run.sh: no python3 with torch" >&2
exit 2
