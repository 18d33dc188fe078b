"""Feature extraction in batches: from uint8 image tensors (generated) or from image files (real).

Both return float32 numpy [N, D] in input order. The extractor is any module mapping uint8
[B, C, H, W] to [B, D], normally `InceptionFeatures`; `device` moves it (and each batch) there.
Files are decoded to 8-bit grayscale [1, H, W] (RGB files through PIL's luma conversion); runs of
equally sized files share a batch, a size change starts a new one (the extractor resizes).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm


def extract_features(
    extractor: nn.Module,  # uint8 [B, C, H, W] -> [B, D]
    images: torch.Tensor | Iterable,  # uint8 [N, C, H, W], or an iterable of such batches
    batch_size: int = 64,  # images per call when `images` is one tensor
    device: torch.device | str | None = None,  # None: wherever the extractor already is
    progress: bool = True,  # tqdm bar counting images
    desc: str = "features",  # label of the bar
    total: int | None = None,  # image count of an iterable, for the bar; None: unknown
) -> np.ndarray:  # float32 [N, D]
    if device is not None:
        extractor.to(device)
    batches: Iterable
    if isinstance(images, torch.Tensor | np.ndarray):
        total = images.shape[0]
        batches = (images[i : i + batch_size] for i in range(0, images.shape[0], batch_size))
    else:
        batches = images
    out = []
    with tqdm(total=total, desc=desc, unit="img", disable=not progress) as bar:
        for batch in batches:
            batch = torch.as_tensor(batch)
            if batch.ndim == 3:  # a single image [C, H, W]
                batch = batch.unsqueeze(0)
            with torch.no_grad():
                out.append(extractor(batch).float().cpu().numpy())
            bar.update(batch.shape[0])
    if not out:
        raise ValueError("no images to extract features from")
    return np.concatenate(out)


def read_gray_uint8(path: str | os.PathLike) -> torch.Tensor:
    """An image file as 8-bit grayscale, uint8 [1, H, W]."""
    with Image.open(path) as img:
        array = np.asarray(img.convert("L"), dtype=np.uint8)
    return torch.from_numpy(array.copy()).unsqueeze(0)


def iter_file_batches(
    paths: Sequence[str | os.PathLike],  # image files, in order
    batch_size: int = 64,  # images per batch at most
) -> Iterator[torch.Tensor]:  # uint8 [B, 1, H, W], B <= batch_size
    pending: list[torch.Tensor] = []
    for path in paths:
        img = read_gray_uint8(path)
        if pending and (len(pending) == batch_size or img.shape != pending[0].shape):
            yield torch.stack(pending)
            pending = []
        pending.append(img)
    if pending:
        yield torch.stack(pending)


def extract_features_from_files(
    extractor: nn.Module,  # uint8 [B, C, H, W] -> [B, D]
    paths: Sequence[str | os.PathLike],  # image files (PNG), in order
    batch_size: int = 64,  # images per extractor call at most
    device: torch.device | str | None = None,  # None: wherever the extractor already is
    progress: bool = True,  # tqdm bar counting images
    desc: str = "real features",  # label of the bar
) -> np.ndarray:  # float32 [len(paths), D]
    return extract_features(
        extractor,
        iter_file_batches(paths, batch_size),
        device=device,
        progress=progress,
        desc=desc,
        total=len(paths),
    )
