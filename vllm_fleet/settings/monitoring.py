"""The knobs of the alerts, the GPU exporters and the monitoring hosts."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from vllm_fleet.images import AMD_METRICS_EXPORTER_IMAGE, DCGM_EXPORTER_IMAGE
from vllm_fleet.settings.types import (
    EMAIL,
    IP_ADDRESS,
    PINNED_IMAGE,
    PRIVATE_NETWORKS,
    SECRET_RULE,
    SMTP_HOST,
    WEBHOOK_URL,
    Bounded,
    EmailAddress,
    IpAddress,
    Knobs,
    PinnedImage,
    Port,
    PrivateNetworks,
    Secret,
    SmtpHost,
    WebhookUrl,
    knob,
    or_none,
)


class Monitoring(Knobs):
    """The alerts' thresholds, the GPU exporters, and the monitoring hosts' Prometheus and Alertmanager."""

    alert_ttft_p95_seconds: Annotated[float, Field(gt=0, le=3600)] = knob(
        5.0,
        "vLLM hosts: the alert TimeToFirstTokenSlow fires when the host's 95th percentile time to first token "
        "over 5 minutes is above this many seconds (phase defaults in group_data/).",
        "a number of seconds greater than 0 and at most 3600",
    )
    alert_queue_time_seconds: Annotated[float, Field(gt=0, le=3600)] = knob(
        10.0,
        "vLLM hosts: the alert RequestsWaitTooLong fires when the 95th percentile of the time requests waited "
        "in vLLM's queue over 5 minutes is above this many seconds.",
        "a number of seconds greater than 0 and at most 3600",
    )
    alert_kv_cache_usage: Annotated[float, Field(gt=0, le=1)] = knob(
        0.95,
        "vLLM hosts: the alert KvCacheNearlyFull fires when this fraction of the KV cache stays in use for 10 minutes.",
        "a fraction greater than 0 and at most 1",
    )
    alert_gpu_temperature_celsius: Annotated[int, Bounded(40, 120)] = knob(
        85,
        "GPU hosts: the alert GpuTooHot fires when a GPU stays above this temperature (degrees Celsius) for 5 minutes.",
    )
    alert_disk_free_ratio: Annotated[float, Field(gt=0, lt=1)] = knob(
        0.10,
        "Every host: the alert DiskFilling fires when a filesystem (models, images and caches live on them) has "
        "less than this fraction free, or will be full within 24 hours at its rate of the last 6.",
        "a fraction greater than 0 and less than 1",
    )
    gpu_exporter: bool = knob(
        True,
        "GPU hosts served with Docker, in an inventory with a monitoring group: run the vendor's GPU exporter "
        "(NVIDIA's DCGM exporter, AMD's device metrics exporter) in a container of its own.",
        "True or False",
    )
    dcgm_exporter_image: PinnedImage = knob(
        DCGM_EXPORTER_IMAGE,
        "NVIDIA hosts: NVIDIA's DCGM exporter image, pinned (listens on port 9400).",
        PINNED_IMAGE,
    )
    amd_metrics_exporter_image: PinnedImage = knob(
        AMD_METRICS_EXPORTER_IMAGE,
        "AMD hosts: AMD's device metrics exporter image, pinned (listens on port 5000).",
        PINNED_IMAGE,
    )
    prometheus_bind_address: IpAddress = knob(
        "127.0.0.1",
        "Monitoring hosts: the address Prometheus and Alertmanager listen on; loopback by default (reach them "
        "through an SSH tunnel, or a Grafana on the host). Any other address is filtered to "
        "monitoring_allowed_sources.",
        IP_ADDRESS,
    )
    prometheus_port: Port = knob(9090, "Monitoring hosts: Prometheus' port.")
    alertmanager_port: Port = knob(9093, "Monitoring hosts: Alertmanager's port.")
    monitoring_allowed_sources: PrivateNetworks = knob(
        (),
        "Monitoring hosts: addresses or networks (a Grafana, the operators' network) admitted to Prometheus' and "
        "Alertmanager's ports when prometheus_bind_address is not loopback.",
        PRIVATE_NETWORKS,
    )
    prometheus_scrape_interval: Annotated[int, Bounded(1, 600)] = knob(
        15, "Monitoring hosts: seconds between two scrapes of each target, and between rule evaluations."
    )
    prometheus_retention_days: Annotated[int, Bounded(1, 3650)] = knob(
        15, "Monitoring hosts: days of metrics Prometheus keeps."
    )
    alert_not_serving_for: Annotated[int, Bounded(0, 86400)] = knob(
        120,
        "Monitoring hosts: seconds a vLLM host's metrics endpoint must stay unreachable before VllmNotServing "
        "fires (the rule's for:).",
    )
    alert_group_wait: Annotated[int, Bounded(0, 3600)] = knob(
        30, "Monitoring hosts: seconds Alertmanager waits to group a new alert with others before it notifies."
    )
    alert_group_interval: Annotated[int, Bounded(1, 86400)] = knob(
        300,
        "Monitoring hosts: seconds Alertmanager waits before it notifies again about a group (an alert and a "
        "host) it has notified about: a new firing or a resolution in that group waits this long.",
    )
    alert_webhook_url: WebhookUrl | None = knob(
        None,
        "Monitoring hosts: Alertmanager posts every alert, and its resolution, to this URL (Alertmanager's "
        "webhook format). A monitoring host needs this or alert_email_to.",
        or_none(WEBHOOK_URL),
    )
    alert_webhook_token: Secret | None = knob(
        None,
        "Monitoring hosts: a bearer token Alertmanager sends to alert_webhook_url; read from the environment "
        "(ALERT_WEBHOOK_TOKEN) in group_data/all.py, never committed.",
        or_none(SECRET_RULE),
    )
    alert_email_to: EmailAddress | None = knob(
        None, "Monitoring hosts: Alertmanager mails every alert, and its resolution, here.", or_none(EMAIL)
    )
    alert_email_from: EmailAddress | None = knob(
        None, "Monitoring hosts: the sender of the alert mails (required with alert_email_to).", or_none(EMAIL)
    )
    alert_smtp_smarthost: SmtpHost | None = knob(
        None,
        "Monitoring hosts: the mail relay, host:port, the alert mails go through (required with alert_email_to); "
        "Alertmanager requires TLS (STARTTLS).",
        or_none(SMTP_HOST),
    )
    alert_smtp_username: Annotated[str, Field(pattern=r"^[!-~]+$")] | None = knob(
        None, "Monitoring hosts: the user Alertmanager logs in to the mail relay as.", or_none("a name without spaces")
    )
    alert_smtp_password: Secret | None = knob(
        None,
        "Monitoring hosts: the mail relay's password; read from the environment (ALERT_SMTP_PASSWORD) in "
        "group_data/all.py, never committed.",
        or_none(SECRET_RULE),
    )
