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


def test_class_w_avg_tracks_each_class_and_truncation_pulls_toward_it():
    m = _mapping(c_dim=3, w_avg_beta=0.5)
    z = torch.randn(6, 16)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])  # class 2 absent from the batch
    c = torch.nn.functional.one_hot(labels, 3).float()
    w = m(z, c)[:, 0]
    m(z, c, update_emas=True)
    assert torch.allclose(m.w_avg_class[0], w[:3].mean(0) * 0.5, atol=1e-5)
    assert torch.allclose(m.w_avg_class[1], w[3:].mean(0) * 0.5, atol=1e-5)
    assert torch.equal(m.w_avg_class[2], torch.zeros(16))  # untouched
    ws = m(torch.randn(4, 16), c[[0, 3, 0, 3]], truncation_psi=0.0)
    assert torch.allclose(ws[0], m.w_avg_class[0].expand(6, 16), atol=1e-6)
    assert torch.allclose(ws[1], m.w_avg_class[1].expand(6, 16), atol=1e-6)
    half = m(z[:1], c[:1], truncation_psi=0.5)
    assert torch.allclose(half, m.w_avg_class[0].lerp(m(z[:1], c[:1]), 0.5), atol=1e-6)
