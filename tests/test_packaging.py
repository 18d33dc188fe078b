"""A normal (non-editable) wheel carries the configs: entry points work from the installed package alone.

The wheel is built from a copy of the repository (so the build leaves no build/ or egg-info in
the working tree), installed with `pip install --target`, and used from a subprocess whose
sys.path holds that folder and the venv's dependencies but not src/ or the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from helpers.runs import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """<tmp>/site: the braingan wheel installed with pip --target."""
    tmp = tmp_path_factory.mktemp("packaging")
    source = tmp / "source"
    source.mkdir()
    shutil.copy(REPO / "pyproject.toml", source)
    for name in ("README.md",):
        if (REPO / name).exists():
            shutil.copy(REPO / name, source)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(REPO / "src", source / "src", ignore=ignore)
    shutil.copytree(REPO / "conf", source / "conf", ignore=ignore)
    wheels = tmp / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    build = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", str(source), "-w", str(wheels)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = wheels.glob("braingan-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert "braingan/conf/train.yaml" in names and "braingan/conf/dataset/demo.yaml" in names
    target = tmp / "site"
    install = subprocess.run(
        [*pip, "install", "--no-deps", "--target", str(target), str(wheel)], capture_output=True, text=True, timeout=300
    )
    assert install.returncode == 0, install.stdout + install.stderr
    return target


def run_installed(site: Path, code: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """python <code> with only the installed wheel and the venv's dependencies importable."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join([str(site), sysconfig.get_paths()["purelib"]])
    # -S: no site-packages .pth files, so the editable install of the working tree is not seen
    return subprocess.run([sys.executable, "-S", *code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_wheel_holds_every_module_and_config(site: Path) -> None:
    source = REPO / "src" / "braingan"
    modules = {p.relative_to(source).as_posix() for p in source.rglob("*.py") if "__pycache__" not in p.parts}
    shipped = {p.relative_to(site / "braingan").as_posix() for p in (site / "braingan").rglob("*.py")}
    assert modules <= shipped, f"not in the wheel (add the package to pyproject.toml): {sorted(modules - shipped)}"
    configs = {p.relative_to(REPO / "conf").as_posix() for p in (REPO / "conf").rglob("*.yaml")}
    packaged = {
        p.relative_to(site / "braingan" / "conf").as_posix() for p in (site / "braingan" / "conf").rglob("*.yaml")
    }
    assert configs == packaged


def test_conf_dir_points_into_the_installed_package(site: Path, tmp_path: Path) -> None:
    code = (
        "import braingan, braingan.cli as c; from braingan.confdir import CONF_DIR; "
        "print(braingan.__file__); print(CONF_DIR); print(c.CONF_DIR == CONF_DIR and (CONF_DIR / 'train.yaml').is_file())"
    )
    proc = run_installed(site, ["-c", code], tmp_path)
    assert proc.returncode == 0, proc.stderr
    package, conf_dir, ok = proc.stdout.split()
    assert Path(package).resolve().is_relative_to(site.resolve())
    assert Path(conf_dir) == (site / "braingan" / "conf").resolve() and ok == "True"


def test_the_installed_train_config_composes(site: Path, tmp_path: Path) -> None:
    code = (
        "from hydra import compose, initialize_config_dir\n"
        "from braingan.experiment.command import register_resolvers\n"
        "from braingan.confdir import CONF_DIR\n"
        "register_resolvers()\n"
        "with initialize_config_dir(config_dir=str(CONF_DIR), version_base='1.3'):\n"
        "    cfg = compose(config_name='train', overrides=['model=tiny', 'resolution=32'])\n"
        "print(cfg.resolution)\n"
    )
    proc = run_installed(site, ["-c", code], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == "32"


def test_an_entry_point_runs_from_the_installed_package(site: Path, tmp_path: Path) -> None:
    proc = run_installed(site, ["-m", "braingan.plots", "--help"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "plots is powered by Hydra" in proc.stdout or "== Config ==" in proc.stdout
    assert not (tmp_path / "outputs").exists()  # --help writes nothing
