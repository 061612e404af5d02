"""Engine start benchmark: the real vLLM (CPU build) on a sandbox host, started with an empty
compile cache, then again with the cache the first start left (vllm_cache_dir).

    make bench-engine         (or: .venv/bin/python -m bench.engine_start [--keep])

Prints the seconds from `systemctl restart` to the model being listed, for each start, and
their ratio, measured in this one run on this machine. The host serves the test model
(random weights): what is measured is vLLM's start-up (imports, torch.compile, warm-up).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from sandbox.runs import run_environment
from vllm_fleet import paths
from vllm_fleet.settings import KNOBS

REPO = Path(__file__).resolve().parent.parent
ENV = run_environment("bench-engine")
HOST = ENV["VLLM_FLEET_SANDBOX_PREFIX"] + "-1"
CACHE = KNOBS["vllm_cache_dir"].default


def run(cmd: list[str]) -> str:
    done = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd[:4])} failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return done.stdout


def start_to_ready() -> float:
    """Restart the current release through the deploy's own activation, which waits for the model."""
    started = time.monotonic()
    run(["docker", "exec", HOST, paths.ACTIVATE_SCRIPT, HOST, "current"])
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="leave the sandbox host running")
    args = parser.parse_args()
    sandbox = [sys.executable, "-m", "sandbox.sandbox"]
    run([*sandbox, "down"])
    run([*sandbox, "up", "--hosts", "1", "--engine", "vllm"])
    try:
        run([str(Path(sys.executable).parent / "pyinfra"), "-y", "inventories/sandbox.py", "deploy.py"])
        run(["docker", "exec", HOST, "sh", "-c", f"systemctl stop vllm && rm -rf {CACHE}/* {CACHE}/.[!.]*"])
        cold = start_to_ready()
        cached = run(["docker", "exec", HOST, "du", "-sh", CACHE]).split()[0]
        warm = start_to_ready()
    finally:
        if not args.keep:
            run([*sandbox, "down"])
    print(f"first start, empty compile cache:      {cold:6.1f} s to the model listed")
    print(f"second start, cache kept ({cached:>5}):    {warm:6.1f} s to the model listed")
    print(f"ratio second / first:                  {warm / cold:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
