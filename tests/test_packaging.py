"""The package as it ships: ``python -m build`` makes an sdist and a wheel that ``twine check``
accepts, with the license, the changelog and the demo's data, and the wheel installs into a
fresh virtualenv where ``streamcli --version`` runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import streamcli

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
LEFT_OUT = (".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis")


def run(*cmd: str | Path, cwd: Path = ROOT) -> str:
    done = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"{' '.join(map(str, cmd))}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    # Built from a copy: setuptools' build/ folder would otherwise outlive removed modules.
    source = tmp_path_factory.mktemp("source") / "streamcli"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*LEFT_OUT))
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", out, cwd=source)
    return out


def test_build_makes_an_sdist_and_a_wheel_that_twine_accepts(dist):
    version = streamcli.__version__
    sdist = dist / f"streamcli-{version}.tar.gz"
    (wheel,) = dist.glob(f"streamcli-{version}-py3-none-any.whl")
    assert sdist.exists()
    assert "PASSED" in run(sys.executable, "-m", "twine", "check", "--strict", sdist, wheel)
    with tarfile.open(sdist) as tar:
        names = {Path(n).relative_to(f"streamcli-{version}").as_posix() for n in tar.getnames()}
    assert {"LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml"} <= names
    with zipfile.ZipFile(wheel) as whl:
        files = set(whl.namelist())
        metadata = whl.read(f"streamcli-{version}.dist-info/METADATA").decode()
    assert {"streamcli/data/sample.flac", "streamcli/data/sample.txt"} <= files
    assert f"streamcli-{version}.dist-info/licenses/LICENSE" in files
    assert "License-Expression: MIT" in metadata
    assert "Provides-Extra: asr" in metadata and "Provides-Extra: media" in metadata


def test_the_wheel_installs_in_a_fresh_venv_and_runs(dist, tmp_path):
    (wheel,) = dist.glob("streamcli-*.whl")
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv)
    run(venv / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel)
    assert run(venv / "bin" / "streamcli", "--version").strip() == (
        f"streamcli {streamcli.__version__}"
    )
