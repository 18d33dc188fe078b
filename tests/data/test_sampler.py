"""InfiniteSampler: epoch permutations, determinism, rank split, and exact resume via start."""

from __future__ import annotations

from itertools import islice

import pytest
import torch

from braingan.data.sampler import InfiniteSampler


def take(sampler: InfiniteSampler, n: int) -> list[int]:
    return list(islice(iter(sampler), n))


def test_epochs_are_the_seeded_permutations() -> None:
    stream = take(InfiniteSampler(10, seed=3), 30)
    for epoch in range(3):
        expected = torch.randperm(10, generator=torch.Generator().manual_seed(3 + epoch)).tolist()
        assert stream[10 * epoch : 10 * (epoch + 1)] == expected
    assert stream[:10] != stream[10:20]  # a new order every epoch


def test_deterministic_and_seed_dependent() -> None:
    assert take(InfiniteSampler(50, seed=1), 200) == take(InfiniteSampler(50, seed=1), 200)
    assert take(InfiniteSampler(50, seed=1), 50) != take(InfiniteSampler(50, seed=2), 50)
    # iterating twice restarts the same stream (a fresh DataLoader iterator sees the same data)
    sampler = InfiniteSampler(50, seed=1)
    assert take(sampler, 60) == take(sampler, 60)


def test_no_shuffle_repeats_identity() -> None:
    assert take(InfiniteSampler(4, shuffle=False), 10) == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]


@pytest.mark.parametrize("size,world_size", [(12, 3), (10, 3), (7, 2), (2, 3)])
def test_ranks_interleave_into_the_single_process_stream(size: int, world_size: int) -> None:
    per_rank = 40
    streams = [take(InfiniteSampler(size, rank=r, world_size=world_size, seed=5), per_rank) for r in range(world_size)]
    interleaved = [streams[i % world_size][i // world_size] for i in range(per_rank * world_size)]
    assert interleaved == take(InfiniteSampler(size, seed=5), per_rank * world_size)


def test_ranks_are_disjoint_within_an_epoch() -> None:
    size, world_size = 12, 4
    shares = [
        take(InfiniteSampler(size, rank=r, world_size=world_size, seed=9), size // world_size)
        for r in range(world_size)
    ]
    flat = [i for share in shares for i in share]
    assert sorted(flat) == list(range(size))  # every index exactly once across the ranks


@pytest.mark.parametrize("world_size,rank", [(1, 0), (3, 0), (3, 2)])
@pytest.mark.parametrize("start", [0, 1, 6, 7, 8, 23, 1000])
def test_start_drops_exactly_the_first_items(world_size: int, rank: int, start: int) -> None:
    full = take(InfiniteSampler(7, rank=rank, world_size=world_size, seed=4), start + 25)
    resumed = take(InfiniteSampler(7, rank=rank, world_size=world_size, seed=4, start=start), 25)
    assert resumed == full[start:]


def test_large_start_is_arithmetic_not_iterated() -> None:
    # 10^12 items in: iterating there would never finish; the jump is instant.
    start = 10**12 + 3
    sampler = InfiniteSampler(1000, seed=0, start=start)
    epoch, offset = divmod(start, 1000)
    expected = torch.randperm(1000, generator=torch.Generator().manual_seed(epoch)).tolist()
    assert take(sampler, 5) == expected[offset : offset + 5]


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        InfiniteSampler(0)
    with pytest.raises(ValueError):
        InfiniteSampler(5, rank=2, world_size=2)
    with pytest.raises(ValueError):
        InfiniteSampler(5, start=-1)


def test_balanced_sampling_draws_classes_equally_and_resumes() -> None:
    labels = [0] * 12 + [1] * 3 + [2] * 1  # 12 : 3 : 1
    sampler = InfiniteSampler(len(labels), seed=5, labels=labels)
    assert sampler.epoch_len == 3 * 12
    stream = list(islice(iter(sampler), 3 * 36))
    counts = [sum(labels[i] == k for i in stream) for k in range(3)]
    assert counts == [36, 36, 36]
    first_epoch = stream[:36]
    assert sorted(i for i in first_epoch if labels[i] == 0) == list(range(12))  # majority: each once
    assert sorted(i for i in first_epoch if labels[i] == 1) == sorted([12, 13, 14] * 4)
    resumed = list(islice(iter(InfiniteSampler(len(labels), seed=5, start=50, labels=labels)), 20))
    assert resumed == stream[50:70]
    with pytest.raises(ValueError, match="labels"):
        InfiniteSampler(5, labels=[0, 1])
