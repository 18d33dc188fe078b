"""Improved precision and recall (Kynkaanniemi et al. 2019) on feature vectors.

Each set is turned into a manifold estimate: the union of balls around its points, each ball's
radius the distance to the point's k-th nearest neighbour in the same set (k = 3; the point
itself does not count). Then

    precision = share of generated points inside the real manifold   (fidelity)
    recall    = share of real points inside the generated manifold   (diversity)

A point is inside when its distance to some point of the other set is <= that point's radius
(the official code's `<=`). Distances come in row blocks of the [N, M] matrix, from
||x||^2 + ||y||^2 - 2 x . y, so memory stays at `block_rows` x M; float64 by default.
Squared distances are compared throughout (same order as distances).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from braingan.metrics.fid import as_float64


class PrecisionRecall(NamedTuple):
    precision: float  # share of generated samples on the real manifold, [0, 1]
    recall: float  # share of real samples on the generated manifold, [0, 1]


def as_tensor(features, dtype: torch.dtype, device: torch.device | str | None) -> torch.Tensor:
    """Features (array or tensor) as a detached tensor of that dtype on that device."""
    if not isinstance(features, torch.Tensor):
        features = torch.from_numpy(as_float64(features))
    return features.detach().to(device=device, dtype=dtype)


def pairwise_sq_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared Euclidean distances, [N, M] for x [N, D], y [M, D]; clamped at 0."""
    sq = x.square().sum(1, keepdim=True) + y.square().sum(1) - 2 * x @ y.T
    return sq.clamp_(min=0)


def knn_sq_radii(
    features: torch.Tensor,  # [N, D]
    k: int = 3,  # neighbourhood size, the point itself excluded
    block_rows: int = 1024,  # rows of the distance matrix held at once
) -> torch.Tensor:
    """Squared distance from each point to its k-th nearest other point, [N]."""
    if features.shape[0] <= k:
        raise ValueError(f"k={k} nearest neighbours need more than {k} points, got {features.shape[0]}")
    radii = []
    for start in range(0, features.shape[0], block_rows):
        sq = pairwise_sq_distances(features[start : start + block_rows], features)
        radii.append(sq.kthvalue(k + 1, dim=1).values)  # k + 1: the point's own 0 comes first
    return torch.cat(radii)


def manifold_coverage(
    manifold: torch.Tensor,  # [N, D] points whose balls form the manifold
    sq_radii: torch.Tensor,  # [N] squared ball radii
    probes: torch.Tensor,  # [M, D] points tested
    block_rows: int = 1024,  # probe rows held at once
) -> float:
    """Share of `probes` inside at least one ball of the manifold."""
    inside = 0
    for start in range(0, probes.shape[0], block_rows):
        sq = pairwise_sq_distances(probes[start : start + block_rows], manifold)  # [B, N]
        inside += int((sq <= sq_radii.unsqueeze(0)).any(dim=1).sum())
    return inside / probes.shape[0]


def precision_recall(
    real,  # [N, D] real features (array or tensor)
    fake,  # [M, D] generated features
    k: int = 3,  # nearest neighbour defining each ball
    block_rows: int = 1024,  # distance-matrix rows held at once
    dtype: torch.dtype = torch.float64,  # distance arithmetic (float32 halves memory)
    device: torch.device | str | None = None,  # None: CPU
) -> PrecisionRecall:
    """Improved precision/recall of `fake` against `real`."""
    x = as_tensor(real, dtype, device)
    y = as_tensor(fake, dtype, device)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"need features [N, D] and [M, D], got {tuple(x.shape)} and {tuple(y.shape)}")
    precision = manifold_coverage(x, knn_sq_radii(x, k, block_rows), y, block_rows)
    recall = manifold_coverage(y, knn_sq_radii(y, k, block_rows), x, block_rows)
    return PrecisionRecall(precision=precision, recall=recall)
