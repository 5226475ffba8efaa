"""Create (once) or reuse the one environment that every tox env runs in.

tox 4 recreates an environment whenever another env name points at it, so the
envs here stay thin (no deps) and run the suite from ``.tox/suite-env``, which is
rebuilt only when ``pyproject.toml`` or the Python version changes. torch is
installed once, not once per tox env.
"""
from __future__ import annotations

import hashlib
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = ROOT / ".tox" / "suite-env"


def main() -> int:
    key = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + sys.version.encode()).hexdigest()
    stamp = ENV / ".suite-env-key"
    if stamp.is_file() and stamp.read_text() == key:
        return 0
    print(f"suite-env: building {ENV} (torch and friends, once)", flush=True)
    venv.create(ENV, with_pip=True, clear=ENV.exists())
    py = ENV / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "-e", f"{ROOT}[test]"], check=True)
    stamp.write_text(key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
