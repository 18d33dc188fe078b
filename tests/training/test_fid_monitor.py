"""FIDMonitor's bookkeeping (the FID itself is tested in tests/metrics): log every tick, keep the best at rundir's name."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from braingan.rundir import RunDir
from braingan.training.fid_monitor import FIDMonitor


class Trainer:
    is_global_zero, world_size = True, 1

    def __init__(self):
        self.logged, self.saves = [], 0
        self.logger = SimpleNamespace(log_metrics=lambda metrics, step: self.logged.append((step, metrics)))

    def save_checkpoint(self, path) -> None:
        self.saves += 1
        Path(path).write_text(f"save {self.saves}")


def test_best_fid_checkpoint_is_kept_only_when_the_fid_improves(tmp_path, monkeypatch):
    run = RunDir(tmp_path / "run")
    monitor = FIDMonitor(run.checkpoints, every_kimg=0.032, num_gen=1000)
    fids = iter([50.0, 60.0, 40.0])
    monkeypatch.setattr(monitor, "evaluate", lambda trainer, module: next(fids))
    trainer = Trainer()
    for prev, cur in ((0, 16), (16, 32), (32, 64), (64, 96)):  # 16 crosses no tick; then 50, 60 (worse), 40
        monitor.on_train_batch_end(trainer, SimpleNamespace(prev_nimg=prev, cur_nimg=cur), None, None, 0)
    assert [(step, m["Metrics/fid1k_train"]) for step, m in trainer.logged] == [(32, 50.0), (64, 60.0), (96, 40.0)]
    assert sorted(p.name for p in run.checkpoints.iterdir()) == [run.best_fid.name]
    assert run.best_fid.read_text() == "save 2" and monitor.best == 40.0
    assert FIDMonitor(run.checkpoints, 1.0).state_dict() == {"best": float("inf")}
