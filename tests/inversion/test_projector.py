"""The projector on a tiny model trained briefly (the tiny_trained_run fixture: 1 kimg at 32 px)."""

from __future__ import annotations

import pytest
import torch

from braingan.checkpoint import load_generator, read_info
from braingan.data.dataset import decode_image
from braingan.inversion.projector import ProjectOptions, noise_layers, noise_maps, project, render
from braingan.metrics.sources import real_records

pytestmark = pytest.mark.slow
STEPS = 100  # a third of make project's default: enough for the margins below, a few seconds per test


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # [N] dB for [-1, 1] images (peak-to-peak 2)
    return 10 * torch.log10(4 / (a - b).square().flatten(1).mean(dim=1))


@pytest.fixture(scope="module")
def trained(tiny_trained_run):
    ckpt = tiny_trained_run / "checkpoints" / "last.ckpt"
    info = read_info(ckpt)
    slices = real_records(info.run, "heldout", info.splits)
    real = torch.stack([torch.from_numpy(decode_image(slices[k].path, 32, 1)[0]) for k in (8, 14, 20)])
    return load_generator(ckpt), real.float() / 127.5 - 1  # G, held-out slices [3, 1, 32, 32] in [-1, 1]


def test_images_the_model_generated_are_recovered_in_w_plus(trained):
    G, _ = trained
    with torch.no_grad():
        target = G(torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(1)), noise_mode="const")
    result = project(G, target, opt=ProjectOptions(mode="w+", steps=STEPS))
    got, start = psnr(result.images, target), psnr(result.start, target)
    # Measured on this fixture (100 steps): 29.6 - 34.6 dB per image, 32.9 mean, from 12 - 17 dB at w_avg; a
    # projector that stopped optimizing, or optimized one image's latent with another's loss, stays near the start.
    assert got.mean() > 30 and got.min() > 27, (got, start)
    assert (got > start + 10).all()
    torch.testing.assert_close(render(G, result.ws), result.images)  # the npz's ws alone render it


def test_a_real_slice_improves_over_the_w_avg_start_in_both_modes(trained):
    G, real = trained
    for mode in ("w", "w+"):
        result = project(G, real, opt=ProjectOptions(mode=mode, steps=STEPS))
        assert result.ws.shape == (3, G.num_ws, G.w_dim) and result.history.shape == (STEPS, 3)
        assert (result.loss < 0.5 * result.start_loss).all(), (mode, result.loss, result.start_loss)
        assert (psnr(result.images, real) > psnr(result.start, real) + 3).all()
        if mode == "w":  # one w per image, the same in every layer
            assert (result.ws == result.ws[:, :1]).all()


def test_images_of_a_batch_are_optimized_independently(trained):
    G, real = trained
    # The latent noise is drawn for the whole batch, so compare without it.
    opt_quiet = ProjectOptions(steps=10, initial_noise=0.0)
    together, alone = project(G, real, opt=opt_quiet), project(G, real[1:2], opt=opt_quiet)
    torch.testing.assert_close(together.ws[1:2], alone.ws, rtol=1e-4, atol=1e-5)


def test_noise_maps_are_optimized_regularized_and_put_back(trained):
    G, real = trained
    fixed = [layer.noise_const.clone() for layer in noise_layers(G)]
    result = project(G, real[:2], opt=ProjectOptions(steps=20, optimize_noise=True))
    assert result.noises is not None and len(result.noises) == len(fixed)
    for noise, const in zip(result.noises, fixed):
        assert noise.shape == (2, 1, *const.shape)
        torch.testing.assert_close(noise.mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-4, rtol=0)  # renormalized
        torch.testing.assert_close(noise.std(dim=(1, 2, 3)), torch.ones(2), atol=1e-4, rtol=0)
    for layer, const in zip(noise_layers(G), fixed):
        assert torch.equal(layer.noise_const, const)  # the generator's fixed noise is back
    torch.testing.assert_close(render(G, result.ws, result.noises), result.images)
    with noise_maps(G, result.noises):
        assert noise_layers(G)[0].noise_const.shape[0] == 2
