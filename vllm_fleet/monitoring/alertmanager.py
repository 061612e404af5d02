"""Alertmanager on the monitoring hosts: where it sends alerts (the receivers) and its flags."""

from __future__ import annotations

from typing import Any

from vllm_fleet.monitoring.managed_files import managed_defaults, managed_yaml
from vllm_fleet.monitoring.prometheus import target
from vllm_fleet.settings import Settings

RECEIVER = "operator"


def alertmanager_config(monitor: Settings) -> str:
    """Alertmanager's configuration (root:prometheus 0640: it may hold the webhook token and the
    mail relay's password)."""
    receiver: dict[str, Any] = {"name": RECEIVER}
    config: dict[str, Any] = {}
    if monitor.alert_webhook_url:
        webhook: dict[str, Any] = {"url": monitor.alert_webhook_url, "send_resolved": True}
        if monitor.alert_webhook_token:
            webhook["http_config"] = {
                "authorization": {"type": "Bearer", "credentials": monitor.alert_webhook_token.get_secret_value()}
            }
        receiver["webhook_configs"] = [webhook]
    if monitor.alert_email_to:
        smtp: dict[str, Any] = {
            "smtp_smarthost": monitor.alert_smtp_smarthost,
            "smtp_from": monitor.alert_email_from,
            "smtp_require_tls": True,
        }
        if monitor.alert_smtp_username:
            smtp["smtp_auth_username"] = monitor.alert_smtp_username
        if monitor.alert_smtp_username and monitor.alert_smtp_password:
            smtp["smtp_auth_password"] = monitor.alert_smtp_password.get_secret_value()
        config["global"] = smtp
        receiver["email_configs"] = [{"to": monitor.alert_email_to, "send_resolved": True}]
    config["route"] = {
        "receiver": RECEIVER,
        "group_by": ["alertname", "host"],
        "group_wait": f"{monitor.alert_group_wait}s",
        "group_interval": f"{monitor.alert_group_interval}s",
        "repeat_interval": "4h",
    }
    config["receivers"] = [receiver]
    return managed_yaml("where Alertmanager sends alerts", config)


def alertmanager_defaults(monitor: Settings) -> str:
    """paths.ALERTMANAGER_DEFAULTS. One Alertmanager per monitoring host, not a cluster:
    its gossip port (9094) stays closed."""
    return managed_defaults(
        "Alertmanager",
        f"--web.listen-address={target(monitor.prometheus_bind_address, monitor.alertmanager_port)}",
        "--cluster.listen-address=",
    )
