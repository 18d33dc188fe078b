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

The stop signals (SIGTERM from `kill`, `timeout`, systemd or a container stop; SIGINT from Ctrl-C)
take the same path without the requeue: finish the step, save last.ckpt, stop, and the entry
point says where it saved and exits with 128 + the signal number, so the job never looks successful.
"""

from __future__ import annotations

import logging
import signal
import subprocess
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch

from ..rundir import LAST
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
    """On a signal: finish the step, save last.ckpt (via `checkpoint`), stop.

    `signals` (SLURM's warning, USR2) then requeue the job (`requeue()`); `stop_signals` (TERM
    from kill, timeout, systemd and container stops; INT from Ctrl-C) only stop: the caller
    reports where it saved and exits with 128 + the signal (`stop_signal`, `stop_message()`).
    A second stop signal ends the process at once, as it would without us. A stop signal the
    process was started with ignored (SIGINT of a job started with `&`) stays ignored.
    """

    def __init__(
        self, checkpoint, signals: Sequence[str | int] = ("USR2",), stop_signals: Sequence[str | int] = ("TERM", "INT")
    ):
        self.checkpoint = checkpoint  # a KimgCheckpoint: .save(trainer, module, name)
        self.signals = [signal_number(s) for s in signals]
        self.stop_signals = [signal_number(s) for s in stop_signals if signal_number(s) not in self.signals]
        self.received: int | None = None  # the signal, once caught (on any rank after the step)
        self.stop_signal: int | None = None  # set when the stop is not for a requeue
        self.saved_path = None  # where the stop saved (None: not yet), and at which kimg
        self.saved_kimg: float | None = None
        self._previous: dict[int, Any] = {}  # handlers ours replaced, while installed
        self._earlier: dict[int, object] = {}  # the same, kept after uninstall for requeue()

    def _handler(self, signum, frame) -> None:
        if signum in self.stop_signals:
            self.stop_signal = self.stop_signal or signum
            signal.signal(signum, signal.SIG_DFL)  # a second one terminates at once
        self.received = self.received or signum
        log.warning("caught signal %s: saving at the end of this step, then stopping", signal.Signals(signum).name)

    def install(self) -> None:
        for s in self.signals + self.stop_signals:
            if s in self.stop_signals and signal.getsignal(s) is signal.SIG_IGN:
                continue  # ignored on purpose by whoever started us
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
        caught, stop = self.received is not None, self.stop_signal is not None
        if trainer.world_size > 1:  # a signal may reach only some ranks; they all stop together
            flags = all_reduce_sum(torch.tensor([float(caught), float(stop)], device=module.device))
            caught, stop = bool(flags[0] > 0), bool(flags[1] > 0)
        if not caught or self.saved_path is not None:
            return
        if stop and self.stop_signal is None:  # another rank was told to stop
            self.stop_signal = signal.SIGTERM
        if self.received is None:  # another rank caught it
            self.received = self.stop_signal if stop else self.signals[0]
        path = self.checkpoint.save(trainer, module, LAST)
        self.saved_path, self.saved_kimg = path, module.cur_kimg
        trainer.should_stop = True
        log.warning("saved %s at %.3f kimg; stopping%s", path, module.cur_kimg, "" if stop else " for the requeue")

    def on_train_end(self, trainer, module) -> None:
        if self.received is not None and self.saved_path is None:  # caught after the last step: its final save holds it
            self.saved_path, self.saved_kimg = self.checkpoint.dirpath / LAST, module.cur_kimg

    def stop_message(self) -> str:
        """What a stop on `stop_signal` did and how to continue, in one line."""
        name = signal.Signals(self.stop_signal).name if self.stop_signal else "a signal"
        if self.saved_path is None:
            return f"stopped by {name} before anything was saved"
        return (
            f"stopped by {name} at {self.saved_kimg:.3f} kimg; saved {self.saved_path}; continue with "
            f"`make resume` or resume={self.saved_path}"
        )

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
