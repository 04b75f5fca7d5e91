"""matplotlib for the pictures, in .venv, installed here and only here: CI and
scripts/test install Tests/integration/requirements.txt and never this."""

from __future__ import annotations

import os
import subprocess
import sys

from .targets import ROOT

VENV = os.path.join(ROOT, ".venv")
PYTHON = os.path.join(VENV, "bin", "python")
REQUIREMENTS = os.path.join(ROOT, "Benchmarks", "requirements.txt")
PLOTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plots.py")


def pinned_version() -> str:
    with open(REQUIREMENTS) as f:
        for line in f:
            if line.startswith("matplotlib=="):
                return line.strip().split("==", 1)[1]
    raise RuntimeError(f"no matplotlib pin in {REQUIREMENTS}")


def ensure() -> str:
    """The venv's python, with the pinned matplotlib (installed when missing or different)."""
    if not os.path.exists(PYTHON):
        print(f"creating {VENV}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True, timeout=300)
    probe = subprocess.run([PYTHON, "-c", "import matplotlib; print(matplotlib.__version__)"],
                           capture_output=True, text=True, timeout=120)
    if probe.returncode != 0 or probe.stdout.strip() != pinned_version():
        print(f"pip install -r {os.path.relpath(REQUIREMENTS, ROOT)} into .venv", file=sys.stderr)
        subprocess.run([PYTHON, "-m", "pip", "install", "--disable-pip-version-check", "-q", "--prefer-binary",
                        "-r", REQUIREMENTS], check=True, timeout=900)
    return PYTHON


def draw(results_json: str) -> list[str]:
    """Runs plots.py on a results.json; returns the PNGs written."""
    python = ensure()
    done = subprocess.run([python, PLOTS, results_json], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"plots.py failed: {done.stderr.strip()[-800:]}")
    return [line for line in done.stdout.splitlines() if line.endswith(".png")]
