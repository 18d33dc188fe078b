"""The loader benchmark command runs end to end on a tiny setting (its figure is not asserted)."""

from __future__ import annotations

from pathlib import Path

from braingan.data.bench import main


def test_bench_runs_and_reports_a_rate(tmp_path: Path, capsys) -> None:
    args = [
        "--images",
        "48",
        "--resolution",
        "32",
        "--batch-size",
        "8",
        "--workers",
        "0",
        "--seconds",
        "0.3",
        "--warmup-batches",
        "2",
        "--cache-dir",
        str(tmp_path),
    ]
    rate = main(args)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert rate > 0 and line.startswith("loader: ") and "cache built" in line
    assert "48 images" in line
    main(args)
    assert "cache hit" in capsys.readouterr().out
