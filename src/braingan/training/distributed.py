"""Data-parallel training of a GAN under manual optimization, on Lightning's DDP.

Lightning's `DDPStrategy` launches the processes (its own launcher, torchrun, or SLURM's srun
tasks), sets up the process group, and moves the module to each device. What it cannot do for
StyleGAN2 is PyTorch's `DistributedDataParallel` wrapper: one training step runs four backward
passes on two networks (G main, lazy path length, D main, lazy R1 with a double backward), each
touching a different subset of the parameters, so the wrapper's reducer would need
`find_unused_parameters=True`, which all-reduces both networks on every pass and silently
accepts a parameter that never receives a gradient.

`GANDDPStrategy` therefore keeps the module unwrapped (weights and buffers are broadcast from
rank 0 once) and the module averages exactly the gradients of the optimizer it is about to step,
in one flat all-reduce per phase (`flat_gradients`), as the StyleGAN2-ADA paper's implementation does. A parameter
that should have a gradient and has none is an error (`missing_grads`), not a silent zero.

Everything else that must agree across ranks is reduced explicitly by the module: the path-length
running mean, the ADA statistic (so p is identical everywhere), the mapping network's tracked w
averages. `state_digests` fingerprints all of it, so a run can prove its ranks never diverged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import cast

import torch
import torch.distributed as dist
from pytorch_lightning.overrides.distributed import _sync_module_states
from pytorch_lightning.strategies import DDPStrategy


class GANDDPStrategy(DDPStrategy):
    """Lightning's DDP without the DistributedDataParallel wrapper; gradients are averaged by the module."""

    strategy_name = "ddp_gan"

    def configure_ddp(self) -> None:
        # Same start on every rank: rank 0's parameters and buffers.
        assert self.model is not None  # Lightning sets it before configure_ddp
        _sync_module_states(self.model)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_mean_(tensors: list[torch.Tensor]) -> None:
    """Averages same-device tensors over all ranks in place, in one flat all-reduce."""
    if not tensors or not is_distributed():
        return
    flat = torch.cat([t.reshape(-1).to(torch.float32) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    offset = 0
    for t in tensors:
        n = t.numel()
        t.copy_(flat[offset : offset + n].view_as(t))
        offset += n


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """The sum of `t` over all ranks (a new tensor; `t` itself when not distributed)."""
    if not is_distributed():
        return t
    out = t.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def flat_gradients(
    params: Iterable[torch.nn.Parameter], flag: torch.Tensor
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """The .grad of `params` as one flat tensor averaged over all ranks, and `flag` ([] bool) OR-ed over them.

    Returns (grads, flat, flag): the .grad tensors that exist (a regularizer skips e.g. output
    biases; every rank runs the same graph, so the same ones exist everywhere and stay None, and
    Adam skips them, as in one process), their concatenation averaged over the ranks, and the
    flag. One all-reduce carries both; the .grad tensors themselves are not changed.
    """
    grads = [cast(torch.Tensor, p.grad) for p in params if p.grad is not None]
    dtype = grads[0].dtype if grads else torch.float32
    flat = torch.cat([g.flatten() for g in grads] + [flag.to(dtype).reshape(1)])
    if is_distributed():  # in place: the concatenation above is the only copy
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= dist.get_world_size()
    return grads, flat[:-1], flat[-1] > 0


def missing_grads(named_params: Iterable[tuple[str, torch.nn.Parameter]]) -> list[str]:
    """Names of trainable parameters that received no gradient in the last backward pass."""
    return [name for name, p in named_params if p.requires_grad and p.grad is None]


def tensor_digest(t: torch.Tensor) -> str:
    """SHA-256 of a tensor's exact bytes (dtype and shape included)."""
    t = t.detach().cpu().contiguous()
    h = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def state_digests(module: torch.nn.Module) -> dict[str, str]:
    """{name: digest} of every parameter and buffer (persistent or not) of `module`."""
    out = {f"param:{n}": tensor_digest(p) for n, p in module.named_parameters()}
    out.update({f"buffer:{n}": tensor_digest(b) for n, b in module.named_buffers()})
    return out


def gather_objects(obj) -> list:
    """[obj of rank 0, obj of rank 1, ...]; [obj] when not distributed."""
    if not is_distributed():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def diverged(per_rank: list[dict[str, str]]) -> list[str]:
    """Names whose digest differs between ranks (or that some rank lacks)."""
    names = set().union(*per_rank)
    return sorted(n for n in names if len({d.get(n) for d in per_rank}) > 1)
