"""vllm-fleet (or python -m vllm_fleet): the command line. INVENTORY is a pyinfra inventory
(.py) or an Ansible YAML inventory (.yml).

vllm-fleet plan INVENTORY [--host NAME] [--format table|json] [--facts]
vllm-fleet deploy INVENTORY [--limit NAME] [--dry] [-y]      pyinfra ... deploy.py, from this repository
vllm-fleet verify INVENTORY [--limit NAME] [--junit-xml PATH] [-n JOBS]   the verify suite
vllm-fleet rollout INVENTORY [--limit NAME] [--canary N] [--batch N|P%] [--max-failures N] [--junit-xml PATH]
vllm-fleet settings            every knob, its type, default and meaning
vllm-fleet hosts INVENTORY     hosts, connections and validated settings (JSON)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from vllm_fleet.repository import REPO


def cmd_hosts(args) -> int:
    from pyinfra.api.exceptions import PyinfraError

    from vllm_fleet.inventory import connection, load_inventory, validate_inventory
    from vllm_fleet.settings import public_values

    inventory = load_inventory(args.inventory, REPO)
    validation = validate_inventory(inventory)
    try:
        fleet = validation.fleet()
    except PyinfraError as exc:
        print(f"vllm_fleet: {exc}", file=sys.stderr)
        return 2
    hosts = {
        host.name: {
            "connection": connection(host),
            "role": fleet[host.name].role,
            "settings": public_values(fleet[host.name]),
        }
        for host in inventory
    }
    json.dump({"hosts": validation.redaction.hide_in(hosts)}, sys.stdout, indent=2)
    print()
    return 0


def cmd_plan(args) -> int:
    from vllm_fleet.plan import NoSuchHost, plan_inventory

    if args.facts:
        # pyinfra's API connects to the hosts at once only with gevent's patches, which pyinfra
        # asks API scripts to make before anything else; no other command needs them.
        from gevent import monkey

        monkey.patch_all()
    try:
        plans = plan_inventory(args.inventory, args.host, read_facts=args.facts)
    except NoSuchHost as exc:
        print(f"vllm_fleet: {exc}", file=sys.stderr)
        return 2
    if args.format == "json":
        json.dump({"hosts": plans}, sys.stdout, indent=2)
        print()
    else:
        from vllm_fleet.plan_table import render

        print(render(plans))
    return 1 if any(p["refused"] for p in plans.values()) else 0


def cmd_settings(args) -> int:
    from vllm_fleet.settings import reference, reference_markdown

    print(reference_markdown() if args.format == "markdown" else reference())
    return 0


def count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of hosts (0 or more)")
    return int(text)


def cmd_rollout(args) -> int:
    from vllm_fleet.rollout import run

    return run.main(args)


def cmd_deploy(args) -> int:
    from vllm_fleet.ansible_inventory import pyinfra_inventory
    from vllm_fleet.inventory import load_inventory
    from vllm_fleet.rollout.runner import PYINFRA, limit_args

    # The file read as the other commands read it first: a host listed twice, or a file that does
    # not load, is refused in one line before pyinfra starts (deploy.py validates the settings).
    load_inventory(args.inventory, REPO)
    flags = [*(["-y"] if args.yes else []), *(["--dry"] if args.dry else []), *limit_args(args.limit)]
    return subprocess.run([PYINFRA, *flags, pyinfra_inventory(args.inventory), "deploy.py"], cwd=REPO).returncode


def cmd_verify(args) -> int:
    from vllm_fleet.rollout.runner import verify_command

    report = ["--junit-xml", str(Path(args.junit_xml).resolve())] if args.junit_xml else []
    command = verify_command(args.inventory, args.limit, "-n", str(args.jobs), *report)
    return subprocess.run(command, cwd=REPO).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vllm-fleet", description="Deploy vLLM on GPU hosts, verified")
    sub = parser.add_subparsers(dest="command", required=True)
    settings = sub.add_parser("settings", help="list every setting with its type, default and meaning")
    settings.add_argument("--format", choices=("text", "markdown"), default="text")
    hosts = sub.add_parser("hosts", help="print an inventory's hosts and validated settings as JSON")
    hosts.add_argument("inventory")
    plan = sub.add_parser("plan", help="what a deploy would do on each host, without changing any")
    plan.add_argument("inventory")
    plan.add_argument("--host", help="only this host")
    plan.add_argument("--format", choices=("table", "json"), default="table")
    plan.add_argument("--facts", action="store_true", help="read GPU facts from the hosts (SSH) instead of host data")
    deploy = sub.add_parser("deploy", help="run deploy.py on the inventory's hosts with pyinfra")
    deploy.add_argument("inventory")
    deploy.add_argument("--limit", action="append", default=[], help="only these hosts (name, group or glob; repeat)")
    deploy.add_argument("--dry", action="store_true", help="plan the changes and make none (pyinfra --dry)")
    deploy.add_argument("-y", "--yes", action="store_true", help="do not ask before changing hosts (for CI)")
    verify = sub.add_parser("verify", help="prove every host serves: the verify suite (pytest-testinfra)")
    verify.add_argument("inventory")
    verify.add_argument("--limit", action="append", default=[], help="only these hosts (repeat)")
    verify.add_argument("--junit-xml", help="write the JUnit report here")
    verify.add_argument("-n", "--jobs", type=count, default=4, help="hosts checked in parallel (default 4)")
    rollout = sub.add_parser("rollout", help="deploy a fleet in verified batches behind its gateways")
    rollout.add_argument("inventory")
    rollout.add_argument("--limit", action="append", default=[], help="only these vLLM hosts (name or glob; repeat)")
    rollout.add_argument(
        "--canary", type=count, default=1, help="hosts in the first batch, a cluster counting as one (default 1)"
    )
    rollout.add_argument(
        "--batch",
        default="25%",
        help="hosts per later batch, a cluster counting as one: a number or a percentage (default 25%%)",
    )
    rollout.add_argument(
        "--max-failures",
        type=count,
        default=0,
        help="failed or rolled-back hosts tolerated before stopping, each member of a cluster counted (default 0)",
    )
    rollout.add_argument(
        "--verify-timeout",
        type=count,
        default=None,
        help="seconds the verify suite may take per batch (default: a limit that grows with the batch's hosts); "
        "past it the batch fails and is put back into rotation",
    )
    rollout.add_argument("--junit-xml", help="write one test case per host here")
    args = parser.parse_args(argv)
    if getattr(args, "inventory", None) and Path(args.inventory).exists():
        # The commands run pyinfra and pytest from this repository: an inventory path is taken
        # from where the command was typed.
        args.inventory = str(Path(args.inventory).resolve())
    commands = {
        "settings": cmd_settings,
        "hosts": cmd_hosts,
        "plan": cmd_plan,
        "deploy": cmd_deploy,
        "verify": cmd_verify,
        "rollout": cmd_rollout,
    }
    from vllm_fleet.inventory import InventoryError

    try:
        return commands[args.command](args)
    except InventoryError as exc:
        print(f"vllm_fleet: {exc}", file=sys.stderr)
        return 2
