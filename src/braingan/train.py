"""Entry point: `python -m braingan.train [overrides]` (what `make train` runs).

Hydra composes conf/train.yaml with the dataset/, model/, trainer/ and experiment/ groups;
`main` prepares the command line (experiment/command.py) and hands the composed config to the
plain function `experiment.run.train`, which knows no Hydra.
"""

from __future__ import annotations

import logging
import os
import sys

import hydra
import torch
from omegaconf import DictConfig

from . import cli
from .confdir import CONF_DIR
from .experiment.command import register_resolvers, train_arguments
from .experiment.run import train

register_resolvers()


@hydra.main(config_path=str(CONF_DIR), config_name="train", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    if int(os.environ.get("SLURM_PROCID", "0")) > 0:
        # Every SLURM task of a multi-GPU job runs this job; rank 0 alone writes the run's log file.
        root = logging.getLogger()
        for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
            root.removeHandler(handler)
    with cli.user_errors("train"):
        train(cfg)


def main() -> None:
    notes: list[str] = []  # the CPU preset chosen though nvidia-smi sees a GPU: why torch cannot use it
    with cli.user_errors("train"):
        args = train_arguments(
            sys.argv[1:], torch.cuda.is_available(), int(os.environ.get("LOCAL_RANK", "0")), warn=notes.append
        )
        cli.check_overrides("train", args)
    for note in notes:  # after the checks: a command with a usage error gets its one line alone
        print(f"train: {note}", file=sys.stderr, flush=True)
    sys.argv = sys.argv[:1] + args
    _hydra_main()


if __name__ == "__main__":
    # Through the module, not __main__: the submitit launcher pickles the task function by name.
    from braingan.train import main as _main

    _main()
