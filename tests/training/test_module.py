"""StyleGAN2Module: the fixed sample grid shows every class, one row each; a bad step is skipped exactly."""

from __future__ import annotations

import pytest
import torch

from braingan.experiment.settings import build_configs
from braingan.training.module import ADAM, StyleGAN2Module, keep_scale_if
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


def _module_and_adam(tmp_path):
    cfg = compose(["model=tiny", "resolution=32", f"run_dir={tmp_path}"])
    net, train_cfg = build_configs(cfg, 0)
    torch.manual_seed(0)
    module = StyleGAN2Module(net, train_cfg)
    return module, torch.optim.Adam(module.D.parameters(), lr=0.01, betas=(0.0, 0.99), **ADAM)


def _backward(module, scale: float) -> torch.Tensor:
    module.D.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    loss = module.D(torch.randn(4, 1, 32, 32), None).mean() * scale
    loss.backward()
    return loss


def _snapshot(module, opt) -> list[torch.Tensor]:
    state = [t for p in module.D.parameters() for t in opt.state[p].values()]
    return [p.detach().clone() for p in module.D.parameters()] + [t.clone() for t in state]


def test_a_step_with_a_nonfinite_loss_changes_nothing(tmp_path):
    """Weights, both Adam moments and the step count stay bit-identical; the decision stays a tensor."""
    module, opt = _module_and_adam(tmp_path)
    loss = _backward(module, 1.0)
    ok = module._opt_step(opt, "D main", ~torch.isfinite(loss), module.D)
    assert isinstance(ok, torch.Tensor) and bool(ok)
    before = _snapshot(module, opt)
    loss = _backward(module, float("nan"))
    ok = module._opt_step(opt, "D main", ~torch.isfinite(loss), module.D)
    assert not bool(ok)
    after = _snapshot(module, opt)
    assert len(after) == len(before) > 3 * 10
    assert all(torch.equal(a, b) for a, b in zip(after, before))
    assert not hasattr(opt, "found_inf")
    # The next good step moves them again (the skip did not break the optimizer).
    loss = _backward(module, 1.0)
    assert bool(module._opt_step(opt, "D main", ~torch.isfinite(loss), module.D))
    assert not all(torch.equal(a, b) for a, b in zip(_snapshot(module, opt), before))


def test_nonfinite_gradients_of_a_finite_loss_are_replaced_and_the_step_taken(tmp_path):
    module, opt = _module_and_adam(tmp_path)
    loss = _backward(module, 1.0)
    weight = next(module.D.parameters())
    weight.grad.view(-1)[:3] = torch.tensor([float("nan"), float("inf"), -float("inf")])
    ok = module._opt_step(opt, "D main", ~torch.isfinite(loss), module.D)
    assert bool(ok)
    assert weight.grad.view(-1)[:3].tolist() == [0.0, 1e5, -1e5]
    assert all(torch.isfinite(p).all() for p in module.D.parameters())
    assert float(opt.state[weight]["step"]) == 1.0


@pytest.mark.parametrize("flag", [True, False])
def test_keep_scale_if_restores_the_scaler_only_when_told(flag):
    """A real GradScaler that sees an overflow halves its scale; keep_scale_if(flag=True) undoes that."""
    param = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([param], lr=0.1, **ADAM)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    scaler.scale((param * float("inf")).sum()).backward()
    with keep_scale_if(scaler, torch.tensor(flag)):
        scaler.step(opt)
        scaler.update()
    assert torch.equal(param.detach(), torch.ones(3))  # the overflow step was skipped either way
    assert scaler.get_scale() == (2.0**10 if flag else 2.0**9)
