"""A sequence of phases within a wall-clock budget: each is estimated, then run or skipped, and recorded.

`run_phases` asks each `Phase` in turn for a reason to skip it, then for its estimated seconds; a
phase that no longer fits in what is left of the `Budget` is skipped with the reason, else it runs,
isolated: an exception (out of memory, a compile error, a bug) becomes an `error` record with a
one-line reason and the sequence goes on, and `after` (free_memory: garbage, CUDA's cached blocks,
the peak statistics) runs after it. What `make gpu-check` is made of (experiment/gpu_check.py).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..reporting.tables import significant
from ..utils.errors import UserError

OK, FAILED, ERROR, SKIPPED = "ok", "failed", "error", "skipped"  # a phase's status


class Budget:
    """Seconds left of `seconds` since it was made, less `reserve` (kept for writing the results)."""

    def __init__(self, seconds: float, reserve: float = 0.0, clock: Callable[[], float] = time.monotonic):
        self.seconds, self.reserve, self.clock = float(seconds), float(reserve), clock
        self.start = clock()

    def elapsed(self) -> float:
        return self.clock() - self.start

    def left(self) -> float:
        return self.seconds - self.reserve - self.elapsed()

    def refusal(self, estimate_s: float) -> str | None:
        """Why a phase estimated at `estimate_s` does not fit any more, or None when it does."""
        left = self.left()
        if estimate_s <= left:
            return None
        return f"needs about {estimate_s:.0f} s, {max(left, 0.0):.0f} s of budget_s={self.seconds:g} left"


@dataclass
class Phase:
    """One step of the check. Its callables are asked in turn when the phase comes up, so they see what ran before."""

    name: str  # as printed: "bench paper/32 bf16-mixed"
    kind: str  # tests | data | bench | train
    estimate: Callable[[], float]  # seconds it will take
    run: Callable[[], dict]  # its result; a "failure" entry (a reason) marks it failed; raising marks it an error
    skip: Callable[[], str | None] = lambda: None  # a reason not to run it at all (no tests, nothing to compile)
    facts: dict = field(default_factory=dict)  # what it measures (configuration, precision), kept in its record


def free_memory() -> None:
    """What one phase left behind: Python garbage, cached CUDA blocks, the peak-memory statistics."""
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def error_reason(error: BaseException, limit: int = 300) -> str:
    """An error in one short line: its type (unless a UserError, whose message is for the user) and its first line."""
    text = str(error).strip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    line = first if isinstance(error, UserError) else f"{type(error).__name__}: {first}".rstrip(": ")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def error_text(error: BaseException, limit: int = 4000) -> str:
    """The whole message (inductor's can run to pages), for the JSON: the first `limit` characters."""
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= limit else text[:limit] + " ..."


def run_phases(
    phases: Iterable[Phase],
    budget: Budget,
    say: Callable[[str], None] = print,
    after: Callable[[], None] = free_memory,
    records: list[dict] | None = None,
    done: Callable[[], None] = lambda: None,
) -> list[dict]:
    """Runs the phases that fit, in order; one record each, appended to `records` as each comes up (so a
    later phase's callables see the earlier ones): status ok | failed | error | skipped, the reason, the
    estimate, the wall time and the result. `after` runs after each phase that ran, `done` after each record."""
    records = [] if records is None else records
    for phase in phases:
        record: dict[str, Any] = {"name": phase.name, "kind": phase.kind, **phase.facts}
        record.update(status=SKIPPED, reason=None, estimate_s=None, wall_s=None, result=None)
        records.append(record)
        start, ran = budget.clock(), False
        try:
            reason = phase.skip()
            estimate = 0.0
            if reason is None:
                estimate = float(phase.estimate())
                record["estimate_s"] = significant(estimate, 3)
                reason = budget.refusal(estimate)
            if reason is not None:
                record["reason"] = reason
                say(f"[gpu_check] {phase.name}: skipped, {reason}")
                done()
                continue
            say(f"[gpu_check] {phase.name}: about {estimate:.0f} s ({budget.left():.0f} s left)")
            start, ran = budget.clock(), True
            result = phase.run()
            failure = result.pop("failure", None)
            record.update(status=FAILED if failure else OK, reason=failure, result=result)
        except Exception as error:  # out of memory, a compile error, a setting, a bug: recorded, the check goes on
            record.update(status=ERROR, reason=error_reason(error), error=error_text(error))
        finally:
            if ran:
                after()
        record["wall_s"] = significant(budget.clock() - start, 4)
        say(
            f"[gpu_check] {phase.name}: {record['status']} in {record['wall_s']:g} s"
            + (f" ({record['reason']})" if record["reason"] else "")
        )
        done()
    return records
