"""Helpers for the end-to-end tests: compose the real config, shrink it to a tiny CPU run."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The tools: src/braingan/<name>.py with a main() (each has a Makefile target and four bad-input cases).
ENTRY_POINTS = (
    "train",
    "eval",
    "audit",
    "generate",
    "export_model",
    "project",
    "prepare",
    "bench",
    "guard",
    "gpu_check",
    "plots",
    "sweep_report",
)
DEMO_SUBJECTS = 5  # the end-to-end tests' demo set: 5 pseudo-subjects x 32 slices
# The configuration facts of the official full-width 256x256 reference (docs/anchors.md), as make bench reports them.
PAPER_256 = {
    "resolution": 256,
    "img_channels": 1,
    "channel_base": 32768,
    "channel_max": 512,
    "mapping_layers": 8,
    "batch_size": 32,
    "augment": "ada",
}


def compose(overrides: list[str]):
    """The real conf/train.yaml composed with Hydra's compose API (as the entry point does)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from braingan.confdir import CONF_DIR
    from braingan.experiment.command import register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose(config_name="train", overrides=overrides)


def tiny_overrides(tmp_path: Path, data_root: Path, kimg: float, dataset: str = "demo", **extra) -> list[str]:
    """A tiny, fast, deterministic CPU run into tmp_path/run (demo data: the 5-subject fixture)."""
    o = {
        "dataset": dataset,
        "trainer": "cpu",
        "model": "tiny",
        "resolution": "32",
        "dataset.root": str(data_root),
        "kimg": kimg,
        "batch_size": 8,
        "trainer.deterministic": True,
        "schedule.log_kimg": 0.016,
        "schedule.image_kimg": 0.032,
        "schedule.last_kimg": 0.032,
        "schedule.snapshot_kimg": 0.064,
        "run_dir": str(tmp_path / "run"),
        "dataset.cache_dir": str(tmp_path / "cache"),
        "paths.cache": str(tmp_path / "cache"),  # FID statistics under <cache>/stats
    }
    if dataset == "demo":
        o["dataset.demo_subjects"] = DEMO_SUBJECTS
    o.update(extra)
    return [f"{k}={v}" for k, v in o.items()]


def run_tool(tool: str, args: list[str], cwd: Path | str = REPO, timeout: int = 600, env: dict | None = None):
    """`python -m braingan.<tool> <args>` as a user runs it; the CompletedProcess (text)."""
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", f"braingan.{tool}", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def tree_digest(folder: Path) -> dict[str, str]:
    """SHA-256 of every file below `folder` by relative path, and every folder (hidden ones included):
    any change, addition or removal shows, an empty new folder too."""
    import hashlib

    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder"
        for p in sorted(folder.rglob("*"))
    }


def without(overrides: list[str], *keys: str) -> list[str]:
    """The overrides minus those of `keys`."""
    return [o for o in overrides if o.split("=")[0] not in keys]


class tmpfs:
    """A small tmpfs mounted at `path` for a disk-full or read-only file system (needs root and CAP_SYS_ADMIN).

    Where mounting is not allowed the test is skipped, except under CI (CI=true), where it fails.
    """

    def __init__(self, path: Path, size: str, read_only: bool = False):
        self.path, self.size, self.read_only = Path(path), size, read_only

    def _mount(self, *args: str) -> None:
        import os
        import subprocess

        import pytest

        proc = subprocess.run(["mount", *args], capture_output=True, text=True)
        if proc.returncode != 0:
            message = f"cannot mount a tmpfs here ({proc.stderr.strip()})"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)

    def __enter__(self) -> tmpfs:
        self.path.mkdir(parents=True, exist_ok=True)
        self._mount("-t", "tmpfs", "-o", f"size={self.size},mode=0755", "tmpfs", str(self.path))
        if self.read_only:
            self.remount(read_only=True)
        return self

    def remount(self, size: str | None = None, read_only: bool = False) -> None:
        """Grow (size=...) or freeze (read_only=True) the mounted file system in place."""
        options = ["remount", "ro" if read_only else "rw"] + ([f"size={size}"] if size else [])
        self._mount("-o", ",".join(options), str(self.path))

    def __exit__(self, *exc) -> None:
        import subprocess

        subprocess.run(["umount", "-l", str(self.path)], check=False)


def one_line_exit(run, tool: str) -> str:
    """Calls run() (an entry point's main, in this process), which must exit with code 2 and one line on stderr; the line."""
    import contextlib
    import io

    import pytest

    err = io.StringIO()
    with pytest.raises(SystemExit) as info, contextlib.redirect_stderr(err):
        run()
    message = err.getvalue().strip()
    assert info.value.code == 2, message
    assert message.startswith(f"{tool}: ") and "\n" not in message, message
    return message
