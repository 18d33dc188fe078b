"""The pieces of data-parallel GAN training, in two real gloo processes on CPU."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from braingan.training.distributed import (
    all_reduce_mean_,
    all_reduce_sum,
    diverged,
    flat_gradients,
    gather_objects,
    missing_grads,
    state_digests,
    tensor_digest,
)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.LeakyReLU(0.2), nn.Linear(5, 1))


def _worker(rank: int, world: int, store: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        torch.manual_seed(100)
        data = torch.randn(8, 6)  # the global batch, the same on every rank
        net = _net()
        # This rank's half of the batch, mean loss, gradients averaged over the ranks ...
        net(data[rank * 4 : (rank + 1) * 4]).square().mean().backward()
        local = [p.grad.clone() for p in net.parameters()]
        grads, flat, flag = flat_gradients(net.parameters(), torch.tensor(rank == 1))  # rank 1 saw a NaN
        averaged = list(flat.split([p.numel() for p in net.parameters()]))
        averaged = [a.view_as(p) for a, p in zip(averaged, net.parameters())]
        unchanged = all(torch.equal(g, before) for g, before in zip(grads, local))
        # ... equals the gradient of the mean loss over the whole batch in one process.
        ref = _net()
        ref(data).square().mean().backward()
        reference = [p.grad.clone() for p in ref.parameters()]

        # A parameter the loss did not reach (no gradient on any rank) keeps no gradient, as in
        # one process (Adam then skips it); the others are averaged.
        extra, unused = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(2))
        extra.grad = torch.full((3,), 4.0 * rank)
        extra_grads, extra_flat, no_flag = flat_gradients([unused, extra], torch.tensor(False))

        buf = torch.tensor([float(rank), 10.0 * rank])
        all_reduce_mean_([buf])
        total = all_reduce_sum(torch.tensor([rank + 1.0]))

        same = state_digests(_net())
        other = _net()
        if rank == 1:
            with torch.no_grad():
                other[0].bias[0] += 1e-7  # the smallest divergence still shows
        results = {
            "local": local,
            "averaged": averaged,
            "reference": reference,
            "flag": bool(flag),
            "unchanged": unchanged,
            "extra": extra_flat.clone(),
            "extra_count": len(extra_grads),
            "no_flag": bool(no_flag),
            "unused": unused.grad,
            "buf": buf,
            "total": total,
            "agree": diverged(gather_objects(same)),
            "disagree": diverged(gather_objects(state_digests(other))),
        }
        Path(out, f"rank{rank}.pkl").write_bytes(pickle.dumps(results))
        # Done: the process ends here without destroying its process group. Before torch 2.8
        # (pytorch/pytorch#154976) that destructor holds the GIL while it joins the gloo worker threads, and
        # a worker still freeing the last all_gather_object's tensors waits for the GIL: a hang, about one
        # run in ten on torch 2.4.
        os._exit(0)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gloo")
    mp.spawn(_worker, args=(2, str(tmp / "store"), str(tmp)), nprocs=2, join=True)
    return [pickle.loads((tmp / f"rank{r}.pkl").read_bytes()) for r in range(2)]


def test_averaged_gradients_equal_the_global_batch_gradient(two_ranks):
    r0, r1 = two_ranks
    assert r0["flag"] and r1["flag"]  # one rank's flag reaches every rank, in the same all-reduce
    assert r0["unchanged"] and r1["unchanged"]  # the .grad tensors themselves are left alone
    for a, b, ref, l0, l1 in zip(r0["averaged"], r1["averaged"], r0["reference"], r0["local"], r1["local"]):
        assert torch.equal(a, b)  # bit-identical on both ranks
        torch.testing.assert_close(a, ref, rtol=1e-5, atol=1e-7)
        assert not torch.allclose(l0, l1)  # the ranks really had different gradients before


def test_unused_parameters_keep_no_gradient_and_buffers_average(two_ranks):
    r0, r1 = two_ranks
    assert torch.equal(r0["extra"], torch.full((3,), 2.0)) and torch.equal(r1["extra"], r0["extra"])
    assert r0["extra_count"] == r1["extra_count"] == 1 and not r0["no_flag"]
    assert r0["unused"] is None and r1["unused"] is None
    assert torch.equal(r0["buf"], torch.tensor([0.5, 5.0])) and torch.equal(r1["buf"], r0["buf"])
    assert float(r0["total"]) == float(r1["total"]) == 3.0


def test_divergence_between_ranks_is_named(two_ranks):
    r0, r1 = two_ranks
    assert r0["agree"] == r1["agree"] == []
    assert r0["disagree"] == r1["disagree"] == ["param:0.bias"]


def test_single_process_helpers_are_identities():
    t = torch.tensor([1.0, 2.0])
    all_reduce_mean_([t])
    assert torch.equal(t, torch.tensor([1.0, 2.0]))
    assert all_reduce_sum(t) is t
    assert gather_objects({"a": 1}) == [{"a": 1}]


def test_missing_grads_names_unused_trainable_parameters():
    net = _net()
    net[2](torch.randn(2, 5)).sum().backward()  # the first layer never ran
    assert missing_grads(net.named_parameters()) == ["0.weight", "0.bias"]
    net[0].weight.requires_grad_(False)
    assert missing_grads(net.named_parameters()) == ["0.bias"]


def test_tensor_digest_is_exact():
    a = torch.tensor([1.0, 2.0])
    assert tensor_digest(a) == tensor_digest(a.clone())
    assert tensor_digest(a) != tensor_digest(a.double())
    assert tensor_digest(a) != tensor_digest(torch.tensor([1.0, 2.0000002]))
    assert tensor_digest(torch.tensor(3.0)) != tensor_digest(torch.tensor([3.0]))
