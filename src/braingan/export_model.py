"""Entry point: `python -m braingan.export_model ckpt=... out=...` (what `make export` runs).

Writes a folder to share a generator with (braingan.export): generator.safetensors (G_ema),
config.json (network settings, classes, native geometry, source checkpoint, checksums),
MODEL_CARD.md (data, splits, training, the latest `make eval` / `make audit` numbers, intended use,
limitations, licence of the data) and, with torchscript=true, generator.pt (TorchScript, checked
against the eager model). `make generate CKPT=<folder>` renders from it; `braingan.export.load_export`
loads it with safetensors, JSON and `braingan.nn` alone. Hydra composes conf/export_model.yaml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import hydra
from omegaconf import DictConfig, OmegaConf

from . import cli
from .confdir import CONF_DIR
from .experiment.resume import resolve_ckpt
from .export import not_a_checkpoint_file, write_export
from .utils.errors import UsageError


def export_from_config(cfg: DictConfig):
    """`write_export` with the values of a composed conf/export_model.yaml; its ExportInfo."""
    values = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
    named = Path(str(values["ckpt"])).expanduser()
    if values["ckpt"] not in (None, "", "last") and named.is_dir():
        raise UsageError(not_a_checkpoint_file(named))
    ckpt = resolve_ckpt(values["ckpt"], values["paths"]["outputs"])
    return write_export(
        ckpt,
        values["out"],
        torchscript=bool(values["torchscript"]),
        tolerance=values["tolerance"],
        manifest=bool(values["manifest"]),
    )


@hydra.main(config_path=str(CONF_DIR), config_name="export_model", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    with cli.user_errors("export_model"):
        info = export_from_config(cfg)
    size = sum((info.folder / name).stat().st_size for name in info.files) / 1e6
    print(f"wrote {info.folder}: {', '.join(info.files)} and config.json ({size:.1f} MB)")
    if info.torchscript:
        print(
            f"TorchScript matches the eager generator to {info.torchscript['max_abs_diff']:.3g} "
            f"(tolerance {info.torchscript['tolerance']:g})"
        )
    print(f"render from it: make generate CKPT={info.folder}")
    if info.has_manifest:
        print(f"evaluate it against its data set: make eval CKPT={info.folder}")


def main() -> None:
    cli.hydra_entry("export_model", "export_model", _hydra_main)


if __name__ == "__main__":
    main()
