"""Inventories generated, not listed (Hypothesis): valid fleets of one to three vLLM hosts, maybe
a gateway and a monitoring host, each with up to three knobs set to values drawn from what careless
operators and attackers write (paths, ports, networks, flags, URLs, secrets inside other values,
unknown keys, control characters, look-alike dashes). Written as pyinfra inventory files and read
by the real commands in-process, for any of them:

- no secret (a string under a secret knob, or under an unknown key named as one, of 8 characters or
  more: shorter ones are refused and shown by their length) appears in any output of `hosts` or
  `plan`, table or JSON;
- a refusal is one line per host naming the host and a key the inventory set, and what is allowed;
- an accepted inventory: every firewall table passes `nft -c` and leaves the host's SSH port alone,
  every vLLM unit passes `systemd-analyze verify`, and no cache directory lies in or under a
  directory of the OS, a runtime or a user's hidden files (a list written here, apart from the rule).

MAX_EXAMPLES inventories per run; tests/hostile_inventories.py keeps the named cases.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import posixpath
import re
import shutil
import string
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from vllm_fleet import cli, firewall, launch, paths, templates
from vllm_fleet.inventory import load_inventory, validate_inventory
from vllm_fleet.plan import plan_inventory
from vllm_fleet.plan_table import render
from vllm_fleet.settings import KNOBS, PHASES
from vllm_fleet.settings.daemon_json import DAEMON_KEYS
from vllm_fleet.settings.parsing import is_secret

REPO = Path(__file__).resolve().parents[2]
MAX_EXAMPLES = 300
MARK = "hunter2"

FRAGMENTS = [
    "/", "/srv/hf", "/data", "/var/lib/docker", "/var/run", "/var/lib/vllm-fleet", "/images", "..", "/tmp",
    "/root/.ssh", "/home/ops", "/.config", "~", "$(id)", "`id`", ";", "\n", "'", '"', "\\", "%", "#", "{", "}",
    "\u2013", "\u2212", "\u0435", "\u2028", "\x00", " ", "--trust-remote-code", "--enable-log-requests",
    "--enforce-eager", "--seed", "org/model", "-", "0.0.0.0/0", "10.20.0.5/0", "10.0.0.0/8", "::/0", "8.8.8.0/24",
    "http://", "https://", "user:pw@", "@", "hooks.example.com", ":99999", ":587", "xn--", "22", "9100",
    "localhost", "127.0.0.1", "${VAR}", "changeme", "hf_", "sk-", ":", ",", "=", "a", "B7",
]  # fmt: skip
TEXT = st.one_of(
    st.sampled_from(FRAGMENTS),
    st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=4).map("".join),
    st.text(max_size=12),
).filter(lambda text: MARK not in text)
SECRET = st.text(alphabet=string.ascii_letters + string.digits + "-_.,'\"\\$%{}", max_size=24).map(
    lambda tail: MARK + tail
)
SCALAR = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-2, 70000),
    st.sampled_from([22, 2222, 8000, 9090, 9093, 9094, 9100, 29501, 40000]),
    TEXT,
)
DAEMON = st.dictionaries(
    st.sampled_from([*sorted(DAEMON_KEYS), "log-opt"]),
    st.one_of(TEXT, st.booleans(), st.integers(0, 10), st.lists(TEXT, max_size=2)),
    max_size=2,
)
STRONG = MARK + "-Zq7wPm2xAb9"
# A secret of the inventory's put inside another value, too.
VALUE = st.one_of(SCALAR, st.lists(TEXT, max_size=3), DAEMON, SECRET, TEXT.map(lambda text: text + STRONG))
KEYS = [*sorted(KNOBS), "ssh_port", "ssh_user", "ssh_key", "db_password"]
PORT_KEYS = [key for key in KEYS if key.endswith(("_port", "_ports"))]
PORTS = st.sampled_from([22, 2222, 8000, 8001, 9090, 9093, 9094, 9100, 9400, 29501, 40000, "2000-3000", "9000-9200"])
# Up to three keys set: any key to any value, or a port knob to a port that other ports or SSH use.
OVERRIDES = st.lists(
    st.one_of(st.tuples(st.sampled_from(KEYS), VALUE), st.tuples(st.sampled_from(PORT_KEYS), PORTS)), max_size=3
).map(dict)


@st.composite
def inventories(draw) -> dict[str, list[tuple[str, dict]]]:
    groups: dict[str, list[tuple[str, dict]]] = {}
    count = draw(st.integers(1, 3))
    for index in range(count):
        phase = draw(st.sampled_from(PHASES))
        data = {
            "fleet_address": f"10.66.0.{index + 1}",
            "accelerator": draw(st.sampled_from(["nvidia", "amd", "cpu"])),
            "vllm_api_key": STRONG,
        }
        if phase != "laptop":
            data["vllm_bind_address"] = "0.0.0.0"
        if draw(st.booleans()):  # half the hosts as the profile has them, so that fleets get through too
            data |= draw(OVERRIDES)
        groups.setdefault(phase, []).append((f"gpu-{index}", data))
    if draw(st.booleans()):
        gateway = {"fleet_address": "10.66.1.1"} | draw(OVERRIDES)
        groups["gateway"] = [("gw-0", gateway)]
    if draw(st.booleans()):
        monitor = {"fleet_address": "10.66.2.1", "alert_webhook_url": "https://hooks.example.com/a"}
        monitor |= draw(OVERRIDES)
        groups["monitoring"] = [("mon-0", monitor)]
    return groups


_NUMBERS = itertools.count()


def _command(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(list(argv))
    return rc, out.getvalue(), err.getvalue()


# Directories no cache may be in or under, written apart from the rule (settings/places.py).
FORBIDDEN = (
    "/bin", "/boot", "/dev", "/etc", "/lib", "/lib64", "/proc", "/root", "/run", "/sbin", "/sys", "/tmp", "/usr",
    "/var/run", "/var/lib/docker", "/var/lib/containerd", "/var/spool", "/var/tmp", "/var/log", "/nix",
    paths.IMAGE_DIR, paths.MODELS_DIR, paths.NIX_DIR,
)  # fmt: skip


def _safe_cache(path: str) -> bool:
    normal = posixpath.normpath(path)
    hidden = any(part.startswith(".") for part in normal.split("/"))
    return (
        normal not in ("/", paths.STATE_DIR, "/var", "/var/lib")
        and not hidden
        and not any(normal == d or normal.startswith(d + "/") for d in FORBIDDEN)
    )


def _covers(port: int | str, ssh_port: int) -> bool:
    low, _, high = str(port).partition("-")
    return int(low) <= ssh_port <= int(high or low)


@pytest.mark.skipif(not (shutil.which("nft") and shutil.which("systemd-analyze")), reason="make checkers")
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(groups=inventories())
def test_any_inventory_is_refused_in_one_line_per_host_or_renders_files_its_checkers_pass(tmp_path, groups):
    # A file of its own each time: pyinfra caches an inventory file's code by its path.
    inventory = tmp_path / f"inventory_{next(_NUMBERS)}.py"
    inventory.write_text("".join(f"{group} = {hosts!r}\n" for group, hosts in groups.items()))
    rc, out, err = _command("hosts", str(inventory))
    plans = plan_inventory(str(inventory))
    shown = out + err + json.dumps(plans) + render(plans)
    secrets = {
        value
        for hosts in groups.values()
        for _, data in hosts
        for key, value in data.items()
        if is_secret(key) and isinstance(value, str) and len(value) >= 8
    }
    assert not [secret for secret in secrets if secret in shown], "a secret was shown"
    names = {name for hosts in groups.values() for name, _ in hosts}
    event("refused" if rc else "accepted")
    if rc:
        lines = err.splitlines()
        assert rc == 2 and lines[0] == "vllm_fleet: invalid settings, nothing was changed on any host:", err
        for line in lines[1:]:
            match = re.fullmatch(r"  host (\S+): (\S+) = .+ is not allowed: .+", line)
            assert match and match[1].strip("'") in names, line
            assert match[2] in {*KEYS, "name", "groups", "phase", "ssh_hostname"}, line
            event(f"refused for {match[2]}")
        return
    fleet = validate_inventory(load_inventory(str(inventory), REPO)).fleet()
    for s in fleet.values():
        assert _safe_cache(s.hf_cache_dir) and _safe_cache(s.vllm_cache_dir), (s.hf_cache_dir, s.vllm_cache_dir)
        if firewall.wanted(s, fleet):
            for guard in firewall.guards(s, fleet):
                assert not any(_covers(port, s.ssh_port) for port in guard.ports), (s.host, guard)
            table = tmp_path / f"{s.host}.nft"
            table.write_text(firewall.rules(s, fleet))
            done = subprocess.run(["nft", "-c", "-f", str(table)], capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, done.stderr
        if s.role == "vllm" and s.serving_method == "docker":
            unit = tmp_path / paths.SERVICE
            unit.write_text(templates.render("vllm.service.j2", **launch.unit_context(s, "nvidia")))
            (tmp_path / paths.FIREWALL_SERVICE).write_text(templates.render("vllm-firewall.service.j2"))
            done = subprocess.run(
                ["systemd-analyze", "verify", str(unit), str(tmp_path / paths.FIREWALL_SERVICE)],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0 and not done.stderr.strip(), done.stderr
