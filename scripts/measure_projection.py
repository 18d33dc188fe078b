"""Measures make project's settings on held-out slices: PSNR and SSIM of the reconstructions per setting.

    python scripts/measure_projection.py <checkpoint> [images=heldout] [limit=16] [settings="<name>;<name>"]

Each setting projects the same images (decoded and fitted like make project does) and reports the
mean PSNR (dB, 8-bit peak) and SSIM over the content box, and the seconds per image. The numbers of
the README's table come from this script on a tiny 32 px demo model trained for 2 kimg.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch

from braingan.checkpoint import load_discriminator, load_generator, read_info
from braingan.data.dataset import decode_image
from braingan.data.fit import Geometry
from braingan.experiment.projection import find_targets, psnr_ssim
from braingan.inversion.projector import ProjectOptions, project
from braingan.utils.images import to_uint8

SETTINGS = {  # ProjectOptions fields besides its defaults (w+, l2, 300 steps, no noise optimization)
    "w, l2": dict(mode="w"),
    "w+, l2": dict(),
    "w+, l2, noise maps": dict(optimize_noise=True),
    "w+, l1": dict(l2_weight=0.0, l1_weight=1.0),
    "w+, l2 + 0.1 ms-ssim": dict(ms_ssim_weight=0.1),
    "w+, l2 + 1.0 ms-ssim": dict(ms_ssim_weight=1.0),
    "w+, l2 + 0.1 D features": dict(d_feature_weight=0.1),
    "w+, l2, 100 steps": dict(steps=100),
    "w+, l2, 1000 steps": dict(steps=1000),
}


def main() -> None:
    ckpt, args = sys.argv[1], dict(a.split("=", 1) for a in sys.argv[2:])
    info = read_info(ckpt)
    G, D = load_generator(ckpt), load_discriminator(ckpt)
    geometry = info.geometry or Geometry(info.resolution, info.resolution, info.resolution)
    targets, _ = find_targets(args.get("images", "heldout"), info, int(args.get("limit", 16)))
    real = torch.from_numpy(
        np.stack([decode_image(t.path, info.resolution, info.channels, geometry.fit)[0] for t in targets])
    )
    left, top, w, h = geometry.content_box
    mask = torch.zeros(1, 1, info.resolution, info.resolution)
    mask[..., top : top + h, left : left + w] = 1
    crop = (slice(None), slice(None), slice(top, top + h), slice(left, left + w))
    target = (real.float() - 127.5) / 127.5
    print(f"{len(targets)} images of {args.get('images', 'heldout')}, {ckpt} ({info.kimg:.1f} kimg)")
    print(f"{'setting':28s} {'PSNR dB':>8s} {'SSIM':>6s} {'s/img':>6s}")
    chosen = args.get("settings", "").split(";") if args.get("settings") else list(SETTINGS)
    for name in chosen:
        setting = SETTINGS[name]
        began = time.perf_counter()
        result = project(G, target, None, ProjectOptions(**setting), mask, D)
        seconds = (time.perf_counter() - began) / len(targets)
        psnr, ssim = psnr_ssim(real[crop], to_uint8(result.images)[crop])
        print(f"{name:28s} {psnr.mean():8.2f} {ssim.mean():6.3f} {seconds:6.2f}", flush=True)
    psnr, ssim = psnr_ssim(real[crop], to_uint8(result.start)[crop])
    print(f"{'(the start: w_avg)':28s} {psnr.mean():8.2f} {ssim.mean():6.3f}")


if __name__ == "__main__":
    main()
