"""Entry point: `python -m braingan.gpu_check [overrides]` (what `make gpu-check` runs).

One command that tells whether a GPU node is ready and how fast it is, within `budget_s` seconds
(default 480: 8 minutes on one H100-class GPU): the environment (torch, CUDA, cuDNN and driver
versions, GPU name and memory, bf16/TF32, CPU cores, DataLoader workers), the suite's GPU tests
(pytest marker `gpu`; "tests not found, skipped" in a wheel install), training sec/kimg and peak
memory through the `make bench` code for `model=paper batch_size=32` and `model=base batch_size=64`
at 256x256 at 32-true, bf16-mixed and 16-mixed and once with speed.compile=true, then a short
`model=base` training run with the fastest finite setting (a sample grid and the loss curves).
Each phase's cost is estimated first; what no longer fits is skipped and listed. One failing phase
(out of memory, a compile error) is recorded with its reason and the check goes on.

Writes <out>/gpu_check.json and gpu_check.md (`out=`, default outputs/gpu_check/<date>_<time>/)
and prints the summary table with the official StyleGAN2 figures beside the matching rows.
Exit code: 0 when everything that ran passed; 1 when a GPU test failed or a phase failed or
raised; 2 for a usage error (one line). Without CUDA it prints the environment and one line,
writes nothing and exits 0; `dry_run=true` runs every phase at tiny size on the CPU (CI).
The work is experiment/gpu_check.py; the configuration conf/gpu_check.yaml.
"""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from . import cli
from .confdir import CONF_DIR
from .experiment.command import register_resolvers
from .experiment.gpu_check import gpu_check
from .reporting.gpu_report import format_summary

register_resolvers()


@hydra.main(config_path=str(CONF_DIR), config_name="gpu_check", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    with cli.user_errors("gpu_check"):
        result = gpu_check(cfg, overrides=list(HydraConfig.get().overrides.task))
    print(format_summary(result), flush=True)
    if result["exit_code"]:
        sys.exit(result["exit_code"])


def main() -> None:
    cli.hydra_entry("gpu_check", "gpu_check", _hydra_main)


if __name__ == "__main__":
    main()
