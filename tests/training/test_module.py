"""StyleGAN2Module set-up: the fixed sample grid shows every class, one row each."""

from __future__ import annotations

import pytest
import torch

from braingan.experiment.settings import build_configs
from braingan.training.module import StyleGAN2Module
from helpers.runs import compose


@pytest.mark.parametrize("c_dim,per_row", [(0, 16), (2, 8), (5, 3), (7, 2), (20, 1)])
def test_sample_grid_has_one_row_per_class_and_shows_every_class(tmp_path, c_dim, per_row):
    cfg = compose(["model=tiny", "resolution=32", "schedule.num_samples=16", f"run_dir={tmp_path}"])
    net, train_cfg = build_configs(cfg, c_dim)
    module = StyleGAN2Module(net, train_cfg, {"class_names": [f"c{k}" for k in range(c_dim)]})
    classes = max(c_dim, 1)
    assert module.sample_rows == (c_dim or None)
    assert module.sample_z.shape == (classes * per_row, net.z_dim)
    expected = torch.arange(classes).repeat_interleave(per_row)  # row k = class k
    assert torch.equal(module.sample_c, expected)
    assert module.hparams["data"]["class_names"] == [f"c{k}" for k in range(c_dim)]
