"""An endless, reproducible, resumable stream of dataset indices, split across ranks.

GAN training is counted in images (kimg), not epochs, so the loader never ends. The stream is a
pure function of (size, seed): epoch e is the permutation drawn from
`torch.Generator().manual_seed(seed + e)`, and the epochs are concatenated into one global
stream. Rank r of world_size takes global positions r, r + world_size, r + 2 * world_size, ...
so ranks are disjoint within an epoch and together see every index once per epoch.

Because the stream is a function of position alone, resuming needs a single integer:
`start` = how many indices this rank has already consumed. The sampler jumps straight to that
position (whole epochs are skipped arithmetically, not by iterating), so
`InfiniteSampler(..., start=k)` yields exactly the stream of `InfiniteSampler(...)` minus its
first k items.

Class-balanced sampling (`labels=` given): each epoch draws every class equally often. Its length
is num_classes x the largest class's size; smaller classes are repeated (each repetition a fresh
permutation, the last one cut short) so each class fills its share, then the whole epoch is
shuffled. The stream stays a pure function of position, so resume works the same way.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch


class InfiniteSampler(torch.utils.data.Sampler[int]):
    """Endless per-rank index stream over `size` items; see the module docstring."""

    def __init__(
        self,
        size: int,  # number of items in the dataset
        rank: int = 0,  # this process's rank, 0 <= rank < world_size
        world_size: int = 1,  # number of processes sharing the stream
        seed: int = 0,  # epoch e is shuffled with seed + e
        start: int = 0,  # indices this rank already consumed (resume point)
        shuffle: bool = True,  # False: every epoch is 0, 1, ..., size - 1
        labels: Sequence[int] | None = None,  # [size] class of each item: draw classes equally
    ) -> None:
        if size < 1:
            raise ValueError(f"InfiniteSampler needs size >= 1, got {size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"InfiniteSampler needs 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
        if start < 0:
            raise ValueError(f"InfiniteSampler needs start >= 0, got {start}")
        super().__init__()
        self.size = size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.start = start
        self.shuffle = shuffle
        self.classes: list[torch.Tensor] = []  # indices of each class, when balancing
        if labels is not None:
            label_of = torch.as_tensor(list(labels), dtype=torch.int64)  # [size]
            if label_of.numel() != size:
                raise ValueError(f"InfiniteSampler got {label_of.numel()} labels for {size} items")
            self.classes = [torch.nonzero(label_of == k).flatten() for k in label_of.unique()]
        self.epoch_len = len(self.classes) * max(len(c) for c in self.classes) if self.classes else size

    def epoch_order(self, epoch: int) -> list[int]:
        """The global order of the indices in `epoch`, [epoch_len]."""
        generator = torch.Generator().manual_seed(self.seed + epoch)
        if self.classes:
            largest = max(len(c) for c in self.classes)
            parts = []
            for members in self.classes:
                repeats = -(-largest // len(members))
                drawn = [members[torch.randperm(len(members), generator=generator)] for _ in range(repeats)]
                parts.append(torch.cat(drawn)[:largest])
            order = torch.cat(parts)  # [epoch_len]
            return order[torch.randperm(len(order), generator=generator)].tolist()
        if not self.shuffle:
            return list(range(self.size))
        return torch.randperm(self.size, generator=generator).tolist()

    def __iter__(self) -> Iterator[int]:
        position = self.rank + self.start * self.world_size  # global position of the next item
        epoch, order = -1, []
        while True:
            current = position // self.epoch_len
            if current != epoch:
                epoch, order = current, self.epoch_order(current)
            yield order[position - epoch * self.epoch_len]
            position += self.world_size
