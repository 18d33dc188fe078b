"""nn.grid_sample: F.grid_sample's values and gradients, plus the second derivative R1 needs.

The reference is the operation as an explicit matrix (y = A x, A built by sampling the unit
images), whose first and second derivatives plain matmul autograd gives on any torch.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from braingan.nn.grid_sample import grid_sample

N, C, H, W = 2, 2, 5, 6


def warp_grid(seed: int = 0) -> torch.Tensor:  # [N, H, W, 2]: a small rotation, scale and shift per sample
    g = torch.Generator().manual_seed(seed)
    theta = torch.eye(2, 3).repeat(N, 1, 1) + 0.2 * torch.randn(N, 2, 3, generator=g, dtype=torch.float64).float()
    return F.affine_grid(theta, (N, C, H, W), align_corners=False)


def as_matrix(grid: torch.Tensor, padding_mode: str) -> torch.Tensor:
    """[N, H*W, H*W]: A[n] with grid_sample(x)[n, c] = A[n] @ x[n, c].flatten()."""
    eye = torch.eye(H * W, dtype=torch.float64).reshape(H * W, 1, H, W)  # the unit images
    cols = [
        F.grid_sample(eye, grid[n : n + 1].double().expand(H * W, -1, -1, -1), padding_mode=padding_mode)
        for n in range(N)
    ]
    return torch.stack([c.reshape(H * W, H * W).T for c in cols])


def matrix_sample(x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    return torch.einsum("nij,ncj->nci", a, x.flatten(2)).reshape(x.shape)


@pytest.mark.parametrize("padding_mode", ["zeros", "border", "reflection"])
def test_values_and_gradients_are_torchs(padding_mode: str) -> None:
    grid = warp_grid()
    x = torch.randn(N, C, H, W, requires_grad=True)
    ours, ref = grid_sample(x, grid, padding_mode=padding_mode), F.grid_sample(x, grid, padding_mode=padding_mode)
    assert torch.equal(ours, ref)
    g = torch.randn_like(ref)
    (a,) = torch.autograd.grad(ours, x, g)
    (b,) = torch.autograd.grad(ref, x, g)
    assert torch.equal(a, b)  # the same kernel


@pytest.mark.parametrize("padding_mode", ["zeros", "reflection"])
def test_a_gradient_penalty_through_it_matches_the_matrix_form(padding_mode: str) -> None:
    # R1 in miniature: D(y) = sum(v * tanh(y)), penalty = |dD/dx|^2, gradients with respect to v and x.
    grid = warp_grid(1)
    a = as_matrix(grid, padding_mode)
    x0 = torch.randn(N, C, H, W, dtype=torch.float64)
    v0 = torch.randn(N, C, H, W, dtype=torch.float64)

    def penalty_grads(sample) -> tuple[torch.Tensor, torch.Tensor]:
        x, v = x0.clone().requires_grad_(), v0.clone().requires_grad_()
        d = (v * torch.tanh(sample(x))).sum()
        (dx,) = torch.autograd.grad(d, x, create_graph=True)
        dx.square().sum().backward()
        return x.grad, v.grad

    ours = penalty_grads(lambda x: grid_sample(x, grid.double(), padding_mode=padding_mode))
    ref = penalty_grads(lambda x: matrix_sample(x, a))
    for got, want in zip(ours, ref):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    # and F.grid_sample itself where this torch has the second derivative
    try:
        native = penalty_grads(lambda x: F.grid_sample(x, grid.double(), padding_mode=padding_mode))
    except RuntimeError as error:
        assert "grid_sampler_2d_backward" in str(error)  # torch 2.11 and older
    else:
        for got, want in zip(ours, native):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_a_grid_that_needs_a_gradient_takes_torchs_path() -> None:
    grid = warp_grid().requires_grad_()
    x = torch.randn(N, C, H, W, requires_grad=True)
    y = grid_sample(x, grid)
    assert y.grad_fn is not None and "GridSampler" in type(y.grad_fn).__name__
    y.sum().backward()
    assert grid.grad is not None and x.grad is not None
