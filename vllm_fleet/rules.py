"""Rules across settings: what one host's knobs must agree on, and what the hosts of one
inventory must agree on. Each refusal is a SettingsError naming the host and the key."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from vllm_fleet import cluster, exposure, images, machines, secret_checks, vllm_flags
from vllm_fleet.monitoring import alerts
from vllm_fleet.monitoring.exporters import exporters, monitoring_hosts
from vllm_fleet.settings import (
    GATEWAY_GROUP,
    MONITORING_GROUP,
    PHASES,
    Settings,
    SettingsError,
    parse,
    require_ip_fleet_address,
)
from vllm_fleet.settings import allowed as allowed_words
from vllm_fleet.settings.places import is_loopback

# Characters systemd's EnvironmentFile= would read as quoting or escapes, so the value
# vLLM saw would differ from the one Docker's --env-file passes literally.
ENV_FILE_SPECIAL = set("'\"\\`$")
# HAProxy's server names: its config parser refuses anything else.
HAPROXY_NAME = re.compile(r"[A-Za-z0-9._-]+")


def validate(host: str, data: Mapping[str, Any], groups: Iterable[str] = ()) -> Settings:
    """Validate one host's data; returns its Settings or raises SettingsError."""
    group_set = set(groups)
    roles = [role for role in (GATEWAY_GROUP, MONITORING_GROUP) if role in group_set]
    settings = parse(host, data, roles[0] if roles else "vllm")
    if len(roles) > 1:
        raise SettingsError(
            host,
            "groups",
            repr(roles),
            f"one of the {GATEWAY_GROUP} and {MONITORING_GROUP} groups: each is a host's whole role",
        )
    if settings.role == "gateway":
        _gateway_host(settings, group_set)
    elif settings.role == "monitoring":
        _monitoring_host(settings, group_set)
    else:
        _vllm_host(settings, group_set)
    cluster.check_member(settings)
    exposure.check_switches(settings)
    secret_checks.check_host(settings)
    return settings


def _in_no_phase_group(s: Settings, groups: set[str], group: str, runs: str) -> None:
    phase_groups = sorted(groups & set(PHASES))
    if phase_groups:
        raise SettingsError(
            s.host,
            "phase",
            repr(phase_groups[0]),
            f"a host of the {group} group runs {runs}, not vLLM: put it in no phase group",
        )


def _gateway_host(s: Settings, groups: set[str]) -> None:
    _in_no_phase_group(s, groups, GATEWAY_GROUP, "HAProxy")
    if s.gateway_auth == "gateway" and not s.gateway_api_key:
        raise SettingsError(
            s.host,
            "gateway_api_key",
            "None",
            "a key of at least 16 characters with gateway_auth = 'gateway' (export GATEWAY_API_KEY before running "
            "pyinfra)",
        )


def _monitoring_host(s: Settings, groups: set[str]) -> None:
    _in_no_phase_group(s, groups, MONITORING_GROUP, "Prometheus")
    if s.prometheus_port == s.alertmanager_port:
        raise SettingsError(
            s.host, "alertmanager_port", s.show("alertmanager_port"), "a port other than prometheus_port"
        )
    if not s.alert_webhook_url and not s.alert_email_to:
        raise SettingsError(
            s.host,
            "alert_webhook_url",
            "None",
            "a URL Alertmanager posts alerts to, or alert_email_to set: a monitoring host's alerts must reach someone",
        )
    if s.alert_webhook_url and s.alert_webhook_token and _plain_http_beyond_loopback(s.alert_webhook_url):
        raise SettingsError(
            s.host,
            "alert_webhook_url",
            s.show("alert_webhook_url"),
            "an https:// URL with alert_webhook_token set: over http:// the bearer token crosses the network in clear",
        )
    if s.prometheus_scrape_interval * 2 > alerts.SHORTEST_WINDOW:
        raise SettingsError(
            s.host,
            "prometheus_scrape_interval",
            s.show("prometheus_scrape_interval"),
            f"at most {alerts.SHORTEST_WINDOW // 2} s: the alerts' shortest window ({alerts.SHORTEST_WINDOW} s) must "
            "hold two scrapes, or their rates read nothing and they never fire",
        )
    # The receivers' secrets come from the environment for every host (group_data/all.py): each
    # is used where its receiver is set and ignored elsewhere, not refused.
    if s.alert_email_to:
        for name in ("alert_email_from", "alert_smtp_smarthost"):
            if not getattr(s, name):
                raise SettingsError(s.host, name, "None", f"set with alert_email_to ({allowed_words(name)})")
    elif s.alert_smtp_smarthost or s.alert_smtp_username or s.alert_email_from:
        name = next(n for n in ("alert_email_from", "alert_smtp_smarthost", "alert_smtp_username") if getattr(s, n))
        raise SettingsError(s.host, name, s.show(name), "only with alert_email_to")


def _plain_http_beyond_loopback(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "http" and not is_loopback(parts.hostname or "")


def _vllm_host(s: Settings, groups: set[str]) -> None:
    phase_groups = sorted(groups & set(PHASES))
    if s.phase is None:
        raise SettingsError(
            s.host,
            "phase",
            "None",
            "put the host in exactly one inventory group of "
            + ", ".join(PHASES)
            + " (group_data/<phase>.py sets the profile)",
        )
    if groups and phase_groups != [s.phase]:
        where = ", ".join(phase_groups) or "no phase group"
        raise SettingsError(
            s.host,
            "phase",
            repr(s.phase),
            f"the host must be in exactly one phase group, "
            f"the one named by phase, so that group_data/{s.phase}.py applies; it is in {where}",
        )
    if s.phase == "laptop" and not s.is_loopback:
        raise SettingsError(
            s.host,
            "vllm_bind_address",
            s.show("vllm_bind_address"),
            "a loopback address on a laptop (phase laptop serves its own user only); use single_gpu to serve others",
        )
    if not s.is_loopback and not s.vllm_api_key:
        raise SettingsError(
            s.host,
            "vllm_bind_address",
            s.show("vllm_bind_address"),
            "a non-loopback address only with vllm_api_key set (export VLLM_API_KEY "
            "before running pyinfra), or 127.0.0.1",
        )
    if s.vllm_model_dir and s.vllm_model != "auto":
        raise SettingsError(
            s.host,
            "vllm_model",
            s.show("vllm_model"),
            "'auto' when vllm_model_dir is set (the directory is the model; name it with vllm_served_model_name)",
        )
    _risky_features(s)
    if s.serving_method == "nix":
        _nix_host(s)
    else:
        _docker_host(s)
    if s.docker_version and s.docker_source != "docker":
        raise SettingsError(
            s.host,
            "docker_version",
            s.show("docker_version"),
            "only with docker_source = 'docker' (the distro package has its own version)",
        )
    if s.vllm_image_archive and not s.vllm_image:
        raise SettingsError(
            s.host,
            "vllm_image_archive",
            s.show("vllm_image_archive"),
            "only with vllm_image set to the tag the archive holds",
        )
    if s.vllm_image_archive:
        tags = images.archive_tags(s.vllm_image_archive)
        if s.vllm_image not in tags:
            raise SettingsError(
                s.host,
                "vllm_image_archive",
                s.show("vllm_image_archive"),
                f"an archive holding vllm_image {s.vllm_image!r}; it holds {sorted(tags)}",
            )


def _risky_features(s: Settings) -> None:
    for name, arg in vllm_flags.risky_features(s.vllm_extra_args).items():
        if name not in s.vllm_allow:
            what = next(what for feature, what, _ in vllm_flags.RISKY_FEATURES if feature == name)
            raise SettingsError(
                s.host,
                "vllm_extra_args",
                s.show("vllm_extra_args"),
                f"arguments without {arg}, which {what}; to run it anyway, name {name!r} in vllm_allow",
            )


def _docker_host(s: Settings) -> None:
    if s.nix_builder:
        raise SettingsError(
            s.host,
            "nix_builder",
            s.show("nix_builder"),
            "only with serving_method = 'nix' (a Docker host runs an image and builds nothing)",
        )
    built_for = images.built_for_another(s.vllm_image, s.accelerator)
    if built_for:
        raise SettingsError(
            s.host,
            "vllm_image",
            s.show("vllm_image"),
            f"an image for accelerator {s.accelerator}: this one is vLLM's {built_for} image",
        )


def _nix_host(s: Settings) -> None:
    for name in ("vllm_image", "vllm_image_archive"):
        if getattr(s, name):
            raise SettingsError(
                s.host,
                name,
                s.show(name),
                "only with serving_method = 'docker' (the Nix way builds the server and runs no image)",
            )
    for name in ("vllm_api_key", "hf_token"):
        value = getattr(s, name)
        if value and ENV_FILE_SPECIAL & set(value.get_secret_value()):
            raise SettingsError(
                s.host,
                name,
                s.show(name),
                "with serving_method = 'nix', a secret without quotes, backslashes, backticks or $ "
                "(systemd's EnvironmentFile would change it)",
            )
    if s.nix_substituters and not s.nix_trusted_public_keys:
        raise SettingsError(
            s.host,
            "nix_trusted_public_keys",
            "()",
            "the public keys of the caches in nix_substituters: without one Nix cannot check what a cache serves",
        )
    if s.nix_builder and s.accelerator == "auto":
        raise SettingsError(
            s.host,
            "accelerator",
            "'auto'",
            "nvidia, amd or cpu when nix_builder is set, so the builder knows which build this host takes",
        )
    if s.nix_builder == s.host:
        raise SettingsError(s.host, "nix_builder", s.show("nix_builder"), "another host (a builder builds for itself)")


def check_builder(s: Settings, builder: Settings | None) -> None:
    """A rule across hosts: nix_builder names a host of the inventory (builder: its settings,
    None when there is no such valid host) that serves with Nix and builds for itself."""
    if s.serving_method != "nix" or not s.nix_builder:
        return
    if builder is None or builder.serving_method != "nix" or builder.nix_builder:
        raise SettingsError(
            s.host,
            "nix_builder",
            s.show("nix_builder"),
            "the name of a host in this inventory with serving_method = 'nix' and no nix_builder of its own",
        )


def gateway_backends(gateway: Settings, fleet: Mapping[str, Settings]) -> list[Settings]:
    """The vLLM hosts a gateway fronts: gateway_backends, or every enterprise host that serves an
    API (a cluster's leader, not its other members)."""
    if gateway.gateway_backends is None:
        return [s for s in fleet.values() if s.role == "vllm" and s.phase == "enterprise" and not cluster.is_worker(s)]
    return [fleet[name] for name in gateway.gateway_backends if name in fleet]


def check_gateway(gateway: Settings, fleet: Mapping[str, Settings]) -> None:
    """Rules across hosts for a gateway: real backends it can reach, one key for all of them, and
    an address the backends' firewall can admit."""
    if gateway.role != "gateway":
        return
    allowed = "the names of vLLM hosts of this inventory"
    shown = gateway.show("gateway_backends")
    missing = [n for n in gateway.gateway_backends or () if n not in fleet or fleet[n].role != "vllm"]
    if missing:
        raise SettingsError(gateway.host, "gateway_backends", shown, allowed)
    workers = [n for n in gateway.gateway_backends or () if cluster.is_worker(fleet[n])]
    if workers:
        leaders = {fleet[n].vllm_cluster: cluster.members(fleet[n], fleet)[0].host for n in workers}
        raise SettingsError(
            gateway.host,
            "gateway_backends",
            shown,
            f"{allowed} that serve an API: {', '.join(workers)} join(s) a cluster and serve(s) nothing themselves; "
            f"name the cluster's leader instead ({', '.join(sorted(set(leaders.values())))})",
        )
    backends = gateway_backends(gateway, fleet)
    if not backends:
        raise SettingsError(
            gateway.host, "gateway_backends", shown, f"{allowed} (None: the enterprise hosts, and there are none)"
        )
    local = [b.host for b in backends if b.is_loopback]
    if local:
        raise SettingsError(
            gateway.host,
            "gateway_backends",
            shown,
            f"hosts the gateway can reach: {', '.join(local)} bind(s) vLLM to loopback (set vllm_bind_address)",
        )
    odd = [b.host for b in backends if not HAPROXY_NAME.fullmatch(b.host)]
    if odd:
        raise SettingsError(
            gateway.host,
            "gateway_backends",
            shown,
            f"hosts whose inventory names are HAProxy server names (letters, digits and . _ -): {', '.join(odd)}",
        )
    places: dict[tuple[str, int], str] = {(gateway.fleet_address, gateway.gateway_port): gateway.host}
    for b in backends:
        place = (b.fleet_address, b.vllm_port)
        if place in places:
            raise SettingsError(
                gateway.host,
                "gateway_backends",
                shown,
                f"hosts at addresses and ports of their own: {b.host} and {places[place]} are both at "
                f"{place[0]}:{place[1]}",
            )
        places[place] = b.host
    if len({b.vllm_api_key for b in backends}) > 1:
        raise SettingsError(
            gateway.host,
            "gateway_backends",
            shown,
            "vLLM hosts sharing one vllm_api_key (the gateway checks and forwards one key)",
        )
    if gateway.gateway_api_key and gateway.gateway_api_key in {b.vllm_api_key for b in backends}:
        raise SettingsError(
            gateway.host,
            "gateway_api_key",
            gateway.show("gateway_api_key"),
            "a key other than its vLLM hosts' vllm_api_key (clients of the gateway must never hold the hosts' key)",
        )
    if any(b.vllm_firewall for b in backends):
        require_ip_fleet_address(
            gateway, "the gateway's IP address as its backends see it (their nftables firewall admits it by address)"
        )


def check_monitoring(s: Settings, fleet: Mapping[str, Settings]) -> None:
    """Rules across hosts in an inventory with monitoring hosts: every exporter has a port of its
    own on its host, and the firewalls can admit the monitoring hosts by address."""

    monitors = monitoring_hosts(fleet)
    if not monitors:
        return
    if s.role == "monitoring":
        require_ip_fleet_address(
            s, "the monitoring host's IP address as the other hosts see it (their firewalls admit it by address)"
        )
    own = {"vllm": "vllm_port", "gateway": "gateway_port", "monitoring": "prometheus_port"}[s.role]
    ports = [own] + (["alertmanager_port"] if s.role == "monitoring" else [])
    for exporter in exporters(s, fleet):
        for name in ports:
            if getattr(s, name) == exporter.port:
                raise SettingsError(
                    s.host,
                    name,
                    s.show(name),
                    f"a port other than {exporter.port}, where the host exports {exporter.what} to the "
                    "monitoring hosts",
                )


def check_fleet(s: Settings, fleet: Mapping[str, Settings]) -> None:
    """Every rule across hosts, for one host of a validated inventory."""
    machines.check_fleet(s, fleet)
    check_builder(s, fleet.get(s.nix_builder or ""))
    check_gateway(s, fleet)
    check_monitoring(s, fleet)
    cluster.check_cluster(s, fleet)
    exposure.check_ports(s, fleet)
    secret_checks.check_fleet(s, fleet)
