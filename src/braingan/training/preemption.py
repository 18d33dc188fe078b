"""Preemption and time limits on SLURM: save at a step boundary, stop, requeue, continue exactly.

SLURM warns a job before it kills it: at the time limit with the signal given to sbatch's
`--signal` (Hydra's submitit launcher asks for SIGUSR2, `hydra.launcher.signal_delay_s` seconds
ahead), and on preemption when the partition is configured to. The signal handler only raises a
flag: a checkpoint written in the middle of a step (between the G and D updates, say) could not
resume exactly. At the end of the current step every rank agrees on the flag (one all-reduce),
`last.ckpt` is written, and training stops. After `trainer.fit` returns, `requeue()` hands over to
the handler that was there before ours, which for a submitit job is submitit's own: it requeues
the job with the same arguments (and counts time-limit requeues against `max_num_timeout`).
Outside submitit, rank 0 runs `scontrol requeue $SLURM_JOB_ID` itself; outside SLURM it only
saves and stops (Ctrl-C-like, but exact). The requeued job starts in the same run folder, finds
`checkpoints/last.ckpt` there and continues from it (train.py).
"""
from __future__ import annotations

import logging
import signal
import subprocess
from collections.abc import Sequence

import pytorch_lightning as pl
import torch

from ..utils.slurm import slurm_job_id
from .distributed import all_reduce_sum

log = logging.getLogger(__name__)


def signal_number(name: str | int) -> int:
    """'USR2', 'SIGUSR2' or 12 -> signal.SIGUSR2."""
    if isinstance(name, int) or str(name).isdigit():
        return int(name)
    name = str(name).upper()
    return int(getattr(signal, name if name.startswith("SIG") else "SIG" + name))


class Preemption(pl.Callback):
    """On one of `signals`: finish the step, save last.ckpt (via `checkpoint`), stop; then `requeue()`."""

    def __init__(self, checkpoint, signals: Sequence[str | int] = ("USR2",)):
        self.checkpoint = checkpoint  # a KimgCheckpoint: .save(trainer, module, name)
        self.signals = [signal_number(s) for s in signals]
        self.received: int | None = None  # the signal, once caught (on any rank after the step)
        self.saved = False
        self._previous: dict[int, object] = {}  # handlers ours replaced, while installed
        self._earlier: dict[int, object] = {}  # the same, kept after uninstall for requeue()

    def _handler(self, signum, frame) -> None:
        self.received = signum
        log.warning("caught signal %s: saving at the end of this step, then stopping", signal.Signals(signum).name)

    def install(self) -> None:
        for s in self.signals:
            try:
                previous = signal.signal(s, self._handler)
            except ValueError:  # not the main thread: no handler possible, the job just runs
                log.warning("cannot watch signal %s outside the main thread", s)
                continue
            self._previous[s] = previous

    def uninstall(self) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous if previous is not None else signal.SIG_DFL)
        self._earlier, self._previous = dict(self._previous), {}

    def on_train_start(self, trainer, module) -> None:
        self.install()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        caught = self.received is not None
        if trainer.world_size > 1:  # a signal may reach only some ranks; they all stop together
            caught = float(all_reduce_sum(torch.tensor(float(caught), device=module.device))) > 0
        if not caught or self.saved:
            return
        self.received = self.received or self.signals[0]
        path = self.checkpoint.save(trainer, module, "last.ckpt")
        self.saved = True
        trainer.should_stop = True
        log.warning("saved %s at %.3f kimg; stopping for the requeue", path, module.cur_kimg)

    def teardown(self, trainer, module, stage: str) -> None:
        self.uninstall()

    def requeue(self, is_global_zero: bool) -> str:
        """After fit: requeue through the earlier handler (submitit's) or scontrol. Returns what it did."""
        if self.received is None:
            return "not signalled"
        previous = self._earlier.get(self.received)
        if callable(previous):  # submitit's handler: requeues (rank 0) and exits
            previous(self.received, None)
            return "handed to the job's own handler"
        job = slurm_job_id()
        if job is None:
            return "saved and stopped (not a SLURM job: nothing to requeue)"
        if not is_global_zero:
            return "rank 0 requeues"
        subprocess.run(["scontrol", "requeue", job], check=True, timeout=60)
        log.warning("requeued SLURM job %s", job)
        return f"requeued SLURM job {job}"
