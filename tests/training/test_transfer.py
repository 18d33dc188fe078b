"""training/transfer.py: which tensors a fine-tuned module takes from its source, and what they compute."""

from __future__ import annotations

import pytest
import torch

from braingan.nn.config import NetworkConfig
from braingan.training.config import TrainConfig
from braingan.training.module import StyleGAN2Module
from braingan.training.transfer import transfer_weights
from braingan.utils.errors import UsageError

TINY = dict(img_resolution=16, z_dim=8, w_dim=8, mapping_layers=2, channel_base=128, channel_max=16, d_mapping_layers=2)


def module(c_dim: int = 0, seed: int = 0, classes=None, **net) -> StyleGAN2Module:
    torch.manual_seed(seed)
    names = classes if classes is not None else [f"k{i}" for i in range(c_dim)]
    return StyleGAN2Module(NetworkConfig(**{**TINY, "c_dim": c_dim, **net}), TrainConfig(), {"class_names": names})


def trained_like(m: StyleGAN2Module) -> StyleGAN2Module:
    """A source whose buffers moved as in training (w averages, path-length mean, ADA p)."""
    with torch.no_grad():
        for net in (m.G, m.G_ema):
            net.mapping.w_avg.normal_()
            if net.mapping.c_dim:
                net.mapping.w_avg_class.normal_()
        m.pl_mean.fill_(0.7)
        assert m.augment_pipe is not None
        m.augment_pipe.p.fill_(0.3)
    return m


def transfer(target, source, **kw):
    same = target.net_cfg.c_dim == source.net_cfg.c_dim and (
        target.data_info["class_names"] == source.data_info["class_names"]
    )
    changed = (target.net_cfg.c_dim == 0) != (source.net_cfg.c_dim == 0)
    return transfer_weights(
        target, source.state_dict(), z_dim=TINY["z_dim"], same_classes=same, conditioning_changed=changed, **kw
    )


def test_same_shapes_take_every_network_tensor_but_not_the_counters_or_ada():
    source, target = trained_like(module(seed=1)), module(seed=2)
    own_sample_z = target.sample_z.clone()
    report = transfer(target, source)
    src = source.state_dict()
    for name, value in target.state_dict().items():
        if name.startswith(("G.", "G_ema.", "D.")) or name == "pl_mean":
            assert torch.equal(value, src[name]), name
    assert report.loaded and not (report.fresh or report.skipped or report.rescaled or report.unused)
    assert float(target.augment_pipe.p) == 0.0  # ADA starts afresh
    assert torch.equal(target.sample_z, own_sample_z)  # the run's own sample latents


def test_keep_ada_takes_p():
    source, target = trained_like(module(seed=1)), module(seed=2)
    transfer(target, source, keep_ada=True)
    assert float(target.augment_pipe.p) == pytest.approx(0.3)


def test_unconditional_to_conditional_computes_the_source_mapping_for_every_class():
    source, target = trained_like(module(seed=1)), module(c_dim=3, seed=2)
    fresh_before = {k: v.clone() for k, v in target.state_dict().items() if "embed" in k or "c_mapping" in k}
    report = transfer(target, source)
    z = torch.randn(5, TINY["z_dim"])
    with torch.no_grad():
        expected = source.G_ema.mapping(z)
        for k in range(3):
            c = torch.nn.functional.one_hot(torch.full([5], k), 3).float()
            torch.testing.assert_close(target.G_ema.mapping(z, c), expected, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(target.G.mapping(z, c), source.G.mapping(z), rtol=1e-5, atol=1e-6)
    # The class layers are a new model's (untouched), the truncation centres the source's w average.
    state = target.state_dict()
    for name, value in fresh_before.items():
        assert torch.equal(state[name], value), name
        assert name in report.fresh
    assert torch.equal(target.G_ema.mapping.w_avg_class, source.G_ema.mapping.w_avg.expand(3, -1))
    assert {"D.epilogue.out.weight", "D.epilogue.out.bias"} <= set(report.fresh)
    assert report.rescaled == ["G.mapping.layers.0.weight", "G_ema.mapping.layers.0.weight"]
    assert torch.equal(
        state["G.synthesis.blocks.2.conv1.weight"], source.state_dict()["G.synthesis.blocks.2.conv1.weight"]
    )


def test_another_class_set_renews_the_class_layers_only():
    source = trained_like(module(c_dim=2, seed=1, classes=["AD", "NC"]))
    target = module(c_dim=2, seed=2, classes=["CN", "MCI"])
    report = transfer(target, source)
    src, state = source.state_dict(), target.state_dict()
    assert "G.mapping.embed.weight" in report.fresh and "D.c_mapping.0.weight" in report.fresh
    assert not torch.equal(state["G.mapping.embed.weight"], src["G.mapping.embed.weight"])
    assert torch.equal(state["G.mapping.layers.0.weight"], src["G.mapping.layers.0.weight"])  # same shape: taken
    assert torch.equal(state["D.epilogue.out.weight"], src["D.epilogue.out.weight"])
    same = module(c_dim=2, seed=3, classes=["AD", "NC"])
    assert not transfer(same, source).fresh  # the same classes: everything is taken


def test_a_tensor_of_another_shape_is_refused_by_name_or_left_fresh_and_listed():
    source, target = module(seed=1), module(seed=2, channel_max=8)
    with pytest.raises(UsageError, match=r"G\.synthesis\.\S+ has shape \[16, .*\] in init and \[8, .*\] here"):
        transfer(target, source)
    report = transfer(target, source, strict=False)
    assert report.skipped and all("->" in s for s in report.skipped)
    assert any(s.startswith("D.") for s in report.skipped) and report.loaded  # the mapping network still fits
    assert all(not s.startswith("G.mapping.") for s in report.skipped)


def test_the_first_mapping_layer_is_widened_only_from_the_same_z_and_w():
    source = module(seed=1, z_dim=4)  # another z: the only tensor that shows it is G's first mapping layer
    target = module(c_dim=2, seed=2)
    with pytest.raises(UsageError, match=r"G\.mapping\.layers\.0\.weight has shape \[8, 4\] in init and \[8, 16\]"):
        transfer_weights(target, source.state_dict(), z_dim=8, same_classes=False, conditioning_changed=True)
    wide = module(seed=1, w_dim=16)  # another w: left fresh and listed under init_strict=false, no traceback
    report = transfer_weights(
        module(c_dim=2, seed=2), wide.state_dict(), z_dim=8, same_classes=False, conditioning_changed=True, strict=False
    )
    assert any(s.startswith("G.mapping.layers.0.weight: [16, 8] -> [8, 16]") for s in report.skipped)
