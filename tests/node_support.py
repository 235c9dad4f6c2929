"""twilio-node for tests: Twilio's own JavaScript library, as an oracle or as a client.

``npm install`` puts it once into ``tests/.node`` (gitignored), shared by every test that
needs it; later runs reuse it. ``.ci/run`` calls this module (``python3
tests/node_support.py``) so CI installs it before the tests. Without node or npm a test
skips with the reason, unless ``WEBHOOK_KIT_REQUIRE_SERVICES=1``.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

#: The one place the version is chosen: 6.3 is the first with shared-key signatures.
TWILIO_SPEC = "twilio@^6.3.1"
NODE_DIR = Path(__file__).resolve().parent / ".node"
TWILIO_PACKAGE = NODE_DIR / "node_modules" / "twilio" / "package.json"


def install() -> str | None:
    """Install twilio-node into :data:`NODE_DIR` unless it is there; None, or why it cannot be."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install -y nodejs npm)"
    NODE_DIR.mkdir(exist_ok=True)
    with open(NODE_DIR / ".lock", "w") as lock:  # two test processes install it once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if TWILIO_PACKAGE.exists():
            return None
        done = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(NODE_DIR), TWILIO_SPEC],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0 or not TWILIO_PACKAGE.exists():
            return f"npm install {TWILIO_SPEC} failed: {done.stderr.strip()[-500:]}"
    return None


def require_twilio_node() -> None:
    """Skip (or fail under WEBHOOK_KIT_REQUIRE_SERVICES=1) when twilio-node cannot be had."""
    from conftest import require_service

    reason = install()
    require_service(reason is None, reason or "")


def run_node(script: str, payload: Any) -> Any:
    """Run ``script`` with twilio-node importable; it reads JSON on stdin, writes JSON."""
    require_twilio_node()
    done = subprocess.run(
        ["node", "-e", script],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        cwd=NODE_DIR,
        env={**os.environ, "NODE_PATH": str(NODE_DIR / "node_modules")},
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise AssertionError(f"node failed ({done.returncode}): {done.stderr}")
    return json.loads(done.stdout)


if __name__ == "__main__":
    problem = install()
    if problem:
        print(problem, file=sys.stderr)
        sys.exit(1)
    print(f"twilio-node installed in {NODE_DIR}")
