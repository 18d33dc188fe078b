"""Memorization audit: does the generator copy its training slices?

The data-copying test (Meehan et al. 2020) in the form medical GAN papers use: for every
generated slice find its nearest training slice, and compare those distances with the same
distances from real slices of HELD-OUT subjects to the training slices. Held-out subjects are
new brains from the same distribution, so their nearest-neighbour similarity is what "close but
not copied" looks like. A generated slice closer to a training slice than all but 1% of the
held-out slices are (similarity above the held-out 99th percentile) is a near copy.

Two similarities, both in [-1, 1], higher = closer:
    feature  cosine similarity of Inception features (semantic closeness)
    pixel    Pearson correlation of the pixels (a copy up to brightness/contrast)
A slice counts as a near copy when it passes the threshold in both, so neither a generic
Inception match nor a bright/dark correlation alone flags it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

CHUNK = 1024  # query rows per similarity block (bounds memory at CHUNK x reference size)


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def nearest_cosine(
    query: torch.Tensor,  # [n, d] features
    reference: torch.Tensor,  # [m, d] features
) -> tuple[torch.Tensor, torch.Tensor]:
    """(highest cosine similarity [n], index of that reference row [n])."""
    q, r = _unit_rows(query.double()), _unit_rows(reference.double())
    best, index = [], []
    for start in range(0, len(q), CHUNK):
        sim = q[start : start + CHUNK] @ r.t()  # [chunk, m]
        value, where = sim.max(dim=1)
        best.append(value)
        index.append(where)
    return torch.cat(best).float(), torch.cat(index)


def nearest_correlation(
    query: torch.Tensor,  # [n, C, H, W] images (any dtype)
    reference: torch.Tensor,  # [m, C, H, W] images of the same size
) -> tuple[torch.Tensor, torch.Tensor]:
    """(highest Pearson correlation of the pixels [n], index of that reference image [n])."""
    q = query.reshape(len(query), -1).double()
    r = reference.reshape(len(reference), -1).double()
    return nearest_cosine(q - q.mean(dim=1, keepdim=True), r - r.mean(dim=1, keepdim=True))


@dataclass
class AuditResult:
    """What `data_copying_audit` found; `summary()` is what goes into metrics.json."""

    feature_threshold: float  # held-out 99th percentile of nearest cosine similarity
    pixel_threshold: float  # held-out 99th percentile of nearest pixel correlation
    near_copy_fraction: float  # generated slices above both thresholds / all generated
    heldout_fraction: float  # held-out slices above both thresholds (about 0.01 or less)
    gen_feature_sim: np.ndarray  # [n] nearest training cosine similarity per generated slice
    gen_pixel_corr: np.ndarray  # [n] nearest training pixel correlation per generated slice
    gen_nearest: np.ndarray  # [n] index of the nearest training slice (pixel space)
    near_copy: np.ndarray  # [n] bool
    copies_per_subject: dict[str, int] = field(default_factory=dict)  # training subject -> near copies

    def summary(self) -> dict:
        return {
            "near_copy_fraction": self.near_copy_fraction,
            "heldout_baseline_fraction": self.heldout_fraction,
            "feature_threshold": self.feature_threshold,
            "pixel_threshold": self.pixel_threshold,
            "median_feature_similarity": float(np.median(self.gen_feature_sim)),
            "median_pixel_correlation": float(np.median(self.gen_pixel_corr)),
            "num_generated": int(len(self.near_copy)),
            "copies_per_subject": dict(self.copies_per_subject),
        }

    def closest(self, count: int) -> np.ndarray:
        """Indices of the `count` generated slices most correlated with a training slice."""
        return np.argsort(-self.gen_pixel_corr, kind="stable")[:count]


def data_copying_audit(
    gen_features: torch.Tensor,  # [n, d] Inception features of generated slices
    train_features: torch.Tensor,  # [m, d] of the training slices
    heldout_features: torch.Tensor,  # [h, d] of held-out subjects' slices
    gen_images: torch.Tensor,  # [n, C, H, W] generated slices
    train_images: torch.Tensor,  # [m, C, H, W] training slices (same size)
    heldout_images: torch.Tensor,  # [h, C, H, W] held-out slices
    train_subjects: Sequence[str],  # [m] subject of each training slice
    percentile: float = 99.0,  # held-out percentile that defines "too close"
) -> AuditResult:
    """Nearest-training-slice similarities of generated vs held-out slices; see module docstring."""
    if len(train_subjects) != len(train_features) or len(train_images) != len(train_features):
        raise ValueError("train_features, train_images and train_subjects must have the same length")
    held_feat, _ = nearest_cosine(heldout_features, train_features)
    held_pix, _ = nearest_correlation(heldout_images, train_images)
    feature_threshold = float(np.percentile(held_feat.numpy(), percentile))
    pixel_threshold = float(np.percentile(held_pix.numpy(), percentile))
    gen_feat, _ = nearest_cosine(gen_features, train_features)
    gen_pix, gen_index = nearest_correlation(gen_images, train_images)
    near = (gen_feat.numpy() > feature_threshold) & (gen_pix.numpy() > pixel_threshold)
    held_near = (held_feat.numpy() > feature_threshold) & (held_pix.numpy() > pixel_threshold)
    copies = Counter(train_subjects[int(i)] for i in gen_index.numpy()[near])
    return AuditResult(
        feature_threshold=feature_threshold,
        pixel_threshold=pixel_threshold,
        near_copy_fraction=float(near.mean()),
        heldout_fraction=float(held_near.mean()),
        gen_feature_sim=gen_feat.numpy(),
        gen_pixel_corr=gen_pix.numpy(),
        gen_nearest=gen_index.numpy(),
        near_copy=near,
        copies_per_subject=dict(sorted(copies.items(), key=lambda kv: -kv[1])),
    )
