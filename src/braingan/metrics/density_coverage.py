"""Density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for Generative Models").

Both use balls around the REAL points only, each ball's radius the distance to the point's k-th
nearest other real point (k = 5 in the paper):

    density  = 1 / (k M) * sum over generated y of the number of real balls that contain y   (fidelity, >= 0;
               about 1 when the two sets come from one distribution, above 1 where fakes crowd dense real regions)
    coverage = share of real points whose ball contains at least one generated point      (diversity, [0, 1])

"Contains" is the official code's strict `<` (clovaai/generative-evaluation-prdc). Unlike
precision/recall, no ball is built around generated points, so a few outlying fakes do not
inflate anything. Distances come in blocks of real rows of the [N, M] real-to-generated matrix
(as in precision_recall.py), so memory stays at `block_rows` x M; squared distances throughout.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from braingan.metrics.precision_recall import as_tensor, knn_sq_radii, pairwise_sq_distances


class DensityCoverage(NamedTuple):
    density: float  # mean count of real balls holding a generated point, over k; >= 0, about 1 when matched
    coverage: float  # share of real balls holding a generated point, [0, 1]


def density_coverage(
    real,  # [N, D] real features (array or tensor), N > k
    fake,  # [M, D] generated features
    k: int = 5,  # the k-th nearest real neighbour sets each real ball's radius
    block_rows: int = 1024,  # real rows of the distance matrix held at once
    dtype: torch.dtype = torch.float64,  # distance arithmetic
    device: torch.device | str | None = None,  # None: CPU
) -> DensityCoverage:
    """Density and coverage of `fake` against `real`."""
    x = as_tensor(real, dtype, device)
    y = as_tensor(fake, dtype, device)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or len(y) == 0:
        raise ValueError(f"need features [N, D] and [M, D], M > 0, got {tuple(x.shape)} and {tuple(y.shape)}")
    sq_radii = knn_sq_radii(x, k, block_rows)  # [N]; refuses N <= k
    balls_per_fake = torch.zeros(len(y), dtype=torch.int64, device=y.device)
    covered = 0
    for start in range(0, len(x), block_rows):
        inside = pairwise_sq_distances(x[start : start + block_rows], y) < sq_radii[start : start + block_rows, None]
        balls_per_fake += inside.sum(dim=0)  # [M]: balls of this block holding each fake
        covered += int(inside.any(dim=1).sum())  # real points of this block with a fake in their ball
    return DensityCoverage(density=float(balls_per_fake.sum()) / (k * len(y)), coverage=covered / len(x))
