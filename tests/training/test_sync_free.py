"""A training step never waits for the device: no host read of a tensor between logging ticks.

Each Tensor -> Python conversion (item, tolist, bool, float, int, index, numpy) is a GPU -> CPU
synchronization on CUDA. The CPU test counts them, through the real `make train` path with its
callbacks (checkpoints, sample grids, TensorBoard scalars, progress bar), over a span of steps
with no logging tick in it, and requires zero. The GPU test runs the same span under
torch.cuda.set_sync_debug_mode("error"), which also catches what the C++ side does (nonzero,
a blocking copy).
"""

from __future__ import annotations

import traceback

import pytest
import torch

from braingan.experiment.run import train
from braingan.training.module import StyleGAN2Module
from helpers.runs import compose, tiny_overrides

CONVERSIONS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy")
FIRST, LAST = 3, 10  # the span: training steps (batch_idx) FIRST..LAST, between two logging ticks


class SpanWatch:
    """Arms a probe from the start of step FIRST to the end of step LAST (module hooks, around the callbacks')."""

    def __init__(self, monkeypatch, arm, disarm):
        self.steps: list[int] = []

        def on_start(module, batch, batch_idx):
            if module.batch_idx == FIRST:
                arm()
            if FIRST <= module.batch_idx <= LAST:
                self.steps.append(module.batch_idx)

        def on_end(module, outputs, batch, batch_idx):
            if module.batch_idx - 1 == LAST:  # batch_idx counts the step just done
                disarm()

        monkeypatch.setattr(StyleGAN2Module, "on_train_batch_start", on_start, raising=False)
        monkeypatch.setattr(StyleGAN2Module, "on_train_batch_end", on_end, raising=False)


def span_overrides(tmp_path, demo_root, **extra) -> list[str]:
    # 8 images a step, 16 steps; logging, checkpoints and samples only at 0.128 kimg (the end);
    # lazy R1 and path length every 4 steps and ADA every 2, so the span holds all of them.
    return tiny_overrides(
        tmp_path,
        demo_root,
        0.128,
        **{
            "schedule.log_kimg": 0.128,
            "schedule.last_kimg": 0.128,
            "schedule.image_kimg": 0.128,
            "schedule.snapshot_kimg": 0,
            "model.r1_interval": 4,
            "augment.interval": 2,
            "augment.target": 0.0,  # D(real) > 0 soon: p moves, so the span augments for real
            **extra,
        },
    )


@pytest.mark.slow
@pytest.mark.parametrize("batch_gpu,precision", [(None, "32-true"), (4, "32-true"), (None, "bf16-mixed")])
def test_no_host_reads_between_logging_ticks(tmp_path, demo_root, monkeypatch, batch_gpu, precision):
    calls: list[str] = []
    armed, outside = [False], [0]
    for name in CONVERSIONS:
        original = getattr(torch.Tensor, name)

        def probe(self, *args, _name=name, _original=original, **kwargs):
            if armed[0]:
                frames = traceback.extract_stack(limit=6)[:-1]
                calls.append(
                    f"{_name} at " + " <- ".join(f"{f.filename.split('/')[-1]}:{f.lineno}" for f in reversed(frames))
                )
            else:
                outside[0] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, probe)

    def arm():
        armed[0] = True

    def disarm():
        armed[0] = False

    watch = SpanWatch(monkeypatch, arm, disarm)
    overrides = span_overrides(
        tmp_path, demo_root, batch_gpu="null" if batch_gpu is None else batch_gpu, **{"trainer.precision": precision}
    )
    run = train(compose(overrides))
    assert watch.steps == list(range(FIRST, LAST + 1))  # the span really ran
    assert not armed[0]
    assert calls == [], f"{len(calls)} host reads in steps {FIRST}..{LAST}:\n" + "\n".join(calls[:10])
    # The probe does see reads where there are some: the logging tick and checkpoint at the end.
    assert outside[0] > 0 and (run / "tb").is_dir()


@pytest.mark.slow
@pytest.mark.gpu
@pytest.mark.parametrize(
    "precision,batch_gpu", [("32-true", "null"), ("bf16-mixed", "null"), ("16-mixed", "null"), ("16-mixed", 4)]
)
def test_no_synchronization_between_logging_ticks_on_cuda(tmp_path, demo_root, monkeypatch, precision, batch_gpu):
    """The same span on the GPU with the sync debug mode set to error: any synchronization raises.

    16-mixed takes the GradScaler's path; batch_gpu=4 the accumulation (compile is not covered).
    """
    watch = SpanWatch(
        monkeypatch, lambda: torch.cuda.set_sync_debug_mode("error"), lambda: torch.cuda.set_sync_debug_mode(0)
    )
    extra = {"trainer.precision": precision, "batch_gpu": batch_gpu}
    overrides = [o for o in span_overrides(tmp_path, demo_root, **extra) if not o.startswith("trainer=")]
    try:
        train(compose([*overrides, "trainer=gpu", "trainer.num_workers=2", "trainer.deterministic=false"]))
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert watch.steps == list(range(FIRST, LAST + 1))
