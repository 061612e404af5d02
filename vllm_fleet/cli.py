"""python -m vllm_fleet: the command line.

python -m vllm_fleet settings            every knob, its default and meaning
python -m vllm_fleet hosts INVENTORY     hosts, connections and validated settings (JSON)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def redacted(settings) -> dict:
    """Settings as JSON-able data, each secret replaced by whether it is set."""
    from vllm_fleet.settings import SCHEMA

    out = {}
    for name, value in settings.values.items():
        if SCHEMA[name].secret:
            value = "<set>" if value else None
        elif isinstance(value, Mapping):
            value = dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        out[name] = value
    return out


def connection(host) -> dict:
    data = host.data
    keys = ("ssh_hostname", "ssh_port", "ssh_user", "ssh_key", "_sudo")
    return {key: data.get(key) for key in keys if data.get(key) is not None}


def cmd_hosts(args) -> int:
    from pyinfra.api.exceptions import PyinfraError

    from vllm_fleet.inventory import load_inventory, validate_inventory

    inventory = load_inventory(args.inventory, REPO)
    try:
        settings = validate_inventory(inventory)
    except PyinfraError as exc:
        print(f"vllm_fleet: {exc}", file=sys.stderr)
        return 2
    hosts = {
        host.name: {"connection": connection(host), "settings": redacted(settings[host.name])} for host in inventory
    }
    json.dump({"hosts": hosts}, sys.stdout, indent=2)
    print()
    return 0


def cmd_settings(_args) -> int:
    from vllm_fleet.settings import reference

    print(reference())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vllm_fleet", description="vllm-fleet command line")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("settings", help="list every setting with its default and meaning")
    hosts = sub.add_parser("hosts", help="print an inventory's hosts and validated settings as JSON")
    hosts.add_argument("inventory")
    args = parser.parse_args(argv)
    return {"settings": cmd_settings, "hosts": cmd_hosts}[args.command](args)
