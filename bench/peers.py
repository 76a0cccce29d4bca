"""The peers monitoring's figures are checked against, in a venv of their own: var/peers.

    make peers            # or: .venv/bin/python -m bench.peers

Evidently 0.7.23 needs pandas<3 and pulls in dozens of packages the services never use, so it
stays out of the project venv; the drift tests and bench/drift_vs_evidently.py run it in this venv
by subprocess (bench/evidently_drift.py), handing it the data as an .npz file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / "var" / "peers"
PYTHON = VENV / "bin" / "python"
PINS = ("evidently==0.7.23", "pandas<3")
RUNNER = Path(__file__).parent / "evidently_drift.py"
VERSIONS = ("evidently", "pandas", "numpy", "scipy")


class PeersMissing(RuntimeError):
    """The peers venv is absent or broken: `make peers` builds it."""


def build() -> None:
    """Create var/peers from PyPI with PINS (reusing the venv when it exists)."""
    if not PYTHON.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    subprocess.run([str(PYTHON), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
    subprocess.run([str(PYTHON), "-m", "pip", "install", "--quiet", *PINS], check=True)


def versions() -> dict[str, str]:
    """The peers' package versions, or PeersMissing saying how to get them."""
    if not PYTHON.exists():
        raise PeersMissing(f"no peers venv at {VENV}: run `make peers` (Evidently {PINS[0]} from PyPI)")
    code = f"import json, importlib.metadata as m; print(json.dumps({{p: m.version(p) for p in {VERSIONS}}}))"
    done = subprocess.run([str(PYTHON), "-c", code], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise PeersMissing(f"the peers venv at {VENV} is incomplete ({done.stderr.strip()[-300:]}): "
                           "run `make peers`")
    return json.loads(done.stdout)


def run_evidently(data: Path, spec: dict, timeout: float = 600) -> dict:
    """Run bench/evidently_drift.py in the peers venv on `data` (.npz) with `spec`; its JSON answer."""
    if not PYTHON.exists():
        raise PeersMissing(f"no peers venv at {VENV}: run `make peers`")
    done = subprocess.run([str(PYTHON), str(RUNNER), str(data), json.dumps(spec)],
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"Evidently run failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout)


def main() -> int:
    build()
    print(json.dumps({"venv": str(VENV), **versions()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
