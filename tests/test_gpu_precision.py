"""Mixed precision on a GPU: 1 kimg at 256x256 per precision, finite throughout; speed is printed.

Skipped where no CUDA device is visible. Run with `-s` to see the sec/kimg table lines; they
are also stored as junit properties (`--junitxml`). No timing is asserted.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from braingan.checkpoint import load_checkpoint
from braingan.experiment.run import train
from helpers.runs import compose, tiny_overrides

TAGS = ("Loss/G", "Loss/D", "Loss/r1_penalty", "Loss/pl_penalty", "Loss/path_length", "D/real", "D/fake")


@pytest.mark.slow
@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "16-mixed"])
def test_one_kimg_at_256_is_finite(tmp_path, demo_root, precision, record_property):
    overrides = tiny_overrides(
        tmp_path,
        demo_root,
        1.024,
        **{
            "trainer": "gpu",
            "trainer.precision": precision,
            "trainer.num_workers": 2,
            "trainer.deterministic": False,
            "model": "small",
            "resolution": "256",
            "batch_size": 32,
            "model.r1_interval": 4,  # several R1 and path-length steps within 32 steps
            "model.pl_interval": 4,
            "schedule.log_kimg": 0.256,
            "schedule.image_kimg": 1.024,
            "schedule.last_kimg": 1.024,
            "schedule.snapshot_kimg": 1.024,
        },
    )
    run = train(compose(overrides))
    acc = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    for tag in TAGS:
        values = [e.value for e in acc.Scalars(tag)]
        assert values and all(np.isfinite(values)), (precision, tag, values)
    assert max(e.value for e in acc.Scalars("Progress/nonfinite_steps")) == 0, precision
    ckpt = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert ckpt["braingan"]["cur_nimg"] == 1024
    for key, value in ckpt["state_dict"].items():
        if value.is_floating_point():
            assert torch.isfinite(value).all(), (precision, key)
    # Speed after warm-up: the last logging window (the first holds cudnn autotuning).
    sec_per_kimg = [e.value for e in acc.Scalars("Speed/sec_per_kimg")]
    record_property(f"sec_per_kimg_{precision}", sec_per_kimg[-1])
    print(
        f"\n[precision] {precision}: {sec_per_kimg[-1]:.2f} sec/kimg (windows: {', '.join(f'{v:.2f}' for v in sec_per_kimg)}) "
        f"on {torch.cuda.get_device_name()}, model=small 256x256 batch 32"
    )
