"""Where the Hydra configs are: the package `braingan.conf`.

The configs live in conf/ at the top of the repository; pyproject.toml ships that folder in the
wheel as the package `braingan.conf` (package-dir), so an editable install (`make install`) and
a plain `pip install .` both find them through importlib.resources. A source tree that is only
on sys.path (PYTHONPATH=src, nothing installed) falls back to conf/ beside src/.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SOURCE_CONF_DIR = Path(__file__).resolve().parents[2] / "conf"  # conf/ of a source checkout


def find_conf_dir() -> Path:
    """The folder holding train.yaml and the config groups."""
    try:
        installed = Path(str(resources.files("braingan.conf")))
    except ModuleNotFoundError:  # not installed: running from a source tree
        return SOURCE_CONF_DIR
    return installed if (installed / "train.yaml").is_file() else SOURCE_CONF_DIR


CONF_DIR: Path = find_conf_dir()
