"""Checkpoints written by older code still load, generate the same images and resume as trained.

tests/fixtures/conditional_v0/ holds a conditional (ADNI AD/NC) checkpoint written by the code of
commit 9aea301, whose D embedded the class without a mapping network, together with what that code
computed from fixed inputs (tests/fixtures/make_conditional_v0.py wrote both).
"""

from __future__ import annotations

import shutil

import pytest
import torch

from braingan.checkpoint import FORMAT_VERSION, load_checkpoint, load_generator, read_info
from braingan.experiment.run import train
from braingan.nn.config import NetworkConfig
from braingan.training.module import StyleGAN2Module
from fixtures.make_conditional_v0 import ADNI, KIMG, MODEL, OUT
from helpers.mri import write_adni
from helpers.runs import compose, tiny_overrides

CKPT = OUT / "last.ckpt"


@pytest.fixture(scope="module")
def outputs() -> dict[str, torch.Tensor]:
    return torch.load(OUT / "outputs.pt", weights_only=True)


def test_the_fixture_is_a_conditional_checkpoint_from_before_d_mapping_layers():
    net = load_checkpoint(CKPT)["hyper_parameters"]["net"]
    assert net["c_dim"] == 2 and "d_mapping_layers" not in net
    cfg = NetworkConfig.from_dict(net)
    assert cfg.d_mapping_layers == 0 and cfg.upsample_border == "full"  # the old head; its own border
    assert CKPT.stat().st_size < 500_000


def test_old_conditional_checkpoint_generates_the_same_images(outputs):
    G = load_generator(CKPT)
    with torch.no_grad():
        images = G(outputs["z"], outputs["c"], noise_mode="const")
    assert images.shape == outputs["images"].shape == (8, 1, 32, 32)
    torch.testing.assert_close(images, outputs["images"], rtol=0, atol=1e-5)


def test_old_conditional_checkpoint_loads_strictly_with_the_old_d_head(outputs):
    module = StyleGAN2Module.load_from_checkpoint(CKPT, map_location="cpu", weights_only=False, strict=True)
    assert module.net_cfg.d_mapping_layers == 0 and len(module.D.c_mapping) == 0
    assert not any(k.startswith("D.c_mapping.") for k in module.state_dict())
    with torch.no_grad():
        logits = module.D.eval()(outputs["d_images"], outputs["c"])
    torch.testing.assert_close(logits, outputs["d_logits"], rtol=0, atol=1e-5)
    # Today's conditional D has the mapping network, and old weights do not fit it.
    fresh = StyleGAN2Module(
        NetworkConfig.from_dict({**module.net_cfg.to_dict(), "d_mapping_layers": 8}), module.train_cfg
    )
    with pytest.raises(RuntimeError, match="D.c_mapping"):
        fresh.load_state_dict(torch.load(CKPT, weights_only=False)["state_dict"])


@pytest.mark.slow
def test_resume_of_an_old_conditional_run_keeps_its_d_head(tmp_path):
    root = write_adni(tmp_path / "ADNI", **ADNI)
    ckpt = tmp_path / "old" / "last.ckpt"
    ckpt.parent.mkdir()
    shutil.copyfile(CKPT, ckpt)
    # model.d_mapping_layers is 8 in the config; the checkpoint's weights have no mapping network.
    run = train(
        compose(tiny_overrides(tmp_path, root / "AD_NC", KIMG + 0.008, dataset="adni") + MODEL + [f"resume={ckpt}"])
    )
    state = load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert state["braingan"]["cur_nimg"] == round((KIMG + 0.008) * 1000)
    assert state["hyper_parameters"]["net"]["d_mapping_layers"] == 0
    assert not any(k.startswith("D.c_mapping.") for k in state["state_dict"])
    # The version-1 file resumed; what today's code wrote is the current format, with the old run's facts.
    old, new = read_info(CKPT), read_info(run / "checkpoints" / "last.ckpt")
    assert (old.format_version, new.format_version) == (1, FORMAT_VERSION) and FORMAT_VERSION == 2
    assert new.cur_nimg == old.cur_nimg + 8 and new.class_names == old.class_names == ["AD", "NC"]
    assert new.net.d_mapping_layers == old.net.d_mapping_layers == 0
