"""Entry point: `python -m braingan.project [ckpt=...] images=<folder | split> [overrides]` (what `make project` runs).

GAN inversion: finds, for each real slice, the latent (W: one w; W+: one w per layer) and
optionally the noise maps from which the checkpoint's generator renders it, starting from w_avg
(the image's class's, for conditional models). Writes per image the latent (.npz), the
reconstruction, the absolute residual map and an overlay figure at the data's native size, and
summary CSVs (per image, per subject, per class) into <run>/project/<images>-<mode>/; images
already projected there are skipped. Hydra composes conf/project.yaml; its keys are the
arguments of `experiment.projection.project_images`.
"""

from __future__ import annotations

from typing import Any, cast

import hydra
from omegaconf import DictConfig, OmegaConf

from . import cli
from .confdir import CONF_DIR
from .experiment.projection import format_table, project_images


@hydra.main(config_path=str(CONF_DIR), config_name="project", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    with cli.user_errors("project"):
        settings = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
        settings.pop("hydra", None)
        outputs = settings.pop("paths")["outputs"]
        result = project_images(settings.pop("ckpt"), outputs=outputs, **settings)
    print(format_table(result))


def main() -> None:
    cli.hydra_entry("project", "project", _hydra_main)


if __name__ == "__main__":
    main()
