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
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


class InfiniteSampler(torch.utils.data.Sampler[int]):
    """Endless per-rank index stream over `size` items; see the module docstring."""

    def __init__(
        self,
        size: int,            # number of items in the dataset
        rank: int = 0,        # this process's rank, 0 <= rank < world_size
        world_size: int = 1,  # number of processes sharing the stream
        seed: int = 0,        # epoch e is shuffled with seed + e
        start: int = 0,       # indices this rank already consumed (resume point)
        shuffle: bool = True, # False: every epoch is 0, 1, ..., size - 1
    ) -> None:
        if size < 1:
            raise ValueError(f"InfiniteSampler needs size >= 1, got {size}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"InfiniteSampler needs 0 <= rank < world_size, got rank={rank}, "
                f"world_size={world_size}"
            )
        if start < 0:
            raise ValueError(f"InfiniteSampler needs start >= 0, got {start}")
        super().__init__()
        self.size = size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.start = start
        self.shuffle = shuffle

    def epoch_order(self, epoch: int) -> list[int]:
        """The global order of all indices in `epoch`, [size]."""
        if not self.shuffle:
            return list(range(self.size))
        generator = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.size, generator=generator).tolist()

    def __iter__(self) -> Iterator[int]:
        position = self.rank + self.start * self.world_size  # global position of the next item
        epoch, order = -1, []
        while True:
            current = position // self.size
            if current != epoch:
                epoch, order = current, self.epoch_order(current)
            yield order[position - epoch * self.size]
            position += self.world_size
