"""Sandboxes of their own for test runs and benchmarks: names carrying the process id, a state
directory, free ports and a free network each, so that two runs on one Docker engine never meet;
and the removal of what runs killed before their teardown left behind."""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from sandbox import services
from sandbox.shell import log
from vllm_fleet.exposure import ALERTMANAGER_CLUSTER_PORT
from vllm_fleet.monitoring import exporters
from vllm_fleet.settings import KNOBS

# `make demo`'s sandbox publishes its vLLM ports from here; a run's draw keeps apart from them.
HTTP_PORT_BASE_DEMO = 18000


def environment(prefix: str, state: Path, ssh_port: int, http_port: int, subnet: str) -> dict[str, str]:
    """The environment of a sandbox of its own: names, state, ports and a network, for this tool
    and inventories/sandbox.py alike."""
    return {
        **os.environ,
        "VLLM_FLEET_SANDBOX_PREFIX": prefix,
        "VLLM_FLEET_SANDBOX_STATE": str(state),
        "VLLM_FLEET_SANDBOX_SSH_PORT": str(ssh_port),
        "VLLM_FLEET_SANDBOX_HTTP_PORT": str(http_port),
        "VLLM_FLEET_SANDBOX_SUBNET": subnet,
    }


# A run's sandboxes are named vllm-fleet-<name>-p<pid>: the pid of the test or benchmark process.
_RUN_NAME = re.compile(r"^vllm-fleet-[a-z-]+-p(\d+)(-|$)")
# Ports a sandbox may publish above its bases: hosts from 1, monitoring hosts from 41, gateways from 51.
_PORTS_PER_SANDBOX = 60
# What this process's sandboxes drew already (a test run has two): the ports of one are not yet
# bound, nor its network made, when the next draws.
_RESERVED_PORT_BASES: set[int] = set()
_RESERVED_SUBNETS: set[str] = set()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_runs() -> None:
    """Remove the containers and networks of earlier runs whose process is gone (a run killed
    before its teardown); those of live runs, and `make demo`'s, are left alone."""
    if not shutil.which("docker"):
        return  # no Docker yet (ensure_docker installs it): nothing of an earlier run to remove
    listed = {
        "container": ["docker", "ps", "-a", "--filter", "label=vllm-fleet-sandbox=1", "--format", "{{.Names}}"],
        "network": ["docker", "network", "ls", "--format", "{{.Name}}"],
    }
    for kind, command in listed.items():
        names = subprocess.run(command, capture_output=True, text=True).stdout.split()
        for name in names:
            match = _RUN_NAME.match(name)
            if match and not _alive(int(match.group(1))):
                log(f"removing {kind} {name} of a run that is gone")
                if kind == "container":
                    subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True)
                    subprocess.run(["docker", "volume", "rm", f"{name}-docker"], capture_output=True)
                else:
                    for service in services.SERVICES:
                        service.leave(name)
                    subprocess.run(["docker", "network", "rm", name], capture_output=True)


def _in_my_share(n: int) -> bool:
    """The tests' pytest-xdist workers draw ports and networks from shares apart (n: a port base's
    hundred, a network's third byte): two draws at once in two processes never meet."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return n % workers == (int(worker[2:]) if worker.startswith("gw") else 0)


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _deploy_ports() -> set[int]:
    """The ports the deploy opens on a host by default: a host's SSH port on this machine must be
    none of them, or its rules refuse the sandbox (they cannot tell a forwarded port from sshd's)."""
    knobs = ("vllm_port", "vllm_cluster_port", "gateway_port", "prometheus_port", "alertmanager_port")
    return {int(KNOBS[name].default) for name in knobs} | {
        exporters.NODE_EXPORTER_PORT,
        exporters.DCGM_EXPORTER_PORT,
        exporters.AMD_EXPORTER_PORT,
        exporters.HAPROXY_METRICS_PORT,
        ALERTMANAGER_CLUSTER_PORT,
    }


def _free_port_base(rng: random.Random) -> int:
    """A base whose next _PORTS_PER_SANDBOX ports nothing on 127.0.0.1 listens on, below the
    kernel's ephemeral range (an outgoing connection could take a port of a stopped host, which
    then cannot start again) and apart from `make demo`'s."""
    top = _ephemeral_low() - _PORTS_PER_SANDBOX
    deploy_ports = _deploy_ports()
    bases = [
        b
        for b in range(10000, top, 100)
        if abs(b - HTTP_PORT_BASE_DEMO) >= _PORTS_PER_SANDBOX
        and _in_my_share(b // 100)
        and all(abs(b - r) >= _PORTS_PER_SANDBOX for r in _RESERVED_PORT_BASES)
        and not any(b < port <= b + _PORTS_PER_SANDBOX for port in deploy_ports)
    ]
    for _ in range(200):
        base = rng.choice(bases)
        try:
            with contextlib.ExitStack() as stack:
                for port in range(base + 1, base + _PORTS_PER_SANDBOX + 1):
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no free range of ports found on 127.0.0.1")


def _free_subnet(rng: random.Random) -> str:
    """A 172.30.X /24 no Docker network uses, nor another sandbox of this process."""
    if not shutil.which("docker"):
        return rng.choice(
            [f"172.30.{x}" for x in range(10, 250) if f"172.30.{x}" not in _RESERVED_SUBNETS and _in_my_share(x)]
        )
    ids = subprocess.run(["docker", "network", "ls", "-q"], capture_output=True, text=True).stdout.split()
    used = subprocess.run(
        ["docker", "network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}} {{end}}", *ids],
        capture_output=True,
        text=True,
    ).stdout.split()
    taken = {subnet.rsplit(".", 1)[0] for subnet in used} | _RESERVED_SUBNETS
    candidates = [f"172.30.{x}" for x in range(10, 250) if f"172.30.{x}" not in taken and _in_my_share(x)]
    if not candidates:
        raise RuntimeError("every 172.30.X.0/24 is taken by a Docker network")
    return rng.choice(candidates)


def run_environment(name: str) -> dict[str, str]:
    """The environment of a sandbox for this process alone (a test run, a benchmark): names with
    the process's pid, a state directory of its own, free ports and a free network, so that two
    runs on one Docker engine never meet. Stale sandboxes of dead runs are removed first."""
    sweep_stale_runs()
    rng = random.Random()
    state = Path(tempfile.mkdtemp(prefix=f"vllm-fleet-{name}-"))
    ssh_base = _free_port_base(rng)
    _RESERVED_PORT_BASES.add(ssh_base)
    http_base = _free_port_base(rng)
    _RESERVED_PORT_BASES.add(http_base)
    subnet = _free_subnet(rng)
    _RESERVED_SUBNETS.add(subnet)
    return environment(f"vllm-fleet-{name}-p{os.getpid()}", state, ssh_base, http_base, subnet)
