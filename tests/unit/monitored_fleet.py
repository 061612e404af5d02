"""A fleet with every kind of host a monitoring host watches (the hosts of
tests/unit/data/alert-rules.test.yml): gpu-a NVIDIA, gpu-b AMD with its own TTFT threshold,
cpu.c on the CPU, gw a gateway, mon the monitoring host."""

from __future__ import annotations

from vllm_fleet.rules import check_fleet, validate
from vllm_fleet.settings import Settings

KEY = "k" * 12 + "Zq7wPm2x"
WEBHOOK_TOKEN = "webhook-token-" + "w" * 12
SERVING = {"vllm_bind_address": "0.0.0.0", "vllm_api_key": KEY}
HOSTS = {
    "gpu-a": (
        {"phase": "enterprise", "accelerator": "nvidia", "fleet_address": "10.0.0.11", **SERVING},
        ["enterprise"],
    ),
    "gpu-b": (
        {
            "phase": "enterprise",
            "accelerator": "amd",
            "fleet_address": "10.0.0.12",
            "alert_ttft_p95_seconds": 2.0,
            **SERVING,
        },
        ["enterprise"],
    ),
    "cpu.c": ({"phase": "single_gpu", "accelerator": "cpu", "fleet_address": "10.0.0.13", **SERVING}, ["single_gpu"]),
    "gw": ({"fleet_address": "10.0.0.2"}, ["gateway"]),
    "mon": (
        {
            "fleet_address": "10.0.0.3",
            "alert_webhook_url": "https://10.0.0.9:9999/hook",
            "alert_webhook_token": WEBHOOK_TOKEN,
        },
        ["monitoring"],
    ),
}


def fleet(**changes: dict) -> dict[str, Settings]:
    """The fleet, with some hosts' data changed (host name -> data)."""
    hosts = {name: validate(name, {**data, **changes.get(name, {})}, groups) for name, (data, groups) in HOSTS.items()}
    for s in hosts.values():
        check_fleet(s, hosts)
    return hosts


def monitor(**changes) -> Settings:
    return fleet(mon=changes)["mon"]
