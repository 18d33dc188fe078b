"""GPU runs of the real training function; skipped where no CUDA device is visible."""

from __future__ import annotations

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from braingan.checkpoint import load_checkpoint
from braingan.experiment.run import train
from helpers.runs import compose, tiny_overrides


@pytest.mark.slow
@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_tiny_run_on_gpu(tmp_path, demo_root, precision):
    overrides = tiny_overrides(tmp_path, demo_root, 0.064, **{"trainer.precision": precision})
    overrides = [o for o in overrides if not o.startswith("trainer=")] + ["trainer=gpu", "trainer.num_workers=2"]
    run = train(compose(overrides))
    acc = EventAccumulator(str(run / "tb"))
    acc.Reload()
    for tag in ("Loss/G", "Loss/D", "Loss/r1_penalty", "Loss/path_length"):
        assert all(np.isfinite(e.value) for e in acc.Scalars(tag)), tag
    ckpt = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert ckpt["braingan"]["cur_nimg"] == 64
