"""Helpers for the end-to-end tests: compose the real config, shrink it to a tiny CPU run."""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO_SUBJECTS = 5  # the end-to-end tests' demo set: 5 pseudo-subjects x 32 slices


def compose(overrides: list[str]):
    """The real conf/train.yaml composed with Hydra's compose API (as the entry point does)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from braingan.conf_utils import CONF_DIR, normalize_overrides, register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=normalize_overrides(overrides))


def tiny_overrides(tmp_path: Path, data_root: Path, kimg: float, dataset: str = "demo", **extra) -> list[str]:
    """A tiny, fast, deterministic CPU run into tmp_path/run (demo data: the 5-subject fixture)."""
    o = {
        "dataset": dataset,
        "trainer": "cpu",
        "model": "tiny",
        "resolution": "32",
        "dataset.root": str(data_root),
        "kimg": kimg,
        "batch_size": 8,
        "trainer.deterministic": True,
        "schedule.log_kimg": 0.016,
        "schedule.image_kimg": 0.032,
        "schedule.last_kimg": 0.032,
        "schedule.snapshot_kimg": 0.064,
        "run_dir": str(tmp_path / "run"),
        "dataset.cache_dir": str(tmp_path / "cache"),
    }
    if dataset == "demo":
        o["dataset.demo_subjects"] = DEMO_SUBJECTS
    o.update(extra)
    return [f"{k}={v}" for k, v in o.items()]
