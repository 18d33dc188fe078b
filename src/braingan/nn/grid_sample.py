"""`grid_sample` whose image gradient is differentiable again, for R1 through ADA's geometric warp.

R1 penalises the gradient of D with respect to the (augmented) real images, so its backward
differentiates a backward. F.grid_sample has no such second derivative in older torch: 2.4.1 and
2.11.0 raise "derivative for aten::grid_sampler_2d_backward is not implemented" (2.13.0 and 2.14.1
have it; 2.12 is unchecked).
With a grid that needs no gradient, as the augment's (drawn from random parameters), the operation
is linear in the image, y = A x: its gradient is A^T g, whose derivative with respect to g is A
again, i.e. grid_sample of the incoming gradient, and with respect to x is zero. The forward and
the first backward are torch's own kernels, so values and first-order gradients are unchanged.
A grid that needs a gradient goes to F.grid_sample as it is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# at::native::GridSamplerInterpolation and GridSamplerPadding: the integer arguments of the aten backward op
INTERPOLATION = {"bilinear": 0, "nearest": 1, "bicubic": 2}
PADDING = {"zeros": 0, "border": 1, "reflection": 2}


def grid_sample(
    x: torch.Tensor,  # [N, C, H_in, W_in]
    grid: torch.Tensor,  # [N, H, W, 2] sampling positions in [-1, 1] (x, y)
    mode: str = "bilinear",
    padding_mode: str = "zeros",
    align_corners: bool = False,
) -> torch.Tensor:  # [N, C, H, W]
    """F.grid_sample with the same arguments and values, differentiable twice with respect to x."""
    if grid.requires_grad:
        return F.grid_sample(x, grid, mode=mode, padding_mode=padding_mode, align_corners=align_corners)
    return _GridSample.apply(x, grid, mode, padding_mode, align_corners)


class _GridSample(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, grid, mode, padding_mode, align_corners):
        ctx.save_for_backward(x, grid)
        ctx.options = (mode, padding_mode, align_corners)
        return F.grid_sample(x, grid, mode=mode, padding_mode=padding_mode, align_corners=align_corners)

    @staticmethod
    def backward(ctx, grad_y):
        x, grid = ctx.saved_tensors
        grad_x = _GridSampleImageGrad.apply(grad_y, x, grid, *ctx.options) if ctx.needs_input_grad[0] else None
        return grad_x, None, None, None, None


class _GridSampleImageGrad(torch.autograd.Function):
    """A^T grad_y: grid_sample's gradient with respect to the image, differentiable in grad_y."""

    @staticmethod
    def forward(ctx, grad_y, x, grid, mode, padding_mode, align_corners):
        ctx.save_for_backward(grid)
        ctx.options = (mode, padding_mode, align_corners)
        grad_x, _ = torch.ops.aten.grid_sampler_2d_backward(
            grad_y, x, grid, INTERPOLATION[mode], PADDING[padding_mode], align_corners, [True, False]
        )
        return grad_x

    @staticmethod
    def backward(ctx, grad_grad_x):
        (grid,) = ctx.saved_tensors
        grad_grad_y = _GridSample.apply(grad_grad_x, grid, *ctx.options) if ctx.needs_input_grad[0] else None
        return grad_grad_y, None, None, None, None, None  # A^T g does not depend on the image's values
