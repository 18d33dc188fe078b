"""The suite's GPU tests for `make gpu-check`: found, run in a pytest subprocess, one outcome per test.

A subprocess, not pytest.main in the check's process: the tests get their own CUDA context and
memory, a time limit can stop them (the whole process group), a crash cannot take the check down,
and their Hydra compositions do not meet the check's. `reporting/pytest_outcomes.py` writes one line
per finished test, so what finished before a time limit is kept.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from ..reporting.pytest_outcomes import OPTION, read_outcomes
from ..utils.errors import UsageError

SOURCE_TESTS_DIR = Path(__file__).resolve().parents[3] / "tests"  # tests/ of a source checkout
PLUGIN = "braingan.reporting.pytest_outcomes"  # the per-test log


def is_suite(folder: Path) -> bool:
    """Whether `folder` holds braingan's test suite (its conftest.py and the end-to-end helpers)."""
    return (folder / "conftest.py").is_file() and (folder / "helpers" / "runs.py").is_file()


def find_tests(setting) -> Path | None:
    """The tests folder gpu_check.tests names. auto: the tests/ of this source checkout, else (a wheel
    install run inside the repository) ./tests of the working directory, else None."""
    if setting is None or str(setting) == "":
        return None
    if str(setting) == "auto":
        return next((f for f in (SOURCE_TESTS_DIR, Path.cwd() / "tests") if is_suite(f)), None)
    folder = Path(os.path.expanduser(str(setting)))
    if not folder.exists():
        raise UsageError(f"gpu_check.tests={folder}: no such folder; pass the suite's tests/ folder, auto or null")
    if not folder.is_dir():
        raise UsageError(f"gpu_check.tests={folder} is a file, not a folder; pass the suite's tests/ folder")
    return folder


def run_gpu_tests(folder: Path, outcomes: Path, log: Path, timeout_s: float, hide_gpus: bool = False) -> dict:
    """`pytest -m gpu <folder>` in a subprocess (its output in `log`), stopped after `timeout_s`; per-test outcomes."""
    command = [sys.executable, "-m", "pytest", str(folder), "-m", "gpu", "-q", "-rfEs"]
    command += ["-p", "no:cacheprovider", "-p", PLUGIN, f"{OPTION}={outcomes}"]
    env = dict(os.environ, **({"CUDA_VISIBLE_DEVICES": ""} if hide_gpus else {}))
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with log.open("w", encoding="utf-8") as out:
        proc = subprocess.Popen(
            command, cwd=folder.parent, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            code: int | None = proc.wait(timeout=max(timeout_s, 1.0))
        except subprocess.TimeoutExpired:  # the whole process group: pytest and its data-loader workers
            code = None
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    tests = read_outcomes(outcomes)
    counts = Counter(t["outcome"] for t in tests)
    result: dict[str, Any] = {
        "folder": str(folder),
        "command": " ".join(command),
        "exit_code": code,
        "counts": {k: counts.get(k, 0) for k in ("passed", "failed", "error", "skipped")},
        "tests": tests,
        "log": str(log),
        "outcomes": str(outcomes),
    }
    bad = [t["test"] for t in tests if t["outcome"] in ("failed", "error")]
    if code is None:
        result["failure"] = (
            f"stopped after {time.monotonic() - start:.0f} s (gpu_check.tests_timeout_s or the budget) "
            f"with {len(tests)} test(s) finished"
        )
    elif bad:
        result["failure"] = f"{len(bad)} of {len(tests)} failed: {', '.join(bad)}"
    elif code not in (0, 5):  # 5: no test is marked gpu
        lines = [line for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
        errors = [line.removeprefix("ERROR ") for line in lines if line.startswith("ERROR ")]  # -rE: collection errors
        said = f"errors in {', '.join(errors)}" if errors else (lines[-1] if lines else "no output")
        result["failure"] = f"pytest exited with {code}: {said} (see {log})"
    return result
