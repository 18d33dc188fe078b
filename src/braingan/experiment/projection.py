"""What `make project` does: real slices -> latents, reconstructions, residual maps and a summary.

The images come from a folder (searched recursively; subject and slice from the names of the
OASIS or ADNI layout when the folder follows one, else from the file stem as dataset=folder
reads it) or from a split of the checkpoint's run manifest (train | validate | test | heldout |
all, as `make eval` picks them). They are decoded like the training data (`decode_image`: 8 bits,
the model's channels, its fit policy to the model square), projected in batches
(`inversion.projector.project`) and brought back to the data's native size (`Geometry.to_native`).

Per image, in the output folder (default <run>/project/<images>-<mode>):

    latents/<stem>.npz    ws [num_ws, w_dim] float32, mode, class, noise maps noise_<k> [r, r] when
                          optimized, loss, start_loss, steps, psnr, ssim, seconds, the image's path,
                          subject and slice, the loss history
    recon/<stem>.png      the reconstruction, native size
    residual/<stem>.png   |target - reconstruction| in 8-bit levels, native size (both sides brought to
                          native size the same way, so it shows what the model missed, not resampling)
    overlay/<stem>.png    target | reconstruction | residual heat map
    summary.csv           one row per image; summary_subjects.csv and summary_classes.csv: the means

PSNR (dB, 8-bit peak) and SSIM are measured in the model's pixels, over the content box (the
padding of fit=pad left out). An image whose npz exists is skipped and its row read from the npz:
an interrupted projection continues where it stopped.
"""

from __future__ import annotations

import csv
import json
import re
import time
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ..checkpoint import CheckpointInfo, load_discriminator, load_generator, read_info
from ..data.dataset import decode_image
from ..data.fit import Geometry
from ..data.layouts import IMAGE_SUFFIXES, DatasetError, SliceRecord, discover
from ..inversion.projector import MODES, ProjectOptions, project
from ..metrics.sources import REAL_SETS, real_records
from ..reporting.figures import projection_overlay
from ..utils.device import resolve_device
from ..utils.errors import MissingFileError, UsageError
from ..utils.images import save_image, to_uint8
from ..utils.io import atomic_path
from .resume import resolve_ckpt
from .settings import flatten

COLUMNS = ("image", "subject", "slice", "class", "mode", "psnr", "ssim", "loss", "start_loss", "steps", "seconds")
MEAN_COLUMNS = ("psnr", "ssim", "loss", "start_loss", "seconds")
COLOUR_MODES = ("RGB", "RGBA", "P", "CMYK", "YCbCr", "LAB", "HSV", "PA", "RGBX")  # PIL modes of colour images
ASPECT_TOLERANCE = 0.02  # relative difference of W/H accepted as the model's native aspect


@dataclass(frozen=True)
class Target:
    """One image to project."""

    path: Path
    subject: str
    slice: int
    class_name: str  # "" when unknown
    stem: str  # the output files' name


def _records_of_folder(root: Path) -> list[SliceRecord]:
    """The images below root, named by the OASIS or ADNI layout when root follows one, else as dataset=folder."""
    for layout in ("oasis", "adni", "folder"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return discover(root, layout)
        except DatasetError:
            continue
    return []


def find_targets(images: str, info: CheckpointInfo, limit: int | None) -> tuple[list[Target], str]:
    """(the images to project, a name for the output folder) of images=<folder | image | split>."""
    path = Path(str(images)).expanduser()
    if path.is_dir():
        records, name = _records_of_folder(path), path.name
        if not records:
            raise UsageError(
                f"images={images}: the folder holds no images ({'/'.join(s[1:] for s in IMAGE_SUFFIXES)}, "
                "searched recursively)"
            )
    elif path.is_file():
        if not path.name.lower().endswith(IMAGE_SUFFIXES):
            raise UsageError(
                f"images={images} is not an image; name a folder of slices or a split ({', '.join(REAL_SETS)})"
            )
        records, name = [SliceRecord(path, path.stem, 0, 0, "", "")], path.stem  # its class: class_name= or its folder
    elif str(images) in REAL_SETS:
        records, name = real_records(info.run, str(images), info.splits), str(images)
        if not records:
            raise UsageError(f"images={images}: the run's manifest lists no slices of that split")
    else:
        raise MissingFileError(
            f"images={images}: no such folder or image, and not a split of the run's manifest ({', '.join(REAL_SETS)})"
        )
    records = records[: int(limit)] if limit is not None else records
    stems = [re.sub(r"[^A-Za-z0-9._-]", "_", r.path.stem) for r in records]
    seen: dict[str, int] = defaultdict(int)
    for s in stems:
        seen[s] += 1
    targets = []
    for r, stem in zip(records, stems):
        if seen[stem] > 1:  # the same file name in two folders: the parent folders tell them apart
            stem = "_".join([*r.path.parent.parts[-2:], stem])
        targets.append(Target(r.path, r.subject, r.slice, r.class_name, stem))
    return targets, name


def check_images(targets: Sequence[Target], geometry: Geometry, channels: int, convert: bool) -> None:
    """Refuses, in one line, images of another channel count or aspect than the model's."""
    colour, wrong = [], []
    native = geometry.width / geometry.height
    for t in targets:
        try:
            with Image.open(t.path) as image:
                mode, (width, height) = image.mode, image.size
        except OSError as error:
            raise UsageError(f"images: {t.path} cannot be read as an image ({error}); remove it or fix it") from None
        if channels == 1 and mode in COLOUR_MODES:
            colour.append(t.path)
        if abs(width / height - native) > ASPECT_TOLERANCE * native:
            wrong.append((t.path, width, height))
    if colour and not convert:
        raise UsageError(
            f"images: {len(colour)} of the {len(targets)} images are colour (e.g. {colour[0]}) but the model "
            "has 1 channel; convert them to grayscale, or set convert=true (luma, as training does)"
        )
    if wrong:
        p, w, h = wrong[0]
        raise UsageError(
            f"images: {len(wrong)} of the {len(targets)} images have another aspect than the model's "
            f"{geometry.width}x{geometry.height} (fit={geometry.fit}), e.g. {p} is {w}x{h}; "
            "project images of the training data's size"
        )


def pick_labels(targets: Sequence[Target], class_names: list[str], c_dim: int, class_name: str | None) -> list[int]:
    """Each image's class index: class_name for all, else its own (layout, manifest or parent folder); [] if unconditional."""
    if c_dim == 0:
        if class_name is not None:
            raise UsageError(f"class_name={class_name}: this model is unconditional; leave class_name unset")
        return []
    names = class_names if len(class_names) == c_dim else [f"class{k}" for k in range(c_dim)]
    if class_name is not None:
        if str(class_name) not in names:
            raise UsageError(
                f"class_name={class_name} is not a class of this model; its classes are {', '.join(names)}"
            )
        return [names.index(str(class_name))] * len(targets)
    targets = [  # a folder of its own named like a class (ADNI's test/AD/) names the class
        t if t.class_name or t.path.parent.name not in names else replace(t, class_name=t.path.parent.name)
        for t in targets
    ]
    unknown = [t for t in targets if t.class_name not in names]
    if unknown:
        what = f"class {unknown[0].class_name}" if unknown[0].class_name else "no class"
        raise UsageError(
            f"images: {len(unknown)} of the images have a class this model does not know (e.g. {unknown[0].path}: "
            f"{what}); set class_name= one of {', '.join(names)}"
        )
    return [names.index(t.class_name) for t in targets]


def psnr_ssim(target: torch.Tensor, recon: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per image PSNR (dB, peak 255) and SSIM of uint8 [N, C, h, w] images."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    x, y = target.double(), recon.double()
    mse = (x - y).square().flatten(1).mean(dim=1)
    psnr = 10 * torch.log10(255.0**2 / mse.clamp_min(1e-10))
    side = min(x.shape[-2:])
    kernel = min(11, side if side % 2 else side - 1)
    ssim = structural_similarity_index_measure(
        y, x, data_range=255.0, kernel_size=kernel, sigma=1.5 * kernel / 11, reduction="none"
    )
    return psnr.numpy(), cast(torch.Tensor, ssim).reshape(len(x)).numpy()


def _hwc(image: torch.Tensor) -> np.ndarray:  # uint8 [C, H, W] -> [H, W, C]
    return image.permute(1, 2, 0).numpy()


def _row(npz: Path) -> dict:
    with np.load(npz) as data:
        return {c: (data[c].item() if data[c].ndim == 0 else str(data[c])) for c in COLUMNS}


def write_summaries(out: Path, rows: list[dict]) -> None:
    """summary.csv (a row per image), summary_subjects.csv and summary_classes.csv (means)."""

    def write(path: Path, columns: Sequence[str], table: list[dict]) -> None:
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(columns))
            writer.writeheader()
            writer.writerows(table)

    write(out / "summary.csv", COLUMNS, rows)
    for key, name in (("subject", "summary_subjects.csv"), ("class", "summary_classes.csv")):
        groups: dict[str, list[dict]] = defaultdict(list)
        for row in rows:
            groups[str(row[key])].append(row)
        table = [
            {key: k, "images": len(g), **{c: float(np.mean([float(r[c]) for r in g])) for c in MEAN_COLUMNS}}
            for k, g in groups.items()
        ]
        write(out / name, (key, "images", *MEAN_COLUMNS), table)


SETTINGS_FILE = "projection.json"  # in the output folder: what its projections were made with


def projection_settings(
    ckpt: Path,
    info: CheckpointInfo,
    which: str,
    images: str,
    class_name: str | None,
    convert: bool,
    opt: ProjectOptions,
) -> dict:
    """What an output folder's projections depend on: a later call into the same folder must match it."""
    source = Path(str(images)).expanduser()
    return {
        "checkpoint": str(ckpt.resolve()),
        "kimg": info.kimg,
        "which": which,
        "images": str(source.resolve()) if source.exists() else str(images),
        "class_name": class_name,
        "convert": bool(convert),
        "projector": asdict(opt),
    }


def check_folder_settings(folder: Path, settings: dict) -> None:
    """Refuses, in one line, to add to a folder whose projections were made otherwise; records the settings."""
    record = folder / SETTINGS_FILE
    if record.is_file():
        saved = json.loads(record.read_text())
        flat_saved, flat_now = flatten(saved), flatten(settings)
        diff = [
            f"{k.replace('/', '.')}: {flat_saved.get(k)} -> {v}" for k, v in flat_now.items() if flat_saved.get(k) != v
        ]
        if diff:
            raise UsageError(
                f"{folder} holds projections made with other settings ({'; '.join(diff[:4])}); its images would be "
                "skipped as done: project into another out= or delete that folder"
            )
        return
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(record) as tmp:
        tmp.write_text(json.dumps(settings, indent=2) + "\n")


def read_projected(folder: str | Path, ckpt: str | Path | None = None) -> tuple[torch.Tensor, np.ndarray, list[str]]:
    """(w [M, w_dim], labels [M] (-1 = unconditional), image paths) of a `make project` output folder.

    A projection's w is the mean of its ws over the layers (for mode w: its one w). With `ckpt`,
    a folder projected with another checkpoint is refused: its w belong to another model's space.
    """
    folder = Path(folder).expanduser()
    latents = sorted((folder / "latents").glob("*.npz"))
    if not latents:
        raise UsageError(f"embedding.projected={folder}: no latents/*.npz there (a make project output folder?)")
    record = folder / SETTINGS_FILE
    if ckpt is not None and record.is_file():
        made_with = json.loads(record.read_text())["checkpoint"]
        if made_with != str(Path(ckpt).resolve()):
            raise UsageError(
                f"embedding.projected={folder} was projected with {made_with}, not {Path(ckpt).resolve()}: "
                "project the slices with this checkpoint"
            )
    w, labels, images = [], [], []
    for path in latents:
        with np.load(path) as data:
            w.append(torch.from_numpy(data["ws"]).double().mean(dim=0))
            labels.append(int(data["label"]))
            images.append(str(data["image"]))
    return torch.stack(w), np.asarray(labels), images


def decode_target(path: Path, resolution: int, channels: int, fit: str) -> np.ndarray:
    """uint8 [C, R, R] of one image, decoded as training does; an unreadable file is one line naming it."""
    try:
        return decode_image(path, resolution, channels, fit)[0]
    except (OSError, ValueError) as error:
        raise UsageError(f"images: {path} cannot be read as an image ({error}); remove it or fix it") from None


def project_images(
    ckpt: str | Path | None = "last",  # checkpoint file; 'last' = newest outputs/**/checkpoints/last.ckpt
    *,
    images: str = "heldout",  # a folder of slices, one image, or a split of the run's manifest
    out: str | Path | None = None,  # output folder; None = <run>/project/<images>-<mode>
    limit: int | None = None,  # project only the first N images; None = all
    class_name: str | None = None,  # conditional models: the class of every image; None = each image's own
    convert: bool = False,  # colour images for a grayscale model: convert by luma (else refused)
    which: str = "G_ema",  # G_ema | G
    batch: int = 8,  # images optimized together
    device: str = "auto",
    progress: bool = True,
    extractor: str | None = None,  # inception_weight > 0: TorchScript extractor; None = the bundled one
    outputs: str | Path = "outputs",  # where ckpt=last searches
    **projector: Any,  # ProjectOptions fields: mode, steps, lr, optimize_noise, the loss weights ...
) -> dict:
    """Projects the images, writes the files of the module docstring; returns {out, rows, done, skipped}."""
    known = {f.name for f in fields(ProjectOptions)}
    unknown = sorted(set(projector) - known)
    if unknown:
        raise UsageError(f"{unknown[0]}: no such setting of the projector ({', '.join(sorted(known))})")
    opt = ProjectOptions(**projector)
    if opt.mode not in MODES:
        raise UsageError(f"mode={opt.mode} must be w or w+")
    try:
        opt.check()
    except ValueError as error:
        raise UsageError(str(error)) from None
    if which not in ("G_ema", "G"):
        raise UsageError(f"which={which} must be G_ema or G")
    for key, value in (("limit", limit), ("batch", batch)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise UsageError(f"{key}={value} must be a whole number >= 1" + (" or null" if key == "limit" else ""))
    path = resolve_ckpt(ckpt, outputs)
    info = read_info(path)
    geometry = info.geometry or Geometry(info.resolution, info.resolution, info.resolution)
    targets, name = find_targets(images, info, limit)
    check_images(targets, geometry, info.channels, convert)
    dev = resolve_device(device)
    G = load_generator(path, which).to(dev)
    labels = pick_labels(targets, info.class_names, G.c_dim, class_name)
    names = info.class_names if len(info.class_names) == G.c_dim else [f"class{k}" for k in range(G.c_dim)]
    D = load_discriminator(path).to(dev) if opt.d_feature_weight > 0 else None
    inception = None
    if opt.inception_weight > 0:
        from ..metrics.inception import InceptionFeatures

        inception = InceptionFeatures(extractor).to(dev)
    folder = (
        Path(out).expanduser()
        if out not in (None, "")
        else info.run.project / f"{name}-{opt.mode.replace('+', 'plus')}"
    )
    R = info.resolution
    left, top, box_w, box_h = geometry.content_box
    mask = torch.zeros(1, 1, R, R, device=dev)
    mask[..., top : top + box_h, left : left + box_w] = 1  # the pixel losses leave fit=pad's padding out
    check_folder_settings(folder, projection_settings(path, info, which, images, class_name, convert, opt))

    todo = [k for k, t in enumerate(targets) if not (folder / "latents" / f"{t.stem}.npz").is_file()]
    bar = tqdm(total=len(targets), initial=len(targets) - len(todo), desc="project", unit="img", disable=not progress)
    for start in range(0, len(todo), max(1, int(batch))):
        chunk = todo[start : start + max(1, int(batch))]
        began = time.perf_counter()
        decoded = [decode_target(targets[k].path, R, info.channels, geometry.fit) for k in chunk]
        real = torch.from_numpy(np.stack(decoded))  # uint8 [n, C, R, R]
        target = (real.to(dev).float() - 127.5) / 127.5  # [-1, 1]
        c = torch.tensor([labels[k] for k in chunk], device=dev) if labels else None
        result = project(G, target, c, opt, mask, D, inception)
        seconds = (time.perf_counter() - began) / len(chunk)
        recon = to_uint8(result.images)  # [n, C, R, R]
        crop = (slice(None), slice(None), slice(top, top + box_h), slice(left, left + box_w))
        psnr, ssim = psnr_ssim(real[crop], recon[crop])
        native_real = cast(torch.Tensor, geometry.to_native(real))  # [n, C, H, W]
        native_recon = cast(torch.Tensor, geometry.to_native(recon))
        residual = (
            (
                cast(torch.Tensor, geometry.to_native(real.float()))
                - cast(torch.Tensor, geometry.to_native(recon.float()))
            )
            .abs()
            .mean(dim=1)
        )  # [n, H, W] in 8-bit levels
        residual = residual.round().clamp(0, 255).to(torch.uint8)
        for i, k in enumerate(chunk):
            t = targets[k]
            stem = t.stem
            class_of = names[labels[k]] if labels else t.class_name
            save_image(_hwc(native_recon[i]), folder / "recon" / f"{stem}.png")
            save_image(residual[i][..., None].numpy(), folder / "residual" / f"{stem}.png")
            projection_overlay(
                _hwc(native_real[i]),
                _hwc(native_recon[i]),
                residual[i].numpy(),
                folder / "overlay" / f"{stem}.png",
                f"{stem}  {opt.mode}, {opt.steps} steps: PSNR {psnr[i]:.2f} dB, SSIM {ssim[i]:.3f}",
            )
            arrays: dict[str, Any] = {
                "ws": result.ws[i].numpy().astype(np.float32),
                "image": str(t.path),
                "subject": t.subject,
                "slice": t.slice,
                "class": class_of,
                "label": labels[k] if labels else -1,
                "mode": opt.mode,
                "psnr": float(psnr[i]),
                "ssim": float(ssim[i]),
                "loss": float(result.loss[i]),
                "start_loss": float(result.start_loss[i]),
                "steps": opt.steps,
                "seconds": round(seconds, 3),
                "history": result.history[:, i].numpy(),
            }
            for j, noise in enumerate(result.noises or []):
                arrays[f"noise_{j}"] = noise[i, 0].numpy()
            npz = folder / "latents" / f"{stem}.npz"
            npz.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(npz) as tmp, open(tmp, "wb") as handle:
                np.savez(handle, **arrays)  # written last: its presence marks the image done
        bar.update(len(chunk))
    bar.close()
    rows = [_row(folder / "latents" / f"{t.stem}.npz") for t in targets]
    write_summaries(folder, rows)
    return {"out": folder, "rows": rows, "done": len(todo), "skipped": len(targets) - len(todo)}


def format_table(result: dict) -> str:
    """The printed summary: means per class and overall."""
    rows = result["rows"]
    lines = [f"{'':16s} {'images':>6s} {'PSNR dB':>8s} {'SSIM':>6s} {'loss':>9s} {'start':>9s}"]
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        groups[f"class {row['class']}" if row["class"] else "all"].append(row)
    if len(groups) > 1 or "all" not in groups:
        groups["all"] = rows
    for name, g in groups.items():
        mean = {c: float(np.mean([float(r[c]) for r in g])) for c in ("psnr", "ssim", "loss", "start_loss")}
        lines.append(
            f"{name:16s} {len(g):6d} {mean['psnr']:8.2f} {mean['ssim']:6.3f} {mean['loss']:9.4f} {mean['start_loss']:9.4f}"
        )
    lines.append(f"projected {result['done']}, skipped {result['skipped']} (already done); wrote {result['out']}")
    return "\n".join(lines)
