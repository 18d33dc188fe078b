"""Fine-tuning policy (`init=<checkpoint>`): which networks a new run starts from, and its record.

A run with `init=` is a new run: its own folder, counters at 0, fresh optimizers, ADA's p at
augment.p (unless init_keep_ada), on any data set. Only its networks start from the source's
weights (training/transfer.py says tensor by tensor how). Everything here runs before the run
folder is written, so a refused init leaves nothing behind. A run that continues (resume=, a
requeued job) never re-initializes: its own checkpoint holds its weights.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..checkpoint import CheckpointInfo, read_checkpoint, read_info
from ..nn.config import NetworkConfig
from ..training.transfer import TransferReport, transfer_weights
from ..utils.errors import UsageError
from .resume import resolve_resume

# Settings that shape the networks: named when a tensor's shape differs (config key -> NetworkConfig field).
SHAPE_SETTINGS = {
    "img_channels": "img_channels",
    "model.z_dim": "z_dim",
    "model.w_dim": "w_dim",
    "model.mapping_layers": "mapping_layers",
    "model.channel_base": "channel_base",
    "model.channel_max": "channel_max",
}


def read_source(init, outputs) -> CheckpointInfo | None:
    """The checkpoint that init= names (a file, or 'last': the newest last.ckpt under `outputs`), read.

    None for init=null; one line for a missing file or one that is not a checkpoint.
    """
    path = resolve_resume(init, outputs, setting="init")
    return None if path is None else read_info(path, setting="init")


def same_classes(source: CheckpointInfo, c_dim: int, class_names: list[str]) -> bool:
    """Whether the new run has the source's classes (both unconditional counts as the same)."""
    if source.net.c_dim == 0 or c_dim == 0:
        return source.net.c_dim == c_dim
    return source.net.c_dim == c_dim and source.class_names == list(class_names)


def network_for_init(net: NetworkConfig, source: CheckpointInfo, class_names: list[str]) -> NetworkConfig:
    """The new run's NetworkConfig, checked against the source: same resolution; its trained properties.

    The source's weights compute as they were trained (upsample_border); with the same classes,
    its class mapping network's depth is kept too, so that it loads.
    """
    if source.resolution != net.img_resolution:
        r0, r1 = source.resolution, net.img_resolution
        raise UsageError(
            f"init={source.path} was trained at {r0}x{r0} and this run is {r1}x{r1}: fine-tuning across "
            f"resolutions is not supported; use resolution={r0}"
        )
    keep: dict[str, Any] = {"upsample_border": source.net.upsample_border}
    if source.net.c_dim > 0 and same_classes(source, net.c_dim, class_names):
        keep["d_mapping_layers"] = source.net.d_mapping_layers
    return dataclasses.replace(net, **keep)


def shape_differences(source: NetworkConfig, net: NetworkConfig) -> str:
    """'; the networks differ in model.channel_max 32 -> 64, ...' or '' when no shape setting differs."""
    diff = [
        f"{key} {getattr(source, name)} -> {getattr(net, name)}"
        for key, name in SHAPE_SETTINGS.items()
        if getattr(source, name) != getattr(net, name)
    ]
    return f" (the networks differ in {', '.join(diff)})" if diff else ""


def initialize(module, source: CheckpointInfo, strict: bool = True, keep_ada: bool = False) -> TransferReport:
    """Loads the source's networks into a new StyleGAN2Module (training/transfer.py); refuses mismatches in one line."""
    state = read_checkpoint(source.path, setting="init")["state_dict"]
    net = module.net_cfg
    return transfer_weights(
        module,
        state,
        z_dim=net.z_dim,
        same_classes=same_classes(source, net.c_dim, module.data_info.get("class_names") or []),
        conditioning_changed=(source.net.c_dim == 0) != (net.c_dim == 0),
        strict=strict,
        keep_ada=keep_ada,
        where=f"init={source.path}",
        hint=shape_differences(source.net, net),
    )


def init_record(source: CheckpointInfo, report: TransferReport, strict: bool, keep_ada: bool, freeze_d: int) -> dict:
    """Where a fine-tuned run started: stored in its checkpoints and in <run>/init.json; `make eval` reports it."""
    settings = source.run_config or {}
    return {
        "checkpoint": str(source.path.resolve()),
        "kimg": source.kimg,
        "dataset": settings.get("dataset/name"),
        "dataset_root": settings.get("dataset/root"),
        "class_names": source.class_names,
        "resolution": source.resolution,
        "init_strict": bool(strict),
        "init_keep_ada": bool(keep_ada),
        "freeze_d": int(freeze_d),
        "loaded": len(report.loaded),
        "rescaled": report.rescaled,
        "fresh": report.fresh,
        "skipped": report.skipped,
    }


def init_notes(record: dict, report: TransferReport) -> list[str]:
    """The log lines of a fine-tuning start: what it started from, and any tensor left fresh."""
    what = f" on {record['dataset']}" if record["dataset"] else ""
    what += f" ({', '.join(record['class_names'])})" if record["class_names"] else ""
    notes = [
        f"fine-tuning from {record['checkpoint']} ({record['kimg']:g} kimg{what}): {len(report.loaded)} tensors "
        f"taken, {len(report.fresh)} class-conditional ones new, {len(report.rescaled)} rescaled"
    ]
    if report.skipped:
        notes.append(f"init_strict=false: {len(report.skipped)} tensors left fresh: {'; '.join(report.skipped)}")
    return notes


def describe_init(init: dict | None) -> str | None:
    """One line for reports: 'fine-tuned from <checkpoint> (<kimg> kimg on <data set>)', None for a run from scratch."""
    if not init:
        return None
    on = f" on {init['dataset']}" if init.get("dataset") else ""
    return f"fine-tuned from {init['checkpoint']} ({float(init['kimg']):g} kimg{on})"
