"""The command-line convention: overrides Hydra would refuse are named in one line with the nearest valid ones."""

from __future__ import annotations

import pytest

from braingan import cli
from braingan.utils.errors import Interrupted, NoSpaceError, UsageError, one_line


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["trainer=cpu", "model=tiny", "resolution=32", "kimg=3", "model.r1_gamma=auto"],
        ["-m", "model.r1_gamma=1,2,4", "resolution='64','128'", "model=base,paper"],
        ["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.run.dir=/tmp/x", "hydra.output_subdir=null"],
        ["dataset=adni", "dataset.root=/data/AD_NC", "dataset.classes=[AD]"],
        ["+extra_key=1", "++other_key=2", "~requeue_signals", "kimg=range(1,3)", "model.lr_g=interval(0.001,0.01)"],
        ["--cfg", "job", "model={z_dim:64}", "trainer=cpu"],  # a flag with a value; a dict merged into a group
        ["--info", "searchpath"],
        ["-c", "job", "-p", "model"],
    ],
)
def test_overrides_hydra_accepts_pass(args):
    cli.check_overrides("train", args)


@pytest.mark.parametrize(
    "config,args,message",
    [
        ("train", ["model.r1_gama=1"], "model.r1_gama: no such setting; did you mean model.r1_gamma"),
        ("train", ["trainer.devicez=2"], "trainer.devicez: no such setting; did you mean trainer.devices?"),
        (
            "train",
            ["model=nonexistent"],
            "model=nonexistent: no such option (the options are base, paper, small, tiny)",
        ),
        (
            "train",
            ["model=smal"],
            "model=smal: no such option (the options are base, paper, small, tiny); nearest: small",
        ),
        (
            "train",
            ["-m", "model=base,papr"],
            "model=papr: no such option (the options are base, paper, small, tiny); nearest: paper",
        ),
        ("train", ["experiment=huge"], "experiment=huge: no such option (the options are cpu)"),
        ("train", ["dataset=adni", "dataset.demo_subjects=5"], "dataset.demo_subjects: no such setting"),
        (
            "train",
            ["hydra/launcher=slurm", "hydra.launcher.partitio=gpu"],
            "hydra.launcher.partitio: no such setting; did you mean hydra.launcher.partition?",
        ),
        ("train", ["-m", "model.lr_g=interval(0.001,0.01)", "model.r1_gama=1"], "model.r1_gama: no such setting"),
        ("train", ["kimg==3"], "cannot read the override 'kimg==3'"),
        ("train", ["--cfg", "job", "kimg==3"], "cannot read the override 'kimg==3'"),
        ("train", ["--bogus"], "unrecognized arguments: --bogus; `--help` lists the flags"),
        ("train", ["+kimg=3"], "Could not append to config. An item is already at 'kimg'"),
        ("eval", ["num_gne=10"], "num_gne: no such setting; did you mean num_gen?"),
        ("generate", ["what=[images]", "psy=0.7"], "psy: no such setting; did you mean psi?"),
    ],
)
def test_refused_overrides_name_the_key_and_the_nearest_valid_ones(config, args, message):
    with pytest.raises(UsageError) as info:
        cli.check_overrides(config, args)
    assert message in str(info.value)
    assert "\n" not in one_line(info.value) and "HYDRA_FULL_ERROR" not in str(info.value)


def test_user_errors_print_one_line_and_exit_with_their_code(capsys):
    for error, code in (
        (UsageError("batch_size=0 must be\na whole number"), 2),
        (NoSpaceError("no space"), 2),
        (Interrupted("stopped by SIGTERM", 15), 143),
    ):
        with pytest.raises(SystemExit) as info, cli.user_errors("train"):
            raise error
        assert info.value.code == code
        assert capsys.readouterr().err == f"train: {one_line(error)}\n"
    assert one_line(UsageError("a\n  b\n\nc")) == "a; b; c"
    with pytest.raises(ZeroDivisionError), cli.user_errors("train"):  # a bug keeps its traceback
        _ = 1 / 0
