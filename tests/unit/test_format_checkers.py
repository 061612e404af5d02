"""Injection: every template rendered with the most hostile values validation lets through,
then checked by the format's own checker (haproxy -c, systemd-analyze verify, nft -c, sh -n),
and HAProxy run for real to show that such a key still opens the gateway and nothing else does.

The checkers are Debian's own packages (`make checkers` installs them); a missing one fails.
"""

from __future__ import annotations

import http.server
import json
import shlex
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from vllm_fleet import firewall, haproxy, launch, paths, templates
from vllm_fleet.monitoring.exporters import AMD_GPU, DCGM, HAPROXY_METRICS_PORT, NODE, exporter_unit
from vllm_fleet.rules import check_gateway, validate

# Printable ASCII that means something to HAProxy (% , " \ $ ' # { }), to shells (; ` & |)
# and to systemd (% $ \ "): keys are allowed every one of them.
HOSTILE_KEY = "k%[src],\"\\$HOME'#{x};`&|" + "z" * 8
OTHER_KEY = "g%d,%[hdr(host)]\"'\\$PATH#" + "y" * 8
HOSTILE_ARGS = [
    "--chat-template-content-format=openai",
    "--override-generation-config",
    '{"temperature": 0.5, "stop": ["%n", "$HOME", "\\\\", "a b", "\'q\'"]}',
    "--middleware=x;rm -rf /",
    "--lora-modules",
    "name=/srv/lora dir%i",
]


def vllm_host(name: str = "gpu-1", **data):
    base = {
        "phase": "enterprise",
        "vllm_bind_address": "0.0.0.0",
        "vllm_api_key": HOSTILE_KEY,
        "fleet_address": "127.0.0.1",
        "vllm_served_model_name": "team/m@x:y+1_v2.0",
        "vllm_extra_args": HOSTILE_ARGS,
        "vllm_allow": ["plugins"],  # --middleware, there for its quoting
        "hf_cache_dir": "/srv/models/hf+cache@1",
        "vllm_cache_dir": "/srv/vllm_cache-2",
        "accelerator": "nvidia",
        "vllm_image": "registry.example:5000/team/vllm-openai:v1.2_3-rc@sha256:" + "a" * 64,
    }
    return validate(name, {**base, **data}, [base["phase"]])


def run(*argv: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, **kwargs)


def systemd_verify(tmp_path: Path, name: str, text: str) -> None:
    """Verify a unit beside the firewall unit it may be bound to."""
    unit = tmp_path / name
    unit.write_text(text)
    (tmp_path / paths.FIREWALL_SERVICE).write_text(templates.render("vllm-firewall.service.j2"))
    done = run("systemd-analyze", "verify", str(unit), str(tmp_path / paths.FIREWALL_SERVICE))
    # verify exits 0 on ignored lines (unknown escapes, bad specifiers): what it says is the check.
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


@pytest.mark.parametrize("method", ["docker", "nix"])
def test_the_vllm_unit_with_hostile_values_passes_systemd_analyze(tmp_path, method):
    data = {"serving_method": method}
    if method == "nix":
        data |= {"vllm_image": None, "vllm_api_key": "plain-key-" + "x" * 10}
    s = vllm_host(**data)
    unit = templates.render("vllm.service.j2", **launch.unit_context(s, "nvidia"))
    if method == "nix":  # the Nix-built program is only on a host that built it
        unit = unit.replace(launch.nix_server_argv(s, "nvidia")[0], "/bin/true", 1)
    systemd_verify(tmp_path, paths.SERVICE, unit)
    assert "%[src]" not in unit and HOSTILE_KEY not in unit, "a secret reached the unit"


def test_the_firewall_unit_and_table_pass_their_checkers(tmp_path):
    s = vllm_host(vllm_allowed_sources=["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"])
    systemd_verify(tmp_path, paths.FIREWALL_SERVICE, templates.render("vllm-firewall.service.j2"))
    table = tmp_path / "firewall.nft"
    table.write_text(firewall.rules(s, {s.host: s}))
    done = run("nft", "-c", "-f", str(table))
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("name", ["vllm-activate.sh.j2", "vllm-ready.sh.j2", "vllm-gateway.sh.j2"])
def test_the_helpers_are_shell_that_parses(tmp_path, name):
    script = tmp_path / name
    script.write_text(templates.render(name))
    done = run("sh", "-n", str(script))
    assert done.returncode == 0, done.stderr


def test_the_release_conf_gives_the_shell_the_served_name_as_it_is(tmp_path):
    s = vllm_host()
    conf = tmp_path / "release.conf"
    conf.write_text(launch.release_conf(s))
    done = run("sh", "-c", f'. {shlex.quote(str(conf))}; printf "%s\\n" "$MODEL" "$URL"')
    assert done.stdout.splitlines() == [s.served_model_name, launch.local_url(s)]


def gateway_fleet(auth: str, port: int, backend_port: int):
    data = {"gateway_port": port, "gateway_bind_address": "127.0.0.1", "fleet_address": "127.0.0.2"}
    if auth == "gateway":
        data |= {"gateway_auth": "gateway", "gateway_api_key": OTHER_KEY}
    gw = validate("gw", data, ["gateway"])
    backend = vllm_host("gpu-1", vllm_port=backend_port)
    hosts = {gw.host: gw, backend.host: backend}
    check_gateway(gw, hosts)
    return gw, hosts


def haproxy_check(tmp_path: Path, config: str) -> subprocess.CompletedProcess:
    path = tmp_path / "haproxy.cfg"
    path.write_text(config)
    return run("haproxy", "-c", "-f", str(path))


@pytest.mark.parametrize("auth", ["passthrough", "gateway"])
def test_the_haproxy_config_with_hostile_keys_passes_haproxy_c(tmp_path, auth):
    gw, hosts = gateway_fleet(auth, 8000, 8001)
    config = haproxy.haproxy_config(gw, hosts)
    done = haproxy_check(tmp_path, config)
    assert done.returncode == 0, done.stdout + done.stderr


def test_haproxy_c_is_a_check_that_fails(tmp_path):
    """The checker refuses what the quoting prevents: the same key written in unquoted."""
    gw, hosts = gateway_fleet("passthrough", 8000, 8001)
    config = haproxy.haproxy_config(gw, hosts).replace(haproxy.haproxy_quote(f"Bearer {HOSTILE_KEY}"), HOSTILE_KEY)
    assert haproxy_check(tmp_path, config).returncode != 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Backend(http.server.BaseHTTPRequestHandler):
    """A stand-in for one vLLM host: /health, and the model list for the hosts' key only."""

    key = ""
    seen: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server's name)
        authorised = self.headers.get("Authorization") == f"Bearer {self.key}"
        if self.path != "/health":
            self.seen.append(self.path)
        if self.path == "/health":
            self.answer(200, {})
        elif authorised:
            self.answer(200, {"data": [{"id": "m"}]})
        else:
            self.answer(401, {"error": "backend refused"})

    def answer(self, status: int, body: dict):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def get(port: int, path: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 (a local test server)
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except urllib.error.URLError:
        return 0  # nothing listening (yet)


@pytest.fixture
def live_gateway(tmp_path, request):
    """HAProxy itself, run with the rendered configuration in front of the stand-in backend."""

    def start(auth: str):
        port, backend_port = free_port(), free_port()
        Backend.key, Backend.seen = HOSTILE_KEY, []
        server = http.server.ThreadingHTTPServer(("127.0.0.1", backend_port), Backend)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        request.addfinalizer(server.shutdown)
        gw, hosts = gateway_fleet(auth, port, backend_port)
        config = haproxy.haproxy_config(gw, hosts)
        # The one change for a test process: the runtime socket in the test's own directory.
        config = config.replace(paths.HAPROXY_ADMIN_SOCKET, str(tmp_path / "admin.sock"))
        path = tmp_path / "haproxy.cfg"
        path.write_text(config)
        proc = subprocess.Popen(["haproxy", "-db", "-f", str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        request.addfinalizer(proc.kill)
        client = OTHER_KEY if auth == "gateway" else HOSTILE_KEY
        deadline = time.monotonic() + 30
        while get(port, "/v1/models", {"Authorization": f"Bearer {client}"}) != 200:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "the backend never came up behind HAProxy"
            time.sleep(0.5)
        return port, client

    return start


@pytest.mark.parametrize("auth", ["passthrough", "gateway"])
def test_a_key_with_commas_and_percents_opens_the_gateway_and_nothing_else_does(live_gateway, auth):
    port, client = live_gateway(auth)
    good = {"Authorization": f"Bearer {client}"}
    assert get(port, "/v1/models", good) == 200
    # What req.hdr would have taken: the key cut at its first comma.
    assert get(port, "/v1/models", {"Authorization": f"Bearer {client.split(',')[0]}"}) == 401
    assert get(port, "/v1/models", {}) == 401
    # vLLM leaves some endpoints open even with --api-key: the gateway does not.
    assert get(port, "/invocations", {}) == 401
    assert get(port, "/health", {}) == 200
    if auth == "gateway":  # the hosts' own key is not a gateway key
        assert get(port, "/v1/models", {"Authorization": f"Bearer {HOSTILE_KEY}"}) == 401


@pytest.mark.parametrize(
    "host",
    ["gw.example/#@evil", "gw.example?x", "gw.example@evil", "gw example", "gw.example:80:80", "[::1"],
)
def test_the_gateway_refuses_host_headers_that_are_not_a_name_and_a_port(live_gateway, host):
    port, client = live_gateway("passthrough")
    good = {"Authorization": f"Bearer {client}"}
    assert get(port, "/v1/models", {**good, "Host": "gw.example:8000"}) == 200
    assert get(port, "/v1/models", {**good, "Host": "[2001:db8::1]:8000"}) == 200
    assert get(port, "/v1/models", {**good, "Host": host}) == 400


def test_the_activation_units_recovery_is_one_plain_command(tmp_path):
    """systemd-run reads a transient unit's ExecStopPost itself: no shell, no quoting to lose."""
    line = launch.recovery("gpu-01.example")
    assert shlex.split(line) == [paths.ACTIVATE_SCRIPT, "gpu-01.example", "--recover"]


def monitored_gateway_fleet(port: int, backend_port: int):
    from tests.unit.monitored_fleet import HOSTS

    gw, hosts = gateway_fleet("passthrough", port, backend_port)
    mon_data, groups = HOSTS["mon"]
    hosts["mon"] = validate("mon", mon_data, groups)
    return hosts[gw.host], hosts


def test_the_monitoring_units_and_tables_pass_their_checkers(tmp_path):
    from tests.unit.monitored_fleet import fleet

    hosts = fleet()
    for name in ("gpu-a", "gpu-b", "cpu.c", "gw", "mon"):
        table = tmp_path / f"{name}.nft"
        table.write_text(firewall.rules(hosts[name], hosts))
        done = run("nft", "-c", "-f", str(table))
        assert done.returncode == 0, (name, done.stderr)
    for exporter, host in ((DCGM, "gpu-a"), (AMD_GPU, "gpu-b"), (NODE, "cpu.c")):
        unit = templates.render("vllm-fleet-exporter.service.j2", **exporter_unit(exporter, hosts[host]))
        systemd_verify(tmp_path, paths.GPU_EXPORTER_SERVICE, unit)


def test_the_gateways_metrics_frontend_answers_with_the_recorded_names(tmp_path):
    """Real HAProxy with the rendered configuration: its Prometheus frontend answers, with every
    series vllm_fleet/data/metrics/haproxy.txt records and the dashboard reads."""
    from tests import metric_names

    port, backend_port, metrics_port = free_port(), free_port(), free_port()
    gw, hosts = monitored_gateway_fleet(port, backend_port)
    config = haproxy.haproxy_config(gw, hosts)
    # IPv4 and IPv6 alike: a gateway's fleet_address may be either.
    listen = f"bind :::{HAPROXY_METRICS_PORT} v4v6"
    assert listen in config
    config = config.replace(paths.HAPROXY_ADMIN_SOCKET, str(tmp_path / "admin.sock"))
    assert haproxy_check(tmp_path, config).returncode == 0
    config = config.replace(listen, f"bind 127.0.0.1:{metrics_port}")
    path = tmp_path / "haproxy.cfg"
    path.write_text(config)
    assert haproxy_check(tmp_path, config).returncode == 0
    proc = subprocess.Popen(["haproxy", "-db", "-f", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while get(metrics_port, "/metrics", {}) != 200:
            assert proc.poll() is None and time.monotonic() < deadline, "HAProxy's metrics frontend never answered"
            time.sleep(0.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:  # noqa: S310
            live = metric_names.exported(response.read().decode())
        assert get(metrics_port, "/", {}) == 404
    finally:
        proc.kill()
    assert metric_names.recorded("haproxy") <= live, metric_names.recorded("haproxy") - live
    assert metric_names.used()["haproxy"] <= live
