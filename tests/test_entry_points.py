"""Every entry point answers a user's mistake in one line on stderr with exit code 2 (braingan.cli).

For each tool: a path that does not exist, a file of the wrong kind where it reads a checkpoint (or
a folder), a misspelt key, an unknown option of a config group. The tools run in this process
through their real `main()`, from an empty working directory.
"""

from __future__ import annotations

import importlib
import sys

import pytest

from helpers.runs import ENTRY_POINTS, one_line_exit

TOOLS = ENTRY_POINTS


def _cases(tmp):
    """tool -> [(case, args, text the line must hold)]; `tmp` holds nowhere/ (missing) and notes.txt."""
    missing, text = tmp / "nowhere", tmp / "notes.txt"
    unknown_option = ("unknown-option", ["hydra/job_logging=nope"], "hydra/job_logging=nope: no such option")
    ckpt_tool = lambda key: [  # noqa: E731
        ("missing-path", [f"{key}={missing}.ckpt"], f"{key}={missing}.ckpt: no such checkpoint file"),
        ("wrong-file", [f"{key}={text}"], "is not a braingan checkpoint: it is a text file"),
    ]
    data_tool = [  # bench, guard and gpu_check train on a dataset folder
        ("missing-path", ["dataset=oasis", f"dataset.root={missing}"], str(missing)),
        ("wrong-file", ["dataset=folder", f"dataset.root={text}"], str(text)),
        ("misspelt-key", ["model.r1_gama=1"], "model.r1_gama: no such setting; did you mean model.r1_gamma?"),
        ("unknown-option", ["model=huge"], "model=huge: no such option"),
    ]
    return {
        "train": [
            (
                "missing-path",
                ["dataset=oasis", f"dataset.root={missing}", f"hydra.run.dir={tmp / 'run'}"],
                str(missing),
            ),
            ("wrong-file", [f"resume={text}"], "is not a braingan checkpoint: it is a text file"),
            ("misspelt-key", ["model.r1_gama=1"], "model.r1_gama: no such setting; did you mean model.r1_gamma?"),
            ("unknown-option", ["model=huge"], "model=huge: no such option (the options are base, paper, small, tiny)"),
        ],
        "eval": ckpt_tool("ckpt")
        + [("misspelt-key", ["num_gne=10"], "num_gne: no such setting; did you mean num_gen?"), unknown_option],
        "audit": ckpt_tool("ckpt") + [("misspelt-key", ["num_pair=10"], "did you mean num_pairs?"), unknown_option],
        "generate": ckpt_tool("ckpt") + [("misspelt-key", ["seds=0-3"], "did you mean seeds?"), unknown_option],
        "export_model": ckpt_tool("ckpt")
        + [("misspelt-key", ["torchscrpt=true"], "did you mean torchscript?"), unknown_option],
        "project": ckpt_tool("ckpt") + [("misspelt-key", ["stepz=3"], "did you mean steps?"), unknown_option],
        "prepare": [
            ("missing-path", [f"input={missing}", f"output={tmp / 'out'}"], str(missing)),
            ("wrong-file", [f"input={text}", f"output={tmp / 'out'}"], str(text)),
            ("misspelt-key", [f"input={tmp}", "slice_rang=[0,1]"], "did you mean slice_range"),
            unknown_option,
        ],
        "bench": data_tool,
        "guard": data_tool,
        "gpu_check": data_tool,  # the dataset is checked before the environment report, with or without CUDA
        "plots": [
            ("missing-path", [f"run={missing}"], str(missing)),
            ("wrong-file", [f"run={text}"], str(text)),
            ("misspelt-key", ["smothing=0.5"], "did you mean smoothing?"),
            unknown_option,
        ],
        "sweep_report": [
            ("missing-path", [f"sweep={missing}"], str(missing)),
            ("wrong-file", [f"sweep={text}"], str(text)),
            ("misspelt-key", ["csvv=x.csv"], "did you mean csv?"),
            unknown_option,
        ],
    }


CASES = [(tool, case) for tool in TOOLS for case in ("missing-path", "wrong-file", "misspelt-key", "unknown-option")]


@pytest.mark.parametrize("tool, case", CASES, ids=[f"{t}-{c}" for t, c in CASES])
def test_a_users_mistake_is_one_line_and_exit_2(tool, case, tmp_path, monkeypatch):
    (tmp_path / "notes.txt").write_text("what I tried today\n")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    args, expected = next((a, e) for c, a, e in _cases(tmp_path)[tool] if c == case)
    monkeypatch.setattr(sys, "argv", [tool, *args])
    main = importlib.import_module(f"braingan.{tool}").main
    message = one_line_exit(main, tool)
    assert expected in message, message
    assert not any(work.iterdir()), f"{tool} wrote into the working directory: {sorted(work.iterdir())}"


def test_every_entry_point_has_its_four_cases(tmp_path):
    cases = _cases(tmp_path)
    assert set(cases) == set(TOOLS)
    for tool, entries in cases.items():
        assert [c for c, _, _ in entries] == ["missing-path", "wrong-file", "misspelt-key", "unknown-option"], tool
