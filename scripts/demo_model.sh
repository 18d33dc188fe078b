#!/usr/bin/env bash
# Rebuilds the shipped demo model (models/demo) and the README's figures of it, with the real tools:
#   bash scripts/demo_model.sh            train (CPU, hours), then evaluate, audit, export, render
#   STAGE=finish bash scripts/demo_model.sh   only the steps after training, on $RUN's last.ckpt
# RUN (default outputs/demo-model) is the training run folder, KIMG its length, PY the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
RUN=${RUN:-outputs/demo-model}
KIMG=${KIMG:-100}
STAGE=${STAGE:-all}
CKPT=$RUN/checkpoints/last.ckpt
MODEL=models/demo

if [ "$STAGE" = all ]; then
  # The README's "What it makes" settings: a small 64x64 network a 2-core CPU trains in about two hours.
  $PY -m braingan.train trainer=cpu model=tiny model.channel_base=2048 model.channel_max=64 model.z_dim=64 \
    model.w_dim=64 resolution=64 batch_size=16 kimg="$KIMG" schedule.last_kimg=2 schedule.snapshot_kimg=20 \
    schedule.image_kimg=5 hydra.run.dir="$RUN"
fi
time $PY -m braingan.eval ckpt="$CKPT" num_gen=2048          # the model card's numbers (and the run's TensorBoard)
time $PY -m braingan.audit ckpt="$CKPT"
$PY -m braingan.export_model ckpt="$CKPT" out="$MODEL"
# the README's figures: what the shipped folder draws, downscaled
$PY -m braingan.generate ckpt="$MODEL" out="$RUN/readme" what=[images,grid,interp] seeds=0-35 grid.size=6 psi=0.8
$PY -m braingan.plots run="$RUN" out="$RUN/readme/plots"
$PY - "$RUN/readme" <<'PY'
import sys
from pathlib import Path

from PIL import Image

src = Path(sys.argv[1])
Image.open(src / "grid.png").resize((384, 384), Image.LANCZOS).save("docs/sample_grid.png", optimize=True)
strip = Image.open(src / "interp.png")
strip.resize((720, round(720 * strip.height / strip.width)), Image.LANCZOS).save("docs/interpolation.png", optimize=True)
losses = Image.open(src / "plots" / "losses.png")
losses.resize((720, round(720 * losses.height / losses.width)), Image.LANCZOS).save("docs/losses.png", optimize=True)
print("wrote docs/sample_grid.png, docs/interpolation.png, docs/losses.png")
PY
