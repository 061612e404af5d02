"""What the deploy itself runs on a host, and the package manager's lock it waits for.

A minimal server (systemd and sshd, nothing else) lacks some of it: D-Bus, without which
`systemd-run --wait` fails with "Failed to connect to bus"; curl and jq for the readiness
check; ss for pre-flight's port check; TLS roots for downloads. A fresh Ubuntu host runs
unattended-upgrades, which holds the package lock for minutes after boot.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tool:
    present: str  # shell test, true when the host has it
    apt: str  # package that provides it
    dnf: str
    why: str


TOOLS = {
    "dbus": Tool(
        "[ -e /lib/systemd/system/dbus.socket ] || [ -e /usr/lib/systemd/system/dbus.socket ]",
        "dbus",
        "dbus",
        "systemd-run --wait talks to systemd over it",
    ),
    "curl": Tool("command -v curl", "curl", "curl", "the readiness check and the verify suite"),
    "jq": Tool("command -v jq", "jq", "jq", "the readiness check"),
    "ss": Tool("command -v ss", "iproute2", "iproute", "pre-flight's port check"),
    "ca-certificates": Tool(
        "[ -s /etc/ssl/certs/ca-certificates.crt ] || [ -s /etc/pki/tls/certs/ca-bundle.crt ]",
        "ca-certificates",
        "ca-certificates",
        "HTTPS downloads",
    ),
}
# What each role runs; a gateway's HAProxy and socat come with its own task, curl is for the
# verify suite's check that the gateway answers.
ROLE_TOOLS = {"vllm": tuple(TOOLS), "gateway": ("curl", "ca-certificates"), "monitoring": ("curl", "ca-certificates")}

# Package manager locks: fcntl locks, listed in /proc/locks by inode with the holder's pid.
LOCKS = ("/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock", "/var/lib/apt/lists/lock", "/var/lib/rpm/.rpm.lock")


def apt_lock_conf(timeout: int) -> str:
    return (
        "// Managed by vllm-fleet: wait for another apt or dpkg (unattended-upgrades) instead of failing.\n"
        f'DPkg::Lock::Timeout "{int(timeout)}";\n'
    )


# Prints "pid name" of a process holding one of LOCKS, or nothing.
LOCK_HOLDER = (
    "for f in " + " ".join(LOCKS) + "; do [ -e $f ] || continue; i=$(stat -c %i $f); "
    "p=$(awk -v i=\":$i$\" '$2 ~ /^(POSIX|FLOCK|OFDLCK)$/ && $6 ~ i && $5 > 0 {print $5; exit}' /proc/locks); "
    '[ -n "$p" ] && { echo "$p $(cat /proc/$p/comm 2>/dev/null)"; break; }; done'
)


def missing(present: frozenset[str], tools: tuple[str, ...]) -> list[str]:
    return [name for name in tools if name not in present]


def packages(names: list[str], family: str) -> list[str]:
    return sorted({getattr(TOOLS[name], family) for name in names})


def wait_command(timeout: int) -> str:
    """Waits until no process holds the package locks, for at most `timeout` seconds; on
    timeout, fails naming the holder."""
    return (
        f"end=$(( $(date +%s) + {int(timeout)} )); "
        f'while h=$({LOCK_HOLDER}); [ -n "$h" ]; do '
        '[ $(date +%s) -ge $end ] && { echo "the package manager lock is still held by process $h '
        f'after {int(timeout)} s: let it finish (or stop it) and deploy again, or raise package_lock_timeout" >&2; '
        "exit 1; }; sleep 5; done"
    )
