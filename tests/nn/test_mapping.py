import torch

from braingan.nn.mapping import MappingNetwork, normalize_2nd_moment


def test_normalize_2nd_moment():
    z = torch.randn(8, 16) * 5
    assert torch.allclose(normalize_2nd_moment(z).square().mean(dim=1), torch.ones(8), atol=1e-5)


def _mapping(**kw):
    return MappingNetwork(z_dim=16, c_dim=kw.pop("c_dim", 0), w_dim=16, num_ws=6, num_layers=8, **kw)


def test_shapes_depth_and_lr_multiplier():
    m = _mapping()
    assert len(m.layers) == 8
    assert all(layer.weight_gain == 0.01 / 4 for layer in m.layers)
    ws = m(torch.randn(5, 16))
    assert ws.shape == (5, 6, 16)
    assert torch.equal(ws[:, 0], ws[:, 5])


def test_truncation_psi_zero_returns_w_avg_and_cutoff():
    m = _mapping()
    m(torch.randn(64, 16), update_emas=True)
    assert m.w_avg.abs().sum() > 0
    ws = m(torch.randn(4, 16), truncation_psi=0.0)
    assert torch.allclose(ws, m.w_avg.expand_as(ws), atol=1e-6)
    ws_full = m(torch.zeros(1, 16) + 1)
    ws_cut = m(torch.zeros(1, 16) + 1, truncation_psi=0.5, truncation_cutoff=2)
    assert torch.allclose(ws_cut[:, 2:], ws_full[:, 2:])
    assert torch.allclose(ws_cut[:, :2], m.w_avg.lerp(ws_full[:, :2], 0.5), atol=1e-6)


def test_w_avg_tracks_mean_with_beta():
    m = _mapping(w_avg_beta=0.5)
    z = torch.randn(32, 16)
    w = m(z)[:, 0].mean(dim=0)
    m(z, update_emas=True)
    assert torch.allclose(m.w_avg, w * 0.5, atol=1e-5)


def test_conditional_embedding_changes_w():
    m = _mapping(c_dim=2)
    z = torch.randn(3, 16)
    c0 = torch.nn.functional.one_hot(torch.zeros(3, dtype=torch.long), 2).float()
    c1 = torch.nn.functional.one_hot(torch.ones(3, dtype=torch.long), 2).float()
    assert not torch.allclose(m(z, c0), m(z, c1))
