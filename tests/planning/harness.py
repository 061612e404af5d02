"""Planning against facts written by hand: a whole deploy.py run on pyinfra's @fake connector.

A FakeHost is a host's state (os-release, PCI bus, nvidia-smi, the pre-flight probe,
installed packages, present files), written by hand to match the vendors' documented
outputs: no GPU host was ever reachable to record one. The base probe (full_probe) is written
by hand too, an Ubuntu 22.04 host with nothing installed, in the probe's key=value format; the
one probe recorded on a real host (a sandbox host, tests/unit/fixtures) is read by the unit
tests, not here. tests/planning/data holds plans recorded from these hand-written hosts (see
test_plans_unchanged.py), not hosts' outputs. A host's state becomes @fake `fake_responses`, so
pyinfra's own facts and ours read it; nothing runs anywhere. `plan()` executes the deploy
against it (-y -vv) and returns, per operation, the commands it ran; `changes()` is a
--dry run's list of operations that would change something.

What the planning tests assert about commands is of two kinds. Where a test's docstring
names a vendor document, package index or URL the expected text was checked against, it
checks the plan against that source. Everything else is a change detector: the expected
commands were taken from the code, so such a test catches an unintended change, not an
error in what the vendor expects.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PYINFRA = str(Path(sys.executable).parent / "pyinfra")

OS_RELEASE = {
    "ubuntu22": 'NAME="Ubuntu"\nVERSION_ID="22.04"\nID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=jammy',
    "ubuntu24": 'NAME="Ubuntu"\nVERSION_ID="24.04"\nID=ubuntu\nID_LIKE=debian\nVERSION_CODENAME=noble',
    "debian12": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nID=debian\n'
    "VERSION_CODENAME=bookworm",
    "rocky9": 'NAME="Rocky Linux"\nVERSION="9.4 (Blue Onyx)"\nID="rocky"\nID_LIKE="rhel centos fedora"\n'
    'VERSION_ID="9.4"\nPLATFORM_ID="platform:el9"',
}
# /sys/bus/pci/devices/*/{class,vendor}, as the GpuVendors fact prints them.
PCI = {
    "h100": ["0x060000 0x8086", "0x030000 0x1a03", "0x030200 0x10de"],
    "mi300x": ["0x060000 0x1022", "0x038000 0x1002"],
    "none": ["0x060000 0x8086", "0x010802 0x144d"],
}
H100_SMI = ["NVIDIA H100 80GB HBM3, 81559, 570.133.20, 9.0"]


@dataclass
class FakeHost:
    name: str
    os: str = "ubuntu22"
    pci: str = "h100"
    nvidia_smi: list[str] = field(default_factory=list)
    probe: dict[str, str] = field(default_factory=dict)
    packages: dict[str, str] = field(default_factory=dict)  # installed deb packages -> version
    files: dict[str, str] = field(default_factory=dict)  # present files -> content
    dirs: list[str] = field(default_factory=list)  # present directories
    data: dict = field(default_factory=dict)  # host data (settings)

    def full_probe(self) -> list[str]:
        probe = {
            "kernel": "6.8.0-45-generic",
            "headers": "yes",
            "secure_boot": "SecureBoot disabled",
            "nouveau": "no",
            "nvidia_driver": "",
            "toolkit": "no",
            "docker": "no",
            "docker_snap": "no",
            "docker_runtimes": "",
            "daemon_json": self.files.get("/etc/docker/daemon.json", "").replace("\n", ""),
            "kfd": "no",
            "render_group": "no",
            "gfx": "",
            "shm_kib": str(64 * 1024 * 1024),
            "docker_root_free_kib": str(500 * 1024**2),
            "nix_store_free_kib": str(500 * 1024**2),
            "hf_cache_free_kib": str(500 * 1024**2),
            "hf_cache_has_model": "no",
            "port_listeners": "",
            "vllm_container_port": "",
            "held": "",
            "nix": "no",
            "machine": "x86_64",
            **self.probe,
        }
        return [f"{k}={v}" for k, v in probe.items()]

    def host_tools(self) -> list[str]:
        """The HostTools fact: curl and jq are there when their packages are; D-Bus, ss and TLS roots
        are, and no lock is held, unless the host's probe (written by hand) says otherwise."""
        tools = {"dbus": "yes", "ss": "yes", "ca-certificates": "yes", "lock_holder": ""}
        tools.update({name: "yes" if name in self.packages else "no" for name in ("curl", "jq")})
        tools.update({k: v for k, v in self.probe.items() if k in tools})
        tools["family"] = "dnf" if self.os.startswith("rocky") else "apt"
        return [f"{k}={v}" for k, v in tools.items()]

    def responses(self) -> dict:
        now = int(time.time())
        r: dict = {}
        for path, content in {**self.files, "/var/lib/apt/periodic/update-success-stamp": ""}.items():
            size = len(content.encode())
            r[f"test -e {path} ||"] = [
                f"user=root group=root mode=-rw-r--r-- atime={now} mtime={now} ctime={now} size={size} '{path}'"
            ]
            r[f"sha1sum {path}"] = [f"{hashlib.sha1(content.encode()).hexdigest()}  {path}"]
            r[f"sha256sum {path}"] = [f"{hashlib.sha256(content.encode()).hexdigest()}  {path}"]
        for path in self.dirs:
            r[f"test -e {path} ||"] = [
                f"user=root group=root mode=drwxr-xr-x atime={now} mtime={now} ctime={now} size=4096 '{path}'"
            ]
        r['echo "kernel=$k"'] = self.full_probe()
        r['echo "lock_holder='] = self.host_tools()
        r["ls -pdL *-release"] = ["/etc/os-release", *OS_RELEASE[self.os].splitlines(), "---"]
        r["/sys/bus/pci/devices"] = PCI[self.pci]
        r["nvidia-smi --query-gpu"] = self.nvidia_smi
        r["dpkg -l"] = [f"ii  {name}  {version}  amd64  written-by-hand" for name, version in self.packages.items()]
        # server.reboot compares uptime before and after: a steady value reads as "rebooted".
        r["/proc/uptime"] = ["1000"]
        # pyinfra's Arch fact; the probe above matched first where both contain it.
        r["uname -m"] = [self.probe.get("machine", "x86_64")]
        manager = "dnf" if self.os.startswith("rocky") else "apt"
        r[f"command -v {manager} || true"] = [f"/usr/bin/{manager}"]
        return r

    def inventory_entry(self) -> tuple[str, dict]:
        return (
            f"@fake/{self.name}",
            {"fake_delay": 0, "fake_delay_jitter": 0, "fake_responses": self.responses(), **self.data},
        )


def write_inventory(tmp_path: Path, hosts: list[FakeHost], group: str = "single_gpu") -> str:
    path = tmp_path / "fake_inventory.py"
    path.write_text(f"{group} = {[h.inventory_entry() for h in hosts]!r}\n")
    return str(path)


@dataclass
class Plan:
    rc: int
    output: str
    ops: dict[str, dict[str, list[str]]]  # operation -> host -> commands it ran (fact reads excluded)
    status: dict[str, dict[str, str]]  # operation -> host -> Success, No changes or Error

    def names(self, host: str) -> list[str]:
        """Operations that did something on the host (changed it, or failed)."""
        return [name for name, hosts in self.status.items() if hosts.get(f"@fake/{host}") in ("Success", "Error")]

    def refusals(self, host: str) -> list[str]:
        """Pre-flight's reasons for refusing the host ("check: why"), as the deploy printed them."""
        # pyinfra pads the names of hosts in one run to one width.
        mark = re.compile(rf"\[@fake/{re.escape(host)}\]\s+pre-flight refused: ")
        return [mark.split(line, 1)[1].strip() for line in self.output.splitlines() if mark.search(line)]


_START = re.compile(r"^--> Starting operation: (.+?)\s*$")
_COMMAND = re.compile(r"^\[(@fake/[^\]]+)\]\s+>>> (.*)$")
_FACT = re.compile(r"^\s+\[(@fake/[^\]]+)\]\s+Loaded fact ")
_RESULT = re.compile(r"^\s+\[(@fake/[^\]]+)\]\s+(Success|No changes|Error)")


def plan(inventory: str) -> Plan:
    """Execute deploy.py against one inventory's fake hosts and record each operation's commands.

    Hosts whose operations differ in name at the same place are announced together by
    pyinfra ("A, B"): give such hosts an inventory each (plan_each).
    """
    done = subprocess.run([PYINFRA, "-y", "-vv", inventory, "deploy.py"], cwd=REPO, capture_output=True, text=True)
    output = done.stdout + done.stderr
    result = _parse(done.returncode, output)
    _record(inventory, result)
    return result


def _parse(rc: int, output: str) -> Plan:
    ops: dict[str, dict[str, list[str]]] = {}
    status: dict[str, dict[str, str]] = {}
    name = None
    for line in output.splitlines():
        if m := _START.match(line):
            name = m.group(1)
            ops.setdefault(name, {})
            status.setdefault(name, {})
        elif name is None:
            continue
        elif m := _COMMAND.match(line):
            ops[name].setdefault(m.group(1), []).append(m.group(2))
        elif m := _FACT.match(line):
            ops[name][m.group(1)].pop()  # that command read a fact
        elif m := _RESULT.match(line):
            status[name][m.group(1)] = m.group(2)
    return Plan(rc, output, ops, status)


def plan_each(tmp_path: Path, hosts: list[FakeHost]) -> Plan:
    """One pyinfra run per host, in parallel, merged into one Plan (rc: the worst)."""
    inventories = []
    for host in hosts:
        folder = tmp_path / host.name
        folder.mkdir()
        inventories.append(write_inventory(folder, [host]))
    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        plans = list(pool.map(plan, inventories))
    ops: dict[str, dict[str, list[str]]] = {}
    status: dict[str, dict[str, str]] = {}
    for p in plans:
        for name, per_host in p.ops.items():
            ops.setdefault(name, {}).update(per_host)
        for name, per_host in p.status.items():
            status.setdefault(name, {}).update(per_host)
    return Plan(max(p.rc for p in plans), "\n".join(p.output for p in plans), ops, status)


def changes(inventory: str) -> dict[str, list[str]]:
    """A --dry run: operation -> hosts it would change for certain (not those only under an _if)."""
    done = subprocess.run(
        [PYINFRA, "--dry", "--json", inventory, "deploy.py"], cwd=REPO, capture_output=True, text=True
    )
    report = json.loads(done.stdout)
    return {op["name"]: op["hosts_with_change"] for op in report["plan"] if op["hosts_with_change"]}


def _record(inventory: str, result: Plan) -> None:
    """With VLLM_FLEET_RECORD_PLANS set, keep each planned inventory and its plan (one JSON line
    each), so that a restructuring can be checked to plan the same (test_plans_unchanged)."""
    record = os.environ.get("VLLM_FLEET_RECORD_PLANS")
    if not record:
        return
    line = json.dumps(
        {"inventory": Path(inventory).read_text(), "rc": result.rc, "ops": result.ops, "status": result.status}
    )
    with open(record, "a") as out:
        out.write(line + "\n")
