"""Sandbox integration: real sshd, systemd, apt and Docker engine in Debian 12 hosts.

The hosts get their own container names, ports and state directory, so the
tests never touch a sandbox `make demo` left running.
"""

from __future__ import annotations

import http.server
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sandbox.runs import run_environment
from tasks.vllm_service import ACTIVATE_NEW
from vllm_fleet import paths

REPO = Path(__file__).resolve().parents[2]

# This run's own sandbox (names, ports, network, state): another run on the same Docker engine,
# or `make demo`'s sandbox, is never touched.
TEST_ENV = run_environment("test")
SANDBOX_INVENTORY = str(REPO / "inventories" / "sandbox.py")
PYINFRA = str(Path(sys.executable).parent / "pyinfra")
HOSTS = 2
ACTIVATE = "vLLM service | " + ACTIVATE_NEW
# The verify suite's secret checks, run on hosts of every role.
SECRET_CHECKS = (
    "test_secrets_not_in_process_arguments",
    "test_no_file_an_unprivileged_user_can_read_holds_a_secret",
    "test_no_secret_in_the_journal",
)
RESTART = (
    "vLLM service | Restart the current release: wait for the model, go back to the previous release if it does "
    "not come up"
)


FAILURE_WORDS = re.compile(r"error|fail|traceback|refused|timed out", re.IGNORECASE)


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    @property
    def failure(self) -> str:
        """What a failed run said: its error lines, each with the lines after it, then its end. A
        deploy's tail alone is the other hosts' "No changes" and hides the host that failed."""
        lines = self.output.splitlines()
        shown: list[str] = []
        for number, line in enumerate(lines):
            if FAILURE_WORDS.search(line):
                shown += lines[number : number + 4]
        return "\n".join(shown)[-6000:] + "\n[...]\n" + self.output[-1500:]


def run(cmd: list[str], timeout: int = 900, env: dict = TEST_ENV) -> Run:
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    return Run(done.returncode, done.stdout, done.stderr)


def pyinfra(inventory: str, *extra: str, env: dict = TEST_ENV) -> Run:
    return run([PYINFRA, "-y", *extra, inventory, "deploy.py"], env=env)


class NoReport(dict):
    """The outcomes of a run that printed no --json report (pyinfra prints none when no host is
    left): reading them fails the test, so no check can pass on an empty result."""

    def __init__(self, result: Run):
        super().__init__()
        self.result = result

    def _fail(self, *_args, **_kwargs):
        pytest.fail(f"pyinfra printed no --json report (exit {self.result.rc}):\n{self.result.failure}")

    __getitem__ = __contains__ = __iter__ = __len__ = get = items = keys = values = _fail


def deploy_json(inventory: str, *extra: str, env: dict = TEST_ENV) -> tuple[Run, dict]:
    """A deploy with --json; returns the run and {operation name: {host: outcome}}."""
    result = pyinfra(inventory, "--json", *extra, env=env)
    try:
        operations = json.loads(result.stdout)["results"]["operations"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return result, NoReport(result)
    outcomes: dict[str, dict[str, str]] = {}
    for op in operations:
        per_host = outcomes.setdefault(op["name"], {})
        for outcome in ("success", "error", "no_change"):
            for host in op[outcome]:
                per_host[host] = outcome
    return result, outcomes


def changed(outcomes: dict, host: str) -> list[str]:
    return [name for name, hosts in outcomes.items() if hosts.get(host) == "success"]


def on_host(host: str, command: str) -> str:
    """Inspect a sandbox host from outside (docker exec), as a test harness."""
    return subprocess.run(
        ["docker", "exec", host, "sh", "-c", command], capture_output=True, text=True, check=True
    ).stdout.strip()


def _managed_directories() -> list[str]:
    """The directories of what paths.HELD names, and apt's, where the packages the deploy installs
    add sources too; none inside another. Runtime state under /run (a tmpfs) is left out: the
    cluster watch rewrites its status there, the upload directory comes and goes."""
    found = {"/etc/apt"}
    for held in paths.HELD:
        if held.path and not held.path.startswith("/run/"):
            found.add(held.path if held.kind == "directory" else posixpath.dirname(held.path))
    return sorted(d for d in found if not any(d.startswith(f"{other}/") for other in found))


# Everything a deploy writes on a host (the Hugging Face cache excepted: vLLM's to fill).
MANAGED_PATHS = " ".join(_managed_directories())


def host_state(host: str, ignore: tuple[str, ...] = ()) -> str:
    """What a deploy can change on a host, as one text to compare before and after: every file
    and link under MANAGED_PATHS (owner, mode, size, time, target, content), the installed
    packages, the firewall's rules, and which run of vLLM's service, its container and the
    Docker engine is live. Lines holding any of `ignore` (a path, or "packages") are left out."""
    managed = f"{MANAGED_PATHS} -path /var/lib/vllm-fleet/huggingface -prune -o"
    state = on_host(
        host,
        f"find {managed} \\( -type f -o -type l \\) -printf '%p %u %m %s %T@ %l\\n' 2>/dev/null | sort; "
        # Contents too, but not of image archives (gigabytes): their size and time stand for them.
        f"find {managed} -type f -size -64M -exec sha256sum {{}} + 2>/dev/null | sort; "
        "echo packages $(dpkg-query -W -f '${Package} ${Version}\\n' | sha256sum); nft -s list ruleset 2>/dev/null; "
        "for unit in vllm.service docker.service; do echo $unit $(systemctl show -p InvocationID --value $unit); done; "
        "echo container $(docker inspect -f '{{.Id}}' vllm 2>/dev/null)",
    )
    return "\n".join(line for line in state.splitlines() if not any(part in line for part in ignore))


def models(fleet: Fleet, host: dict) -> dict:
    """The host's model list, asked from the runner through its published port."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{host['http_port']}/v1/models",
        headers={"Authorization": f"Bearer {fleet.api_key}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def complete(fleet: Fleet, host: dict) -> dict:
    """One completion from a host, asked from the runner through its published port."""
    body = json.dumps({"model": fleet.model, "prompt": "Hello", "max_tokens": 4}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{host['http_port']}/v1/completions",
        data=body,
        headers={"Authorization": f"Bearer {fleet.api_key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)


class AlertWebhook:
    """What the sandbox's Alertmanager posted to the runner (its webhook receiver), collected by a
    real HTTP server on the sandbox network's runner address."""

    def __init__(self, address: str, port: int):
        self.received: list[dict] = []
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                hook.received.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((address, port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def find(self, alertname: str, host: str, status: str, since: int = 0) -> dict | None:
        """The first such alert in the messages from number `since` on."""
        for message in self.received[since:]:
            for alert in message.get("alerts", []):
                labels = alert.get("labels", {})
                if labels.get("alertname") == alertname and labels.get("host") == host and alert["status"] == status:
                    return alert
        return None


@pytest.fixture(scope="session")
def alert_webhook(fleet):
    hook = AlertWebhook(fleet.state["runner_address"], fleet.state["alert_webhook_port"])
    yield hook
    hook.server.shutdown()


def invocation(host: str) -> str:
    return on_host(host, "systemctl show -p InvocationID --value vllm.service")


def write_inventory(tmp_path: Path, overrides: dict[str, dict]) -> str:
    """An inventory of the sandbox hosts with some host data overridden."""
    path = tmp_path / "inventory.py"
    path.write_text(
        "import runpy as _runpy\n"
        f"_base = _runpy.run_path({SANDBOX_INVENTORY!r})\n"
        f"_overrides = {overrides!r}\n"
        "single_gpu = [(name, {**data, **_overrides.get(name, {})}) for name, data in _base['single_gpu']]\n"
        "gateway = [(name, {**data, **_overrides.get(name, {})}) for name, data in _base['gateway']]\n"
        "monitoring = [(name, {**data, **_overrides.get(name, {})}) for name, data in _base['monitoring']]\n"
    )
    return str(path)


@dataclass
class Fleet:
    hosts: list[dict]
    api_key: str
    model: str  # the name the sandbox's hosts serve their model under
    model_path: str  # vllm_model as resolved: the shipped test model's path (real vLLM), or sizing's choice
    state: dict = field(default_factory=dict)  # the sandbox's hosts.json
    env: dict = field(default_factory=lambda: TEST_ENV)

    @property
    def hf_token(self) -> str:
        return Path(self.state["hf_token_file"]).read_text().strip()

    @property
    def names(self) -> list[str]:
        return [h["name"] for h in self.hosts]

    @property
    def gateways(self) -> list[dict]:
        return self.state.get("gateways", [])

    @property
    def monitors(self) -> list[dict]:
        return self.state.get("monitors", [])

    @property
    def monitor_settings(self) -> dict:
        """The monitoring hosts' quick timings (the sandbox's state gives them to the inventory)."""
        return self.state["monitoring"]


def start_fleet(env: dict, hosts: int, gateways: int = 0, engine: str = "vllm", monitors: int = 0):
    """Fresh sandbox hosts serving the real vLLM or the stand-in (any left from an earlier run
    are removed first); yields the Fleet, then removes them unless VLLM_FLEET_KEEP_SANDBOX is set."""
    sandbox = [sys.executable, "-m", "sandbox.sandbox"]
    down = run([*sandbox, "down"], env=env)
    assert down.rc == 0, down.output
    started = time.monotonic()
    up = run(
        [
            *sandbox,
            "up",
            "--hosts",
            str(hosts),
            "--gateways",
            str(gateways),
            "--monitors",
            str(monitors),
            "--engine",
            engine,
            *(["--eager"] if engine == "vllm" else []),
        ],
        timeout=2400,
        env=env,
    )
    assert up.rc == 0, up.output
    print(f"sandbox up in {time.monotonic() - started:.0f}s")
    state = json.loads((Path(env["VLLM_FLEET_SANDBOX_STATE"]) / "hosts.json").read_text())
    plan = run([sys.executable, "-m", "vllm_fleet", "plan", SANDBOX_INVENTORY, "--format", "json"], env=env)
    assert plan.rc == 0, plan.output
    served = {
        (h["served_model_name"], h["settings"]["vllm_model"]["value"])
        for h in json.loads(plan.stdout)["hosts"].values()
        if "settings" in h
    }
    assert len(served) == 1, served
    model, path = served.pop()
    yield Fleet(state["hosts"], Path(state["api_key_file"]).read_text().strip(), model, path, state, env)
    if not os.environ.get("VLLM_FLEET_KEEP_SANDBOX"):
        run([*sandbox, "down"], env=env)
        shutil.rmtree(env["VLLM_FLEET_SANDBOX_STATE"], ignore_errors=True)


# The tier runs on two pytest-xdist workers (`--dist loadgroup`), one for each group: the modules
# sharing the session's fleet on one, those that start fleets of their own on the other. Each
# fleet waits on its hosts (apt, pulls, engines starting) about half its time: side by side, two
# use the two cores. Each module names its group in pytestmark.
SESSION_FLEET = "session-fleet"
OWN_FLEETS = "own-fleets"
# Within the own fleets' group: the rollout's stand-ins first, while the session's fleet installs
# and starts its real engines, then the cluster's real engines.
MODULE_ORDER = {"test_sandbox_rollout": 0, "test_sandbox_cluster": 2}


def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: MODULE_ORDER.get(item.module.__name__, 1))


@pytest.fixture(scope="session")
def fleet() -> Fleet:
    yield from start_fleet(TEST_ENV, HOSTS, monitors=1)
