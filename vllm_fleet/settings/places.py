"""What a place on the host is, judged by what the deploy does to it: a cache directory is made
root-only and mounted read-write into the container that holds the secrets, so it must be a
directory of the operator's own, never one the OS, a user, a container runtime or the deploy
itself keeps something in; a network a firewall admits must say what it means."""

from __future__ import annotations

import ipaddress
import posixpath
import re

from vllm_fleet import paths

# The OS's own top directories (the Filesystem Hierarchy Standard's, and those of Nix, snapd and
# installers): nothing of ours goes in or under them, but for our own state directory.
OS_TOP = frozenset(
    "bin boot cdrom dev efi etc lib lib32 lib64 libx32 lost+found nix proc root run sbin snap sys tmp usr var".split()
)
# Directories the operator's own go under, not themselves (a user's home, /srv, ...).
OPERATOR_TOP = frozenset("home media mnt opt srv".split())
# Under /opt: the container runtimes' and the GPU vendors' own trees (containerd's plugins, CNI,
# ROCm, NVIDIA's and AMD's tools).
OPT_VENDOR = re.compile(r"/opt/(containerd|cni|rocm|rocm-[^/]*|nvidia|amdgpu|amdgpu-[^/]*|intel|docker)(/|$)")
# The deploy's state the cache knobs must leave alone: images, shipped models, the Nix build.
OWN_STATE = (paths.IMAGE_DIR, paths.MODELS_DIR, paths.NIX_DIR, paths.NIX_INSTALLER_DIR, paths.GRAFANA_DIR)

HOST_DIRECTORY = (
    f"an absolute path of letters, digits and . _ - + @ beneath a directory of your own (such as /srv/hf, "
    f"/data/cache, /mnt/nvme/hf, /home/USER/hf) or beneath {paths.STATE_DIR}: not the OS's directories nor "
    "under them (/, /etc, /usr, /var, /run, /tmp, /root, ...), a runtime's or GPU vendor's (/var/lib/docker, "
    "/opt/containerd, /opt/rocm), a hidden directory (.ssh, .config), a home itself, nor the deploy's own "
    f"state ({paths.STATE_DIR} itself, its images, models and nix)"
)


def is_loopback(host: str) -> bool:
    """Whether a host (an IP address or a name) is this machine's loopback: where a listener or a
    URL reaches no other machine."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.lower() == "localhost"


def _beneath(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/")


def host_directory(value: str) -> str:
    """The directory as the deploy uses it, or ValueError(HOST_DIRECTORY)."""
    if not re.fullmatch(r"(/[A-Za-z0-9_.+@-]+)+/?|/", value):
        raise ValueError(HOST_DIRECTORY)
    parts = [p for p in value.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise ValueError(HOST_DIRECTORY)
    path = posixpath.normpath(value)
    if _beneath(path, "/var/run"):  # another name of /run
        path = "/run" + path[len("/var/run") :]
    if _beneath(path, paths.STATE_DIR):
        inside = path != paths.STATE_DIR and not any(_beneath(path, own) or _beneath(own, path) for own in OWN_STATE)
        if not inside or any(p.startswith(".") for p in parts):
            raise ValueError(HOST_DIRECTORY)
        return path
    if (
        not parts
        or parts[0] in OS_TOP
        or (parts[0] in OPERATOR_TOP and len(parts) == 1)
        or (parts[0] == "home" and len(parts) == 2)
        or OPT_VENDOR.match(path)
        or any(p.startswith(".") for p in parts)
    ):
        raise ValueError(HOST_DIRECTORY)
    return path


NETWORKS = (
    "a list of IP addresses or networks such as '10.20.0.0/16', each written with its host bits zero "
    "(10.20.0.5/16 is a typo for an address or a network) and none of them every address (/0: to open the "
    "port to everyone, turn the firewall off instead)"
)
PRIVATE_NETWORKS = (
    "a list of private IP addresses or networks such as '10.20.0.0/16' (Prometheus and Alertmanager have no "
    "authentication: anyone they admit can read every metric and silence every alert), each written with its "
    "host bits zero"
)


def networks(values: tuple[str, ...]) -> tuple[str, ...]:
    """Each network as nftables is given it, or ValueError(NETWORKS): a network with host bits set
    (strict parsing) and every address (/0) are refused."""
    try:
        parsed = [ipaddress.ip_network(v, strict=True) for v in values]
    except (ValueError, TypeError):
        raise ValueError(NETWORKS) from None
    if any(n.prefixlen == 0 for n in parsed):
        raise ValueError(NETWORKS)
    return tuple(str(n) for n in parsed)


def private_networks(values: tuple[str, ...]) -> tuple[str, ...]:
    """networks(), each of them private (RFC 1918, unique local, loopback, link-local)."""
    try:
        checked = networks(values)
    except ValueError:
        raise ValueError(PRIVATE_NETWORKS) from None
    if not all(ipaddress.ip_network(n).is_private for n in checked):
        raise ValueError(PRIVATE_NETWORKS)
    return checked
