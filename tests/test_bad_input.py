"""Bad input through the real entry points: exit code 2, one line on stderr that names the problem,
and not one file of an existing run changed (checksums of the whole run folder before and after)."""

from __future__ import annotations

import importlib
import logging
import shutil
import sys

import pytest

from braingan.checkpoint import load_checkpoint
from helpers.runs import one_line_exit, run_tool, tiny_overrides, tree_digest, without

KIMG = 0.064  # the existing run: 8 steps, last.ckpt and kimg_000000.064.ckpt


@pytest.fixture(scope="module")
def runs(tmp_path_factory, demo_root) -> dict:
    """An existing run, a copy of it whose last.ckpt was cut short, and the overrides that made them."""
    base = tmp_path_factory.mktemp("existing")
    run = base / "run"
    overrides = without(tiny_overrides(base, demo_root, KIMG), "run_dir")
    proc = run_tool("train", [*overrides, f"hydra.run.dir={run}"])
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (run / "notes.txt").write_text("what I tried today\n")
    damaged = base / "damaged"
    shutil.copytree(run, damaged)
    last = damaged / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    fresh = base / "fresh"  # where a refused new run must leave nothing
    return {"run": run, "damaged": damaged, "fresh": fresh, "overrides": overrides, "base": base, "demo": demo_root}


def _cases() -> list[tuple[str, str, object, str]]:
    """(id, tool, args from the runs fixture, text the one line must hold)."""

    def ov(r, *extra, into="run"):
        return [*r["overrides"], f"hydra.run.dir={r[into]}", *extra]

    last = lambda r, into="run": r[into] / "checkpoints" / "last.ckpt"  # noqa: E731
    return [
        # Files that are not checkpoints, given to each tool that reads one.
        (
            "resume-text",
            "train",
            lambda r: [f"resume={r['run'] / 'notes.txt'}"],
            "is not a braingan checkpoint: it is a text file",
        ),
        ("resume-png", "train", lambda r: [f"resume={r['run'] / 'samples' / 'reals.png'}"], "it is a PNG image"),
        ("resume-manifest", "train", lambda r: [f"resume={r['run'] / 'manifest.csv'}"], "manifest.csv?"),
        (
            "eval-text",
            "eval",
            lambda r: [f"ckpt={r['run'] / 'notes.txt'}"],
            "is not a braingan checkpoint: it is a text file",
        ),
        ("audit-png", "audit", lambda r: [f"ckpt={r['run'] / 'samples' / 'reals.png'}"], "it is a PNG image"),
        (
            "generate-manifest",
            "generate",
            lambda r: [f"ckpt={r['run'] / 'manifest.csv'}"],
            "is not a braingan checkpoint",
        ),
        # A damaged last.ckpt: named, with the newest intact snapshot and how to go on from it.
        (
            "resume-truncated",
            "train",
            lambda r: [f"resume={last(r, 'damaged')}"],
            "is damaged (PyTorch cannot read it: PytorchStreamReader failed reading zip archive",
        ),
        ("continue-truncated", "train", lambda r: ov(r, into="damaged"), "the newest intact checkpoint of this run is"),
        (
            "eval-truncated",
            "eval",
            lambda r: [f"ckpt={last(r, 'damaged')}"],
            "kimg_000000.064.ckpt (0.064 kimg): use ckpt=",
        ),
        # Settings that cannot train, checked before any data is decoded.
        ("batch-0", "train", lambda r: ov(r, "batch_size=0"), "batch_size=0 must be a whole number >= 1"),
        (
            "batch-7",
            "train",
            lambda r: ov(r, "batch_size=7"),
            "batch_size=7 is not divisible by the minibatch-std group size",
        ),
        ("kimg-negative", "train", lambda r: ov(r, "kimg=-1"), "kimg=-1 must be a number > 0"),
        ("kimg-0", "train", lambda r: ov(r, "kimg=0"), "kimg=0 must be a number > 0"),
        # Misspelt keys and unknown options: Hydra's errors, in one line with the nearest valid ones.
        (
            "misspelt-key",
            "train",
            lambda r: [f"resume={last(r)}", "model.r1_gama=1"],
            "model.r1_gama: no such setting; did you mean model.r1_gamma",
        ),
        (
            "unknown-model",
            "train",
            lambda r: [f"resume={last(r)}", "model=nonexistent"],
            "model=nonexistent: no such option (the options are base, paper, small, tiny)",
        ),
        (
            "unknown-resolution",
            "train",
            lambda r: ov(r, "resolution=48"),
            "resolution=48 must be one of 32, 64, 128, 256, 512, 1024; nearest: 32 or 64",
        ),
        (
            "eval-misspelt",
            "eval",
            lambda r: [f"ckpt={last(r)}", "num_gne=10"],
            "num_gne: no such setting; did you mean num_gen",
        ),
        ("unparsable", "train", lambda r: ov(r, "kimg==3"), "cannot read the override 'kimg==3'"),
        # A resume or a start that would change what the run is.
        (
            "resume-other-model",
            "train",
            lambda r: [f"resume={last(r)}", "model=small"],
            "was trained with other settings (model.channel_base: 1024 -> 4096",
        ),
        (
            "start-into-other-run",
            "train",
            lambda r: ov(r, "model.r1_gamma=5"),
            "already holds a run with other settings (model.r1_gamma: 0.1 -> 5",
        ),
        # Fine-tuning: a source that is not a checkpoint, a Freeze-D deeper than D (into a new folder).
        (
            "init-png",
            "train",
            lambda r: ov(r, f"init={r['run'] / 'samples' / 'reals.png'}", into="fresh"),
            "samples/reals.png is not a braingan checkpoint: it is a PNG image",
        ),
        (
            "freeze-d-too-deep",
            "train",
            lambda r: ov(r, f"init={last(r)}", "model.freeze_d=9", into="fresh"),
            "model.freeze_d=9 must be between 0 and the 3 blocks of D at 32x32",
        ),
        # Data errors raised on purpose arrive without their traceback.
        (
            "missing-root",
            "train",
            lambda r: [
                *without(r["overrides"], "dataset.demo_subjects", "dataset.root"),
                "dataset=oasis",
                f"dataset.root={r['base'] / 'nowhere'}",
                f"hydra.run.dir={r['base'] / 'fresh'}",
            ],
            "nowhere",
        ),
    ]


CASES = _cases()


@pytest.mark.slow
@pytest.mark.parametrize("tool,make_args,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_leaves_the_run_untouched(runs, tool, make_args, expected, monkeypatch):
    """The real entry point's main() in this process (a new interpreter per case cost 4 s each; the
    subprocess tests below and in test_entry_points.py cover the command line itself)."""
    before = {name: tree_digest(runs[name]) for name in ("run", "damaged")}
    monkeypatch.chdir(runs["base"])
    monkeypatch.setattr(sys, "argv", [tool, *make_args(runs)])
    handlers = logging.getLogger().handlers[:]
    try:
        line = one_line_exit(importlib.import_module(f"braingan.{tool}").main, tool)
    finally:  # Hydra's job logging opened the run's log file: close it, as the end of a process would
        for handler in logging.getLogger().handlers[:]:
            if handler not in handlers:
                logging.getLogger().removeHandler(handler)
                handler.close()
        for handler in handlers:
            if handler not in logging.getLogger().handlers:
                logging.getLogger().addHandler(handler)
    assert expected in line, line
    for name, digest in before.items():
        assert tree_digest(runs[name]) == digest, f"{name} changed"
    fresh = runs["base"] / "fresh"
    assert not fresh.exists() or not any(fresh.rglob("*")), "a refused start wrote into its new run folder"


@pytest.mark.slow
def test_resume_last_without_any_run_is_one_line(tmp_path):
    proc = run_tool("train", ["resume=last"], cwd=tmp_path)
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == f"train: resume=last: no outputs/**/checkpoints/last.ckpt under {tmp_path}; pass resume=<file>"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_refused_commands_do_not_rewrite_what_the_next_resume_replays(runs, tmp_path):
    """A refused resume or start must not touch .hydra/overrides.yaml: the next plain resume trains the run as it was."""
    run = tmp_path / "run"
    shutil.copytree(runs["run"], run)
    last = run / "checkpoints" / "last.ckpt"
    refused = run_tool("train", [f"resume={last}", "model=small"], cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr
    refused = run_tool("train", [*runs["overrides"], f"hydra.run.dir={run}", "model.r1_gamma=5"], cwd=tmp_path)
    assert refused.returncode == 2, refused.stderr

    resumed = run_tool("train", [f"resume={last}", f"kimg={2 * KIMG}"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    ckpt = load_checkpoint(last)
    assert ckpt["braingan"]["cur_nimg"] == 2 * KIMG * 1000
    assert ckpt["hyper_parameters"]["train"]["r1_gamma"] == 0.1  # model=tiny's, not the refused 5
    assert ckpt["hyper_parameters"]["net"]["channel_base"] == 1024  # model=tiny's, not small's
    assert "model=small" not in (run / ".hydra" / "overrides.yaml").read_text()

    # A resume that changes a setting on purpose is told so, and goes on with the new value.
    changed = run_tool("train", [f"resume={last}", f"kimg={3 * KIMG}", "model.r1_gamma=0.5"], cwd=tmp_path)
    assert changed.returncode == 0, changed.stdout[-2000:] + changed.stderr[-2000:]
    assert "resume: model.r1_gamma differs from the run's setting (0.1 -> 0.5); continuing with 0.5" in changed.stdout
    assert load_checkpoint(last)["hyper_parameters"]["train"]["r1_gamma"] == 0.5


@pytest.mark.slow
def test_a_refused_point_of_a_local_sweep_leaves_the_other_points_running(runs, tmp_path):
    sweep = tmp_path / "sweep"
    overrides = without(runs["overrides"], "run_dir", "batch_size")
    proc = run_tool("train", ["-m", *overrides, "batch_size=7,8", f"hydra.sweep.dir={sweep}"], cwd=tmp_path)
    assert proc.returncode != 0  # Hydra reports the failed point once the sweep is done
    assert "train: batch_size=7 is not divisible by the minibatch-std group size" in proc.stderr
    assert (sweep / "0" / ".hydra" / "overrides.yaml").is_file()  # make sweep-report lists the refused point
    assert not (sweep / "0" / "checkpoints").exists()
    assert load_checkpoint(sweep / "1" / "checkpoints" / "last.ckpt")["braingan"]["cur_nimg"] == KIMG * 1000
