"""Rollout benchmark: a changed setting rolled out to 4, then 8 sandbox vLLM hosts behind a
real HAProxy gateway, with a client sending completions through the gateway the whole time.

    make bench-rollout        (or: .venv/bin/python -m bench.rollout [--keep])

Prints, for each fleet size, the total time, the batches, and requests served vs failed;
then the ratios between the two runs, measured in this one run on this machine. The hosts
serve the stand-in (tests/standin/, not vLLM): what is measured is the rollout machinery
(pyinfra, draining, activation, verification), not model start-up.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from sandbox.runs import run_environment
from sandbox.traffic import Traffic
from vllm_fleet import haproxy
from vllm_fleet.rollout.runner import limit_args

REPO = Path(__file__).resolve().parent.parent
ENV = run_environment("bench")
PYINFRA = str(Path(sys.executable).parent / "pyinfra")
SIZES = (4, 8)


def run(cmd: list[str], check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True)
    if check and done.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd[:4])} failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return done


def inventory(path: Path, max_model_len: int) -> str:
    path.write_text(
        "import runpy as _runpy\n"
        f"_base = _runpy.run_path({str(REPO / 'inventories' / 'sandbox.py')!r})\n"
        f"single_gpu = [(n, {{**d, 'vllm_max_model_len': {max_model_len}}}) for n, d in _base['single_gpu']]\n"
        "gateway = _base['gateway']\n"
    )
    return str(path)


def wait_until_up(gateway: str, count: int) -> None:
    for _ in range(120):
        out = run(["docker", "exec", gateway, "sh", "-c", haproxy.SHOW_STAT])
        if list(haproxy.server_status(out.stdout).values()).count("UP") == count:
            return
        time.sleep(0.5)
    sys.exit("bench: the gateway never saw every host UP")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="leave the sandbox hosts up afterwards")
    args = parser.parse_args()
    sandbox = [sys.executable, "-m", "sandbox.sandbox"]
    run([*sandbox, "down"])
    hosts = max(SIZES)
    print(f"starting {hosts} sandbox vLLM hosts and a gateway ...", flush=True)
    run([*sandbox, "up", "--hosts", str(hosts), "--gateways", "1", "--engine", "standin"])
    state = json.loads((Path(ENV["VLLM_FLEET_SANDBOX_STATE"]) / "hosts.json").read_text())
    names = [h["name"] for h in state["hosts"]]
    gateway = state["gateways"][0]
    work = Path(ENV["VLLM_FLEET_SANDBOX_STATE"])
    started = time.monotonic()
    run([PYINFRA, "-y", inventory(work / "first.py", 8192), "deploy.py"])
    wait_until_up(gateway["name"], hosts)
    print(f"first deploy of {hosts} hosts: {time.monotonic() - started:.0f}s\n", flush=True)

    api_key = Path(state["api_key_file"]).read_text().strip()
    model = run([sys.executable, "-m", "vllm_fleet", "plan", str(work / "first.py"), "--format", "json"])
    model = json.loads(model.stdout)["hosts"][names[0]]["settings"]["vllm_model"]["value"]
    results = {}
    for size, window in zip(SIZES, (4096, 2048), strict=True):
        limits = limit_args(names[:size])
        command = [sys.executable, "-m", "vllm_fleet", "rollout", inventory(work / f"r{size}.py", window)]
        with Traffic(f"http://127.0.0.1:{gateway['http_port']}", api_key, model) as client:
            began = time.monotonic()
            done = run([*command, *limits, "--canary", "1", "--batch", "25%"], check=False)
            took = time.monotonic() - began
        batches = done.stdout.count("[rollout] batch ")
        results[size] = (took, client.served, client.failed)
        print(
            f"{size} hosts: rollout {'completed' if done.returncode == 0 else 'FAILED'} in {took:.1f}s, "
            f"{batches} batches ({took / batches:.1f}s each), through the gateway meanwhile: "
            f"{client.served} requests served, {client.failed} failed",
            flush=True,
        )
        if client.errors:
            print("  first failures: " + "; ".join(client.errors[:3]))
        if done.returncode != 0:
            print(done.stdout[-3000:])
    (t4, s4, f4), (t8, s8, f8) = results[4], results[8]
    print(f"\nratio 8 hosts / 4 hosts: time {t8 / t4:.2f}x")
    print(f"failed / served: 4 hosts {f4 / max(s4, 1):.5f}, 8 hosts {f8 / max(s8, 1):.5f}")
    if not args.keep:
        run([*sandbox, "down"])
    return 0 if f4 == f8 == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
