"""Shared fixtures: seeding, GPU-test skipping, and the small demo dataset of the end-to-end tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from helpers.runs import DEMO_SUBJECTS
from helpers.slurm import slurm_cluster  # noqa: F401  (the SLURM fixture, tests/helpers/slurm.py)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """A small demo dataset (5 pseudo-subjects of the MNI152 template) shared by the end-to-end tests."""
    from braingan.data.demo import build_demo_dataset

    root = tmp_path_factory.mktemp("data") / "demo"
    build_demo_dataset(root, num_subjects=DEMO_SUBJECTS, progress=False)
    return root


@pytest.fixture(scope="session")
def tiny_demo_run(tmp_path_factory, demo_root) -> Path:
    """One tiny demo run (one step of 8 at 32 px) shared by the tests that only read its checkpoint
    (eval, generate): <tmp>/run, with its caches in <tmp>/cache. Tests must not change its files."""
    from braingan.experiment.run import train
    from helpers.runs import compose, tiny_overrides

    return train(compose(tiny_overrides(tmp_path_factory.mktemp("tiny_demo"), demo_root, 0.008)))


@pytest.fixture(scope="session")
def tiny_adni_run(tmp_path_factory) -> Path:
    """One tiny conditional run on the ADNI AD/NC fixture tree (one step of 8 at 32 px), shared the same way."""
    from braingan.experiment.run import train
    from helpers.mri import write_adni
    from helpers.runs import compose, tiny_overrides

    tmp = tmp_path_factory.mktemp("tiny_adni")
    root = write_adni(tmp / "ADNI")
    return train(compose(tiny_overrides(tmp, root / "AD_NC", 0.008, dataset="adni")))


@pytest.fixture(scope="session")
def tiny_trained_run(tmp_path_factory, demo_root) -> Path:
    """A tiny demo run trained briefly (1 kimg at 32 px, about 10 s on two cores): a generator that draws
    brain-like slices, for the tests that need one (projection). Tests must not change its files."""
    from braingan.experiment.run import train
    from helpers.runs import compose, tiny_overrides

    tmp = tmp_path_factory.mktemp("tiny_trained")
    schedule = {"schedule.snapshot_kimg": 1.0, "schedule.image_kimg": 1.0, "schedule.log_kimg": 0.5}
    return train(compose(tiny_overrides(tmp, demo_root, 1.0, **schedule)))
