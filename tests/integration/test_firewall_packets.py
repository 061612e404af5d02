"""The firewall table a vLLM host gets, loaded into the kernel of a network namespace of its own
and tried with real connections over IPv4 and IPv6: the addresses it admits get through to
vLLM's port and the exporter's, every other address is dropped, SSH is reached from anywhere,
and the table read back from the kernel holds exactly the networks planned.

The sandbox's hosts share a Docker network without IPv6; two namespaces joined by a veth pair
have both, and need no Docker: the host's namespace loads the rendered table with nft, as the
deploy's unit does, and listens on the ports; the client's namespace holds an address of each
kind (admitted or not, for each family) and connects from each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from vllm_fleet import firewall
from vllm_fleet.monitoring.exporters import NODE_EXPORTER_PORT
from vllm_fleet.rules import check_fleet, validate

HOST_V4, HOST_V6 = "10.77.0.1", "fd77::1"
ADMITTED_V4, ADMITTED_V6 = "10.77.0.2", "fd77::2"  # vllm_allowed_sources
MONITOR_V6 = "fd77::3"  # the monitoring host: vLLM's port and the exporter's
STRANGER_V4, STRANGER_V6 = "10.77.0.9", "fd77::9"
VLLM_PORT, SSH_PORT = 8000, 22
KEY = "firewall-test-key-" + "Zq7wPm2x"

LISTEN = textwrap.dedent(
    """
    import socket, sys, time
    servers = []
    for port in map(int, sys.argv[1:]):
        s = socket.create_server(("::", port), family=socket.AF_INET6, dualstack_ipv6=True)
        servers.append(s)
    print("listening", flush=True)
    time.sleep(120)
    """
)
CONNECT = textwrap.dedent(
    """
    import json, socket, sys
    reached = {}
    for source, destination, port in json.loads(sys.argv[1]):
        try:
            socket.create_connection((destination, port), timeout=1.5, source_address=(source, 0)).close()
            reached[f"{source} {port}"] = True
        except OSError:
            reached[f"{source} {port}"] = False
    print(json.dumps(reached))
    """
)


def fleet() -> dict:
    serving = {"vllm_bind_address": "0.0.0.0", "vllm_api_key": KEY, "vllm_port": VLLM_PORT}
    hosts = {
        "gpu-1": validate(
            "gpu-1",
            {
                "phase": "enterprise",
                "fleet_address": HOST_V4,
                "vllm_allowed_sources": [ADMITTED_V4, ADMITTED_V6],
                **serving,
            },
            ["enterprise"],
        ),
        "mon": validate(
            "mon",
            {"fleet_address": MONITOR_V6, "alert_webhook_url": "https://alerts.example.com/hook"},
            ["monitoring"],
        ),
    }
    for settings in hosts.values():
        check_fleet(settings, hosts)
    return hosts


def ns(name: str, *command: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", name, *command], check=True, text=True, capture_output=True, **kwargs)


@pytest.fixture
def namespaces():
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    host, client = f"vf-host-{os.getpid()}", f"vf-client-{os.getpid()}"
    veth = f"vf{os.getpid() % 100000}"
    try:
        for name in (host, client):
            subprocess.run(["ip", "netns", "add", name], check=True)
        subprocess.run(
            ["ip", "link", "add", f"{veth}h", "netns", host, "type", "veth", "peer", f"{veth}c", "netns", client],
            check=True,
        )
        addresses = {host: [HOST_V4 + "/24", HOST_V6 + "/64"]}
        addresses[client] = [f"{a}/24" for a in (ADMITTED_V4, STRANGER_V4)]
        addresses[client] += [f"{a}/64" for a in (ADMITTED_V6, MONITOR_V6, STRANGER_V6)]
        for name, device in ((host, f"{veth}h"), (client, f"{veth}c")):
            for address in addresses[name]:
                # nodad: usable at once, not after IPv6's duplicate address detection.
                extra = ["nodad"] if ":" in address else []
                ns(name, "ip", "addr", "add", address, "dev", device, *extra)
            ns(name, "ip", "link", "set", device, "up")
            ns(name, "ip", "link", "set", "lo", "up")
        yield host, client
    finally:
        for name in (host, client):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


def test_the_table_admits_its_sources_over_both_families_and_drops_the_rest(namespaces, tmp_path):
    host, client = namespaces
    table = tmp_path / "firewall.nft"
    hosts = fleet()
    table.write_text(firewall.rules(hosts["gpu-1"], hosts))
    ns(host, "nft", "-f", str(table))
    listener = subprocess.Popen(
        ["ip", "netns", "exec", host, sys.executable, "-c", LISTEN, str(VLLM_PORT), str(NODE_EXPORTER_PORT), "22"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert listener.stdout and listener.stdout.readline().strip() == "listening"
        tries = [
            (source, HOST_V6 if ":" in source else HOST_V4, port)
            for source in (ADMITTED_V4, ADMITTED_V6, MONITOR_V6, STRANGER_V4, STRANGER_V6)
            for port in (VLLM_PORT, NODE_EXPORTER_PORT, SSH_PORT)
        ]
        reached = json.loads(ns(client, sys.executable, "-c", CONNECT, json.dumps(tries), timeout=60).stdout)
    finally:
        listener.kill()
        listener.wait()
    assert reached == {
        # vllm_allowed_sources: vLLM's port, not the exporter's.
        f"{ADMITTED_V4} {VLLM_PORT}": True,
        f"{ADMITTED_V4} {NODE_EXPORTER_PORT}": False,
        f"{ADMITTED_V6} {VLLM_PORT}": True,
        f"{ADMITTED_V6} {NODE_EXPORTER_PORT}": False,
        # The monitoring host scrapes both.
        f"{MONITOR_V6} {VLLM_PORT}": True,
        f"{MONITOR_V6} {NODE_EXPORTER_PORT}": True,
        f"{STRANGER_V4} {VLLM_PORT}": False,
        f"{STRANGER_V4} {NODE_EXPORTER_PORT}": False,
        f"{STRANGER_V6} {VLLM_PORT}": False,
        f"{STRANGER_V6} {NODE_EXPORTER_PORT}": False,
        # SSH is never filtered, whoever asks.
        **{f"{source} {SSH_PORT}": True for source in (ADMITTED_V4, ADMITTED_V6, MONITOR_V6, STRANGER_V4, STRANGER_V6)},
    }
    # Read back from the kernel: each set holds the planned networks, as the kernel writes them.
    listed = json.loads(ns(host, "nft", "-j", "list", "table", "inet", "vllm_fleet").stdout)["nftables"]
    sets = {item["set"]["name"]: _elements(item["set"]) for item in listed if "set" in item}
    assert sets == {
        "vllm_ipv4": {ADMITTED_V4},
        "vllm_ipv6": {ADMITTED_V6, MONITOR_V6},
        "metrics_ipv4": set(),
        "metrics_ipv6": {MONITOR_V6},
    }


def _elements(nft_set: dict) -> set[str]:
    """A set's elements as `nft -j` lists them: an address, or a prefix {"prefix": {addr, len}}."""
    found = set()
    for element in nft_set.get("elem", []):
        if isinstance(element, dict) and "prefix" in element:
            found.add(f"{element['prefix']['addr']}/{element['prefix']['len']}")
        else:
            found.add(element)
    return found
