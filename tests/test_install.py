"""The set-up installs PyTorch's CPU build (issue 17, item 4).

From the plain package index, ``torch==2.13.0`` on Linux resolves to the CUDA build (several
GB of wheels). ``make setup`` therefore installs torch first and alone, from PyTorch's CPU
wheel index. These tests read that configuration, and resolve it once with pip (a dry run:
nothing is downloaded or installed) to check that the chosen wheel is a CPU build.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def _recipe() -> tuple[str, str]:
    make = (ROOT / "Makefile").read_text()
    index = re.search(r"^TORCH_INDEX \?= (\S+)$", make, re.M)
    assert index, "the Makefile must set TORCH_INDEX ?= <PyTorch's wheel index>"
    stamp = make.split("$(STAMP):", 1)[1].split("\n\n", 1)[0]
    return index.group(1), stamp


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def test_setup_installs_torch_first_from_the_cpu_wheel_index():
    index, recipe = _recipe()
    assert index == CPU_INDEX
    lines = [ln.strip() for ln in recipe.splitlines() if "pip install" in ln]
    torch_line = next(i for i, ln in enumerate(lines) if "requirements-torch.txt" in ln)
    rest_line = next(i for i, ln in enumerate(lines) if "-r requirements.txt" in ln)
    assert torch_line < rest_line, "torch must be installed before the other requirements"
    assert "--index-url $(TORCH_INDEX)" in lines[torch_line]
    prerequisites = recipe.splitlines()[0]  # a change of the pin rebuilds the environment
    assert "requirements-torch.txt" in prerequisites and "requirements.txt" in prerequisites


def test_torch_is_pinned_alike_in_both_requirement_files():
    torch_only = _pins(ROOT / "requirements-torch.txt")
    assert list(torch_only) == ["torch"]
    assert _pins(ROOT / "requirements.txt")["torch"] == torch_only["torch"] == "2.13.0"
    assert "index-url" not in (ROOT / "requirements.txt").read_text()  # PyPI for the rest


def test_the_readme_says_how_to_choose_a_cuda_build():
    readme = (ROOT / "README.md").read_text()
    assert "TORCH_INDEX=" in readme and "CUDA" in readme and "requirements-torch.txt" in readme


def test_a_dry_run_resolution_picks_a_cpu_wheel():
    """pip resolves the set-up's torch requirement against the set-up's index (plus the
    find-links and extra indexes pip is configured with here); nothing is installed."""
    index, _ = _recipe()
    cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
           "--no-deps", "--quiet", "--retries", "0", "--timeout", "15", "--index-url", index,
           "-r", str(ROOT / "requirements-torch.txt"), "--report", "-"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired:
        pytest.skip("pip could not resolve within 4 minutes (no network)")
    if proc.returncode != 0:
        pytest.skip(f"no torch wheel reachable from here: {proc.stderr.strip()[-300:]}")
    report = json.loads(proc.stdout)
    (item,) = report["install"]
    assert item["metadata"]["name"] == "torch"
    version = item["metadata"]["version"]
    url = item["download_info"]["url"]
    assert version.startswith("2.13.0") and ("+cpu" in version or "cpu" in url), (version, url)
    assert "cu1" not in url and "nvidia" not in json.dumps(item["metadata"].get("requires_dist", []))
