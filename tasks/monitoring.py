"""Monitoring: Prometheus and Alertmanager (the distribution's packages) on the hosts of the
monitoring group, scraping every host of the inventory, with the fleet's alert rules, the
operator's receiver, and the Grafana dashboard with the provisioning files that load it."""

from __future__ import annotations

from io import StringIO

from pyinfra import host
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import apt, files, server, systemd
from pyinfra.operations.util import any_changed

from vllm_fleet import dashboard, paths
from vllm_fleet.monitoring.alertmanager import alertmanager_config, alertmanager_defaults
from vllm_fleet.monitoring.alerts import alert_rules
from vllm_fleet.monitoring.prometheus import prometheus_config, prometheus_defaults
from vllm_fleet.operations import content_differs, deploy, root_only_directory, secret_file, stop_host
from vllm_fleet.settings import Settings


@deploy("Monitoring")
def monitoring_server(settings: Settings, fleet: dict[str, Settings]) -> None:
    distro = host.get_fact(LinuxDistribution)
    if distro.get("name") not in ("Debian", "Ubuntu"):
        reason = f"a monitoring host runs Debian's or Ubuntu's Prometheus packages; this one is {distro.get('name')}"
        stop_host(name="Stop: not a Debian or Ubuntu host", reasons=[reason])
        return
    apt.packages(
        name="Install Prometheus and Alertmanager",
        packages=["prometheus", "prometheus-alertmanager"],
        # Recommends would add the node exporter's collectors' tools and a second node exporter setup.
        extra_install_args="--no-install-recommends",
    )

    # Flags: a change restarts the daemon (a reload does not read them).
    flags = files.put(
        name=f"Set Prometheus' address, port and retention ({paths.PROMETHEUS_DEFAULTS})",
        src=StringIO(prometheus_defaults(settings)),
        dest=paths.PROMETHEUS_DEFAULTS,
        mode="644",
    )
    alert_flags = files.put(
        name=f"Set Alertmanager's address and port, no cluster ({paths.ALERTMANAGER_DEFAULTS})",
        src=StringIO(alertmanager_defaults(settings)),
        dest=paths.ALERTMANAGER_DEFAULTS,
        mode="644",
    )

    # Configurations are checked by the daemons' own checkers before they replace the live ones:
    # a bad one fails here and the daemon keeps running on the old.
    root_only_directory(paths.CONFIG_DIR, f"Create root-only config directory {paths.CONFIG_DIR}")
    root_only_directory(paths.MONITORING_STAGE_DIR, f"Create root-only staging directory {paths.MONITORING_STAGE_DIR}")
    config = prometheus_config(settings, fleet)
    rules = alert_rules(settings, fleet)
    new_prometheus = content_differs(paths.PROMETHEUS_CONFIG, config) or content_differs(paths.PROMETHEUS_RULES, rules)
    files.put(
        name="Stage the scrape configuration", src=StringIO(config), dest=paths.PROMETHEUS_STAGED_CONFIG, mode="600"
    )
    files.put(name="Stage the alert rules", src=StringIO(rules), dest=paths.PROMETHEUS_STAGED_RULES, mode="600")
    # promtool checks a configuration with the rules it names: the copy it checks names the staged
    # ones (`check config` takes no options before Prometheus 2.39, Ubuntu 22.04 has 2.31).
    files.put(
        name="Stage the scrape configuration promtool checks",
        src=StringIO(prometheus_config(settings, fleet, rules=paths.PROMETHEUS_STAGED_RULES)),
        dest=paths.PROMETHEUS_CHECKED_CONFIG,
        mode="600",
    )
    if new_prometheus:
        server.shell(
            name=f"Check the alert rules and scrape configuration (promtool), install them in {paths.PROMETHEUS_DIR}",
            commands=[
                f"promtool check config {paths.PROMETHEUS_CHECKED_CONFIG} "
                f"&& install -m 644 -o root -g root {paths.PROMETHEUS_STAGED_RULES} {paths.PROMETHEUS_RULES} "
                f"&& install -m 644 -o root -g root {paths.PROMETHEUS_STAGED_CONFIG} {paths.PROMETHEUS_CONFIG}"
            ],
        )
    receiver = alertmanager_config(settings)
    new_receiver = content_differs(paths.ALERTMANAGER_CONFIG, receiver)
    secret_file(
        name="Write where Alertmanager sends alerts (root-only: it may hold the receiver's secrets)",
        dest=paths.ALERTMANAGER_STAGED_CONFIG,
        content=receiver,
    )
    if new_receiver:
        server.shell(
            name=f"Check Alertmanager's configuration (amtool) and install it as {paths.ALERTMANAGER_CONFIG}",
            # Readable by Alertmanager's user, prometheus, and by root only.
            commands=[
                f"amtool check-config {paths.ALERTMANAGER_STAGED_CONFIG} >/dev/null "
                f"&& install -m 640 -o root -g prometheus {paths.ALERTMANAGER_STAGED_CONFIG} "
                f"{paths.ALERTMANAGER_CONFIG}"
            ],
        )

    for path, content in (
        (paths.GRAFANA_DASHBOARD, dashboard.dashboard_json(fleet)),
        (paths.GRAFANA_DASHBOARD_PROVIDER, dashboard.dashboard_provider()),
        (paths.GRAFANA_DATASOURCE, dashboard.datasource(settings)),
    ):
        files.put(
            name=f"Write the Grafana {path.rsplit('/', 1)[1]} for a Grafana on this host",
            src=StringIO(content),
            dest=path,
            mode="644",
            create_remote_dir=True,
        )

    for service, what, changed_flags, changed_config in (
        ("prometheus.service", "Prometheus", flags, new_prometheus),
        ("prometheus-alertmanager.service", "Alertmanager", alert_flags, new_receiver),
    ):
        systemd.service(name=f"Keep {what} running and enabled at boot", service=service, running=True, enabled=True)
        systemd.service(
            name=f"Restart {what} for its new flags",
            service=service,
            restarted=True,
            _if=any_changed(changed_flags),
        )
        if changed_config:
            systemd.service(name=f"Reload {what} for its new configuration", service=service, reloaded=True)
