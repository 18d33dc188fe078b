"""Plain-text tables of the entry points: cells ('-' for a missing value) and fixed-width columns.

cell(None) -> '-'     cell(0.5) -> '0.500'     cell(0.5, '.4g') -> '0.5'     cell('x') -> 'x'
fixed_width(['run', 'kimg'], [['0', '0.500']], right={'kimg'}) ->
    run   kimg
    0    0.500
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence

MISSING = "-"  # what a table prints for a value that is not there


def cell(value, spec: str | None = None) -> str:
    """A value as table text: None -> '-'; a float with `spec` (default: 3 decimals, 4 significant digits
    from 1e4 on; inf and nan as such); anything else with `spec` if given, else str()."""
    if value is None:
        return MISSING
    if spec is not None:
        return format(value, spec)
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.3f}" if abs(value) < 1e4 else f"{value:.4g}"
    return str(value)


def fixed_width(
    columns: Sequence[str],  # header names
    rows: Sequence[Sequence[str]],  # one list of cell texts per row, in column order
    right: Collection[str] = (),  # columns aligned right (numbers); the others left
    gap: str = "  ",  # between columns
) -> list[str]:
    """The header and the rows as lines of aligned columns, each as wide as its widest cell (no trailing spaces)."""
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if c in right else v.ljust(w) for c, v, w in zip(columns, values, widths)]
        return gap.join(parts).rstrip()

    return [line(columns)] + [line(r) for r in rows]


def significant(x: float | None, digits: int = 5) -> float | None:
    """x rounded to `digits` significant digits (what result JSON files store and tables print); None, 0, inf, nan as given."""
    if x is None or x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - math.floor(math.log10(abs(x))))
