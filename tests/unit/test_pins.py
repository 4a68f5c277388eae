"""pyproject.toml and environment.yml must pin the same exact versions."""

import re
import tomllib

import yaml

from selfmoa.paths import ROOT


def _pins(reqs: list[str]) -> dict[str, str]:
    out = {}
    for r in reqs:
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([^\s;]+)", r.strip())
        if m:
            out[m.group(1).lower()] = m.group(2)
    return out


def test_pins_in_sync() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert all("==" in r for r in project), "every dependency in pyproject.toml is pinned exactly"
    assert _pins(project) == _pins(pip_section)
    assert "-e ." in pip_section


def test_torch_pinned_to_the_cpu_wheel_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert _pins(project)["torch"] == "2.13.0"
