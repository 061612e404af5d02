"""docker_daemon_config checked as dockerd reads daemon.json: a key dockerd does not know, or a
value of the wrong type, stops Docker at its restart and every container with it. The keys and
their types are moby's (daemon/config/config.go, config_linux.go, daemon/pkg/registry/config.go at
b985e23, 2026); keys that open the Engine API or turn TLS off for every registry are refused."""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Mapping
from typing import Any

from vllm_fleet import versions
from vllm_fleet.settings.places import is_loopback

# Type words: str, bool, int, str_list, str_map, bool_map, object (a JSON object), object_list.
_KEYS = {
    "str": (
        "storage-driver pidfile data-root exec-root group swarm-default-advertise-addr metrics-addr containerd "
        "containerd-namespace default-runtime min-api-version log-level log-format tlscacert tlscert tlskey "
        "host-gateway-ip log-driver bridge fixed-cidr fixed-cidr-v6 ip bip bip6 default-gateway default-gateway-v6 "
        "userland-proxy-path bridge-accept-fwmark firewall-backend cgroup-parent userns-remap init-path "
        "seccomp-profile default-shm-size default-ipc-mode default-cgroupns-mode"
    ),
    "bool": (
        "live-restore debug tls tlsverify experimental cri-containerd raw-logs ipv6 icc iptables ip6tables "
        "ip-forward ip-forward-no-drop ip-masq userland-proxy allow-direct-routing selinux-enabled init "
        "no-new-privileges rootless"
    ),
    "int": (
        "network-diagnostic-port max-concurrent-downloads max-concurrent-uploads max-download-attempts "
        "shutdown-timeout default-stop-timeout mtu network-control-plane-mtu cpu-rt-period cpu-rt-runtime"
    ),
    "str_list": (
        "authorization-plugins exec-opts storage-opts labels hosts node-generic-resources cdi-spec-dirs dns "
        "dns-opts dns-search host-gateway-ips registry-mirrors insecure-registries"
    ),
    "str_map": "log-opts",
    "bool_map": "features",
    "object": "proxies builder nri-opts default-network-opts runtimes default-ulimits",
    "object_list": "default-address-pools",
}
DAEMON_KEYS = {key: kind for kind, keys in _KEYS.items() for key in keys.split()}
# The dockerd release that first reads each key newer than 20.10 (Debian 12's): the json tags of
# moby's daemon/config and registry config at each release tag (v23.0.0 ... docker-v29.7.0). An
# older dockerd refuses daemon.json with the key and does not start.
KEY_SINCE = {
    "proxies": (23, 0),
    "default-network-opts": (24, 0),
    "cdi-spec-dirs": (25, 0),
    "log-format": (25, 0),
    "bip6": (28, 0),
    "host-gateway-ips": (28, 0),
    "ip-forward-no-drop": (28, 0),
    "allow-direct-routing": (28, 2),
    "bridge-accept-fwmark": (29, 0),
    "firewall-backend": (29, 0),
    "min-api-version": (29, 0),
    "nri-opts": (29, 2),
    "default-stop-timeout": (29, 7),
}
# The dockerd a distribution's own package installs (docker_source = distro), where one release has it.
DISTRO_DOCKERD = {("debian", "12"): "20.10.24"}


def too_new(config: Mapping[str, Any], dockerd: str) -> dict[str, str]:
    """Each key of config this dockerd ('20.10.24') does not read, with the release that does."""
    have = versions.numbers(dockerd)[:2]
    if len(have) < 2:
        return {}
    return {key: versions.shown(KEY_SINCE[key]) for key in config if key in KEY_SINCE and KEY_SINCE[key] > have}


DAEMON_CONFIG = (
    "a mapping of daemon.json keys dockerd reads (its daemon.json reference) to values of the type dockerd "
    "decodes: strings, true/false, whole numbers (no NaN), lists of strings, objects as documented"
)
# Keys that would open the Docker API or drop registries' TLS, refused with why.
REFUSED = {
    "hosts": "not hosts: the unit starts dockerd with -H fd://, so dockerd would refuse to start, and a tcp:// "
    "listener is root on the host for whoever reaches it",
}


def _is(kind: str, value: Any) -> bool:
    if kind == "str":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "str_list":
        return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
    if kind in ("str_map", "bool_map"):
        wanted = str if kind == "str_map" else bool
        return isinstance(value, Mapping) and all(
            isinstance(k, str) and isinstance(v, wanted) for k, v in value.items()
        )
    if kind == "object":
        return isinstance(value, Mapping) and all(isinstance(k, str) for k in value)
    return isinstance(value, (list, tuple)) and all(isinstance(v, Mapping) for v in value)


def _finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, Mapping):
        return all(_finite(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_finite(v) for v in value)
    return True


def daemon_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The mapping as given, or ValueError naming the first key dockerd would refuse and why."""
    for key, value in config.items():
        if key in REFUSED:
            raise ValueError(f"{DAEMON_CONFIG}; {REFUSED[key]}")
        kind = DAEMON_KEYS.get(key)
        if kind is None:
            raise ValueError(f"{DAEMON_CONFIG}; {key!r} is not one of them")
        if not _is(kind, value) or not _finite(value):
            raise ValueError(f"{DAEMON_CONFIG}; {key!r} takes {kind.replace('_', ' of ')}")
    for entry in config.get("insecure-registries", ()):
        _registry_kept_secure(entry)
    metrics = config.get("metrics-addr")
    if metrics and not _loopback_listener(metrics):
        raise ValueError(
            f"{DAEMON_CONFIG}; metrics-addr on a loopback address such as 127.0.0.1:9323 (its metrics need no key)"
        )
    return config


def _registry_kept_secure(entry: str) -> None:
    """An insecure-registries entry that is a network must be a private one and not every address:
    dockerd drops TLS for every registry inside it."""
    try:
        network = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return  # a host[:port]: that registry alone
    if "/" in entry and (network.prefixlen == 0 or not network.is_private):
        raise ValueError(
            f"{DAEMON_CONFIG}; insecure-registries networks that are private, not {entry} (dockerd would talk "
            "to every registry in it without TLS)"
        )


def _loopback_listener(address: str) -> bool:
    return is_loopback(address.rpartition(":")[0].strip("[]") if ":" in address else address)
