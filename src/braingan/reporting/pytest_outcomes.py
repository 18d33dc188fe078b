"""A pytest plugin that writes one JSON line per finished test: `pytest -p braingan.reporting.pytest_outcomes
--outcomes-log=<file>` (what `make gpu-check` runs the suite's GPU tests with).

Each line: {"test": node id, "outcome": passed | failed | skipped | error, "seconds": setup + call +
teardown, "message": the reason of a skip or the last line of a failure, else null}. A line is
written (and flushed) as each test ends, so a run stopped at a time limit keeps what finished.
`read_outcomes` reads the file back. Nothing here imports pytest: pytest calls the hooks by name.
"""

from __future__ import annotations

import json
from pathlib import Path

OPTION = "--outcomes-log"


def pytest_addoption(parser) -> None:
    parser.addoption(OPTION, default=None, help="write one JSON line per finished test to this file")


def pytest_configure(config) -> None:
    path = config.getoption(OPTION)
    if path:
        config.pluginmanager.register(OutcomeLog(Path(path)), "braingan-outcome-log")


def _message(report) -> str | None:
    if report.skipped:
        longrepr = report.longrepr
        if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (file, line, "Skipped: reason")
            return str(longrepr[2]).removeprefix("Skipped: ")
        return str(longrepr) if longrepr else None
    if report.failed:
        crash = getattr(getattr(report.longrepr, "reprcrash", None), "message", None)  # what -rf prints
        if crash and str(crash).strip():
            return str(crash).strip().splitlines()[0]
        lines = [line for line in str(report.longreprtext).splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("E ")]
        return (errors[-1] if errors else lines[-1] if lines else "failed").removeprefix("E").strip()
    return None


class OutcomeLog:
    """Collects the setup/call/teardown reports of each test and writes its line at teardown."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = path.open("w", encoding="utf-8")
        self.pending: dict[str, dict] = {}

    def pytest_runtest_logreport(self, report) -> None:
        entry = self.pending.setdefault(report.nodeid, {"outcome": "passed", "seconds": 0.0, "message": None})
        entry["seconds"] += float(getattr(report, "duration", 0.0))
        if report.failed:
            entry["outcome"] = "failed" if report.when == "call" else "error"
            entry["message"] = entry["message"] or _message(report)
        elif report.skipped and entry["outcome"] == "passed":
            entry["outcome"], entry["message"] = "skipped", _message(report)
        if report.when == "teardown":
            entry = self.pending.pop(report.nodeid)
            line = {"test": report.nodeid, **entry, "seconds": round(entry["seconds"], 3)}
            self.file.write(json.dumps(line) + "\n")
            self.file.flush()

    def pytest_unconfigure(self, config) -> None:
        self.file.close()


def read_outcomes(path: Path) -> list[dict]:
    """The lines an OutcomeLog wrote ([] when the file is missing); a half-written last line is left out."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
