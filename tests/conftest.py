"""Shared fixtures: seeding, GPU-test skipping, and the small demo dataset of the end-to-end tests."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from runhelpers import DEMO_SUBJECTS
from slurm_cluster import slurm_cluster  # noqa: F401  (the SLURM fixture, tests/slurm_cluster.py)


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
