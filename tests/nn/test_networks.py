"""G and D build and run forward/backward at every resolution of the group, 1 and 3 channels."""

import pytest
import torch

from braingan.nn.config import NetworkConfig
from braingan.nn.discriminator import Discriminator, minibatch_stddev
from braingan.nn.synthesis import Generator


def _cfg(res, ch, **kw):
    return NetworkConfig(
        img_resolution=res,
        img_channels=ch,
        z_dim=16,
        w_dim=16,
        mapping_layers=2,
        channel_base=2048,
        channel_max=16,
        **kw,
    )


@pytest.mark.parametrize("res", [32, 64, 128, 256, 512])
@pytest.mark.parametrize("ch", [1, 3])
def test_generator_and_discriminator_forward_backward(res, ch):
    cfg = _cfg(res, ch)
    G, D = Generator(cfg), Discriminator(cfg)
    z = torch.randn(2, 16)
    img = G(z)
    assert img.shape == (2, ch, res, res)
    logits = D(img)
    assert logits.shape == (2, 1)
    logits.sum().backward()
    for net in (G, D):
        grads = [p.grad for p in net.parameters() if p.requires_grad]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # Every synthesis block got a gradient (the skip ToRGB path reaches all of them).
    assert all(b.conv1.weight.grad.abs().sum() > 0 for b in G.synthesis.blocks)


def test_too_few_channels_is_a_clear_error():
    with pytest.raises(ValueError, match="channel_base"):
        NetworkConfig(img_resolution=512, channel_base=256)


def test_num_ws_and_channel_plan_match_config_f():
    cfg = NetworkConfig(img_resolution=256)
    assert cfg.num_ws == 14
    assert [cfg.channels_at(r) for r in (4, 64, 128, 256)] == [512, 512, 256, 128]
    nparams = sum(p.numel() for p in Generator(cfg).parameters())
    assert 29.5e6 < nparams < 30.5e6  # StyleGAN2 config F at 256: 30.0 M


def test_noise_modes():
    G = Generator(_cfg(32, 1))
    for b in G.synthesis.blocks:  # make noise matter
        b.conv1.noise_strength.data.fill_(1.0)
    z = torch.randn(2, 16)
    a, b = G(z, noise_mode="const"), G(z, noise_mode="const")
    assert torch.equal(a, b)
    assert not torch.equal(G(z, noise_mode="random"), G(z, noise_mode="random"))
    assert not torch.allclose(a, G(z, noise_mode="none"))


def test_fused_modconv_switch_gives_same_generator_output():
    torch.manual_seed(3)
    G1 = Generator(_cfg(32, 1, fused_modconv=True))
    G2 = Generator(_cfg(32, 1, fused_modconv=False))
    G2.load_state_dict(G1.state_dict())
    z = torch.randn(3, 16)
    assert torch.allclose(G1(z, noise_mode="const"), G2(z, noise_mode="const"), atol=1e-5)


def test_minibatch_stddev_matches_numpy_style_reference():
    x = torch.randn(8, 4, 2, 2)
    y = minibatch_stddev(x, group_size=4)
    assert y.shape == (8, 5, 2, 2)
    # Group g holds samples g, g+2, g+4, g+6 (the batch is split as [G, M]).
    for m in range(2):
        grp = x[m::2]
        expected = grp.std(dim=0, unbiased=False).mean()
        assert torch.allclose(y[m::2, 4], expected.expand(4, 2, 2), atol=1e-4)


def test_conditional_discriminator_projection_depends_on_class():
    cfg = _cfg(32, 1, c_dim=3)
    D = Discriminator(cfg)
    img = torch.randn(4, 1, 32, 32)
    c0 = torch.eye(3)[[0, 0, 0, 0]]
    c1 = torch.eye(3)[[1, 1, 1, 1]]
    assert not torch.allclose(D(img, c0), D(img, c1))


def _config_f_256(**kw) -> NetworkConfig:
    return NetworkConfig(
        img_resolution=256,
        img_channels=1,
        z_dim=512,
        w_dim=512,
        mapping_layers=8,
        channel_base=32768,
        channel_max=512,
        **kw,
    )


def _count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def test_config_f_parameter_counts_conditional_d_has_the_official_class_mapping():
    assert _count(Generator(_config_f_256())) == 30_028_436
    assert _count(Discriminator(_config_f_256())) == 28_863_873
    # Conditional (2 classes): + embedding 2 -> 512, 8 mapping layers 512 -> 512, and an output
    # layer of cmap_dim = 512 features instead of 1: 28,863,873 + 1,536 + 8 x 262,656 - 513 + 262,656.
    D = Discriminator(_config_f_256(c_dim=2))
    assert _count(D) == 31_228_800
    assert len(D.c_mapping) == 8 and _count(D.c_embed) == 2 * 512 + 512
    # d_mapping_layers=0 is the embedding-only head of checkpoints written before the key existed.
    assert _count(Discriminator(_config_f_256(c_dim=2, d_mapping_layers=0))) == 31_228_800 - 8 * 262_656


def test_conditional_discriminator_mapping_equals_its_definition():
    """Embedding (lr multiplier 1, linear), normalization, lrelu layers with lr multiplier 0.01, projection."""
    import math

    import torch.nn.functional as F

    torch.manual_seed(0)
    cfg = _cfg(32, 1, c_dim=3, d_mapping_layers=2)
    D = Discriminator(cfg)
    cmap_dim = cfg.channels_at(4)
    for layer in D.c_mapping:  # non-trivial biases, so their lr multiplier matters
        layer.bias.data.normal_(0, 10)
    c = torch.eye(3)[[0, 1, 2, 1]]
    x = c @ (D.c_embed.weight / math.sqrt(3)).t() + D.c_embed.bias  # embed: lr multiplier 1, linear
    x = x / x.square().mean(1, keepdim=True).add(1e-8).sqrt()  # normalize_2nd_moment
    for layer in D.c_mapping:  # stored weights are randn / 0.01; the used ones are 0.01 / sqrt(fan_in) of them
        x = F.leaky_relu(x @ (layer.weight * 0.01 / math.sqrt(cmap_dim)).t() + layer.bias * 0.01, 0.2) * math.sqrt(2)
    img = torch.randn(4, 1, 32, 32)
    features = img
    for block in D.blocks:
        features = block(features)
    ep = D.epilogue
    h = ep.out(ep.fc(ep.conv(minibatch_stddev(features, cfg.mbstd_group_size)).flatten(1)))  # [N, cmap_dim]
    expected = (h * x).sum(1, keepdim=True) / math.sqrt(cmap_dim)
    torch.testing.assert_close(D(img, c), expected, rtol=1e-5, atol=1e-5)
    assert all(layer.weight.grad is None for layer in D.c_mapping)
    D(img, c).sum().backward()
    assert all(layer.weight.grad.abs().sum() > 0 for layer in D.c_mapping)
