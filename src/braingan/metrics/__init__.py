"""Evaluation metrics on Inception-v3 features: FID, KID, improved precision/recall, and the
real-statistics cache. Plain modules: no Lightning, no Hydra.

    inception.py         InceptionFeatures: uint8 [N, C, H, W] -> float32 [N, 2048], offline TF weights
    features.py          batched extraction from tensors or image files, with a progress bar
    fid.py               FeatureStats, frechet_distance, fid_from_features
    kid.py               kernel_inception_distance (mean, std over subsets)
    precision_recall.py  precision_recall (k-NN manifolds, k = 3)
    stats_cache.py       load_or_compute: real features and statistics cached as .npz
"""

from braingan.metrics.features import extract_features, extract_features_from_files, read_gray_uint8
from braingan.metrics.fid import FeatureStats, fid_from_features, fid_from_stats, frechet_distance
from braingan.metrics.inception import (
    INCEPTION_SIZE,
    INPUT_RANGE,
    InceptionFeatures,
    default_extractor_path,
    file_sha256,
    to_inception_input,
)
from braingan.metrics.kid import KIDResult, kernel_inception_distance
from braingan.metrics.precision_recall import PrecisionRecall, precision_recall
from braingan.metrics.stats_cache import RealStats, load_or_compute, stats_key

__all__ = [
    "INCEPTION_SIZE",
    "INPUT_RANGE",
    "FeatureStats",
    "InceptionFeatures",
    "KIDResult",
    "PrecisionRecall",
    "RealStats",
    "default_extractor_path",
    "extract_features",
    "extract_features_from_files",
    "fid_from_features",
    "fid_from_stats",
    "file_sha256",
    "frechet_distance",
    "kernel_inception_distance",
    "load_or_compute",
    "precision_recall",
    "read_gray_uint8",
    "stats_key",
    "to_inception_input",
]
