"""The built wheel carries the shipped models: installed from it, progvc codes with no source tree.

This is ``pip install <wheel>`` in a fresh venv, then ``python -c "import progvc; ..."`` from another
folder, without reinstalling torch: the wheel is built from a copy of the sources, unpacked (a
wheel *is* its site-packages layout), and a subprocess imports progvc from there, with the working
directory elsewhere and ``$PROGVC_WEIGHTS_DIR`` unset.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_WHEEL_BYTES = 100 * 2**20  # PyPI's default upload limit per file

pytestmark = [pytest.mark.slow, pytest.mark.weights]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built (no build isolation, no network) from a copy of pyproject.toml, README and progvc/."""
    if not (ROOT / "progvc" / "weights" / "manifest.json").is_file():
        pytest.skip("progvc/weights/manifest.json is absent")
    src, dist = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("dist")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "progvc", src / "progvc", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(dist), str(src)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    (found,) = dist.glob("progvc-*.whl")
    return found


def test_wheel_holds_every_model_the_manifest_lists(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    manifest = json.loads((ROOT / "progvc" / "weights" / "manifest.json").read_text())
    files = {f"progvc/weights/{entry['file']}" for entry in manifest["models"].values()}
    assert {"progvc/weights/manifest.json", "progvc/weights/README.md", "progvc/py.typed"} | files <= names
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "examples/"))]
    assert wheel.stat().st_size < MAX_WHEEL_BYTES


def test_wheel_version_is_the_package_version(wheel):
    """pyproject.toml reads the version from progvc/__init__.py, so the two cannot drift."""
    import progvc

    assert wheel.name.startswith(f"progvc-{progvc.__version__}-")
    metadata = next(n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".dist-info/METADATA"))
    assert f"Version: {progvc.__version__}\n" in zipfile.ZipFile(wheel).read(metadata).decode()


def test_installed_wheel_codes_with_the_shipped_model_from_another_folder(wheel, tmp_path):
    site, elsewhere = tmp_path / "site-packages", tmp_path / "elsewhere"
    elsewhere.mkdir()
    zipfile.ZipFile(wheel).extractall(site)
    code = """
import sys
from pathlib import Path
import numpy as np
import progvc
from progvc.weights import weights_dir
site = Path(sys.argv[1]).resolve()
assert Path(progvc.__file__).resolve().is_relative_to(site), progvc.__file__
assert Path(str(weights_dir())).resolve().is_relative_to(site), weights_dir()
video = np.random.default_rng(0).integers(0, 256, (2, 24, 40, 3), dtype=np.uint8)
data = progvc.encode(video, n_scales=3, refine=0, device="cpu")
frames = progvc.decode(data, device="cpu")
assert frames.shape == video.shape and frames.dtype == np.uint8
print(progvc.info(data).model_name)
"""
    env = {k: v for k, v in os.environ.items() if k not in ("PROGVC_WEIGHTS_DIR", "PYTHONPATH")}
    env["PYTHONPATH"] = str(site)
    done = subprocess.run([sys.executable, "-c", code, str(site)], cwd=elsewhere, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    default = json.loads((site / "progvc" / "weights" / "manifest.json").read_text())["default"]
    assert done.stdout.split() == [default]
