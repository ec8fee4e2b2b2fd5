"""Installing cnnspec the ordinary way: a wheel built from the repository, `pip install` without extras.

The analysis core needs only pydantic, click, PyYAML and rich; every command that needs more says
which extra to install in one line (no traceback). The wheel goes into a fresh venv without system
site-packages, so torch and the serving stack are really absent.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bare_install(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the cnnspec wheel and its required dependencies only; returns its bin/."""
    root = tmp_path_factory.mktemp("wheel")
    wheels = root / "dist"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(REPO_ROOT)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("cnnspec-*.whl")
    venv.create(root / "venv", with_pip=True)
    bin_dir = root / "venv" / "bin"
    env = {key: value for key, value in os.environ.items() if key not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    done = subprocess.run([str(bin_dir / "pip"), "install", "-q", str(wheel)], capture_output=True, text=True,
                          timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    return bin_dir


def run_bare(bin_dir: Path, *args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    return subprocess.run([str(bin_dir / "cnnspec"), *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd, env=env)


def test_the_bare_wheel_has_no_torch_and_analyses(bare_install: Path, tmp_path: Path) -> None:
    probe = subprocess.run([str(bare_install / "python"), "-c", "import torch"], capture_output=True, text=True)
    assert probe.returncode != 0  # the test means something only if torch is really absent
    done = run_bare(bare_install, "analyze", str(REPO_ROOT / "specs" / "simple_cnn.yaml"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "421,642" in done.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["train", "SPEC", "--epochs", "1", "--out", "RUN"],
     "error: `cnnspec train` needs torch, which is not installed: pip install 'cnnspec[ml]'\n"),
    (["summary", "SPEC"],
     "error: `cnnspec summary` needs torch, which is not installed: pip install 'cnnspec[ml]'\n"),
    (["serve", "REPO"],
     "error: `cnnspec serve` needs pydantic-settings, which is not installed: pip install 'cnnspec[serve]'\n"),
])
def test_commands_that_need_an_extra_say_which(bare_install: Path, tmp_path: Path, args: list[str],
                                               message: str) -> None:
    spec = str(REPO_ROOT / "specs" / "simple_cnn.yaml")
    args = [spec if a == "SPEC" else str(tmp_path) if a == "REPO" else str(tmp_path / "run") if a == "RUN" else a
            for a in args]
    done = run_bare(bare_install, *args, cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr == message
    assert "Traceback" not in done.stdout + done.stderr
