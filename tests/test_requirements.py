"""requirements.txt (the tested pins `make install` installs) lies inside pyproject.toml's ranges.

The package declares ranges so that the torch a cluster has can stay (`make test-torch` tests the
oldest); each pin must satisfy its range and each declared dependency must be pinned, so that the
two lists cannot drift apart.
"""

from __future__ import annotations

import re

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from helpers.runs import REPO

try:
    import tomllib
except ImportError:  # Python 3.10 (pytest brings tomli there)
    import tomli as tomllib


def declared() -> dict[str, Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]
    return {canonicalize_name(r.name): r for r in reqs}


def pinned() -> dict[str, Requirement]:
    out = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = re.sub(r"\s+#.*", "", line).strip()
        if line and not line.startswith("#"):
            r = Requirement(line)
            out[canonicalize_name(r.name)] = r
    return out


def test_every_declared_dependency_is_pinned_within_its_range():
    ranges, pins = declared(), pinned()
    assert sorted(set(ranges) - set(pins)) == []
    for name, pin in pins.items():
        exact = [s.version for s in pin.specifier if s.operator == "=="]
        if name in ranges and exact:
            assert ranges[name].specifier.contains(exact[0]), f"{name}=={exact[0]} is outside {ranges[name]}"


def test_torch_and_torchvision_are_ranges_from_the_tested_oldest():
    ranges = declared()
    assert ranges["torch"].specifier.contains("2.4.1") and not ranges["torch"].specifier.contains("2.3.1")
    assert ranges["torchvision"].specifier.contains("0.19.1") and not ranges["torchvision"].specifier.contains("0.18.1")
    # The pin stays: make install gives the tested torch
    assert str(pinned()["torch"].specifier) == "==2.14.1" and str(pinned()["torchvision"].specifier) == "==0.29.1"
    assert Version("2.14.1") in ranges["torch"].specifier
