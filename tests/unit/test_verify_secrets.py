"""The verify suite (vllm_fleet/verify) fails without printing a secret: not in pytest's assertion
detail, a traceback, testinfra's log of each command or the JUnit report rollouts publish.

Its real tests run in a pytest of their own, against this machine (testinfra's local://), made
to fail: a process holds a fake secret on its command line, a readable file and the "journal"
hold it too. What pytest printed and wrote is then searched for the fake secret.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

from vllm_fleet.rollout.runner import verify_command

REPO = Path(__file__).resolve().parents[2]
VERIFY = REPO / "vllm_fleet" / "verify"
FAKE = "fake-secret-" + "5ec7e7" * 4
# Printed on purpose by a test of its own: the search below would see a secret that leaked.
CONTROL = "control-secret-" + "c0c0a" * 4

MODULE = '''
import os
import shutil
import subprocess
import sys
import tempfile
import time
import types
import uuid

import pytest
import testinfra

sys.path.insert(0, {verify!r})
import secret_checks
from test_secrets import (
    test_no_file_an_unprivileged_user_can_read_holds_a_secret,
    test_no_secret_in_the_journal,
    test_secrets_not_in_process_arguments,
)
from test_service import test_service_runs_the_nix_build

FAKE, CONTROL = {fake!r}, {control!r}
# Of this run alone: pgrep looks at every process on this machine.
MODEL = "fleet-test/model-" + uuid.uuid4().hex
STORE = "/nix/store/0000-vllm-server"


class Host:
    """This machine; a Nix build and the service's main PID are made up."""

    def __init__(self, pid):
        self.local, self.pid = testinfra.get_host("local://"), pid

    def run(self, command):
        if command.startswith("readlink "):
            return self.local.run("echo %s", STORE)
        return self.local.run(command)

    def check_output(self, command):
        if command.startswith("systemctl show -p MainPID"):
            return str(self.pid)
        return self.local.check_output(command)


def made_up_host(kind, tmp_path, monkeypatch):
    """A host of the kind's role whose secret (FAKE) leaked into a readable file, the "journal"
    and a process's arguments; the process that holds its secrets runs, except for vllm-missing."""
    role = kind.split("-")[0]
    held = {{
        "vllm": ("ENV_FILE", f"HF_TOKEN={{FAKE}}\\n"),
        "gateway": ("HAPROXY_CONFIG", f'    http-request set-header Authorization "Bearer {{FAKE}}"\\n'),
        "monitoring": ("ALERTMANAGER_CONFIG", f"      credentials: {{FAKE}}\\n"),
    }}
    for name, content in held.values():
        path = tmp_path / name.lower()
        path.write_text(content if (name, content) == held[role] else "")
        monkeypatch.setattr(secret_checks, name, str(path))
    searched = tempfile.mkdtemp(prefix="verify-secrets-")
    os.chmod(searched, 0o755)  # nobody may look inside, as in /etc
    with open(os.path.join(searched, "leaked.conf"), "w") as leaked:
        leaked.write(f"token = {{FAKE}}\\n")
    os.chmod(os.path.join(searched, "leaked.conf"), 0o644)
    monkeypatch.setattr(secret_checks, "SEARCHED", searched)
    journal = tmp_path / "journal"
    journal.write_text(f"started\\ntoken {{FAKE}}\\nstopped\\n")
    monkeypatch.setattr(secret_checks, "JOURNAL", f"cat {{journal}}")
    arguments = {{
        "vllm-running": ["vllm", "--model", MODEL],
        "vllm-missing": ["vllm"],
        "gateway-running": ["haproxy", "-f", secret_checks.HAPROXY_CONFIG],
        "monitoring-running": ["prometheus-alertmanager", "--web.listen-address=127.0.0.1:9093"],
    }}[kind]
    process = subprocess.Popen(["sh", "-c", "sleep 60", *arguments, "--token", FAKE])
    time.sleep(0.2)
    settings = types.SimpleNamespace(vllm_model=MODEL, serving_method="nix")
    host = Host(process.pid)
    yield types.SimpleNamespace(name="host-1", role=role, host=host, settings=settings, accelerator="nvidia")
    process.kill()
    process.wait()
    shutil.rmtree(searched)


@pytest.fixture(params=["vllm-running", "vllm-missing"])
def target(request, tmp_path, monkeypatch):
    yield from made_up_host(request.param, tmp_path, monkeypatch)


@pytest.fixture(params=["vllm-running", "vllm-missing", "gateway-running", "monitoring-running"])
def any_host(request, tmp_path, monkeypatch):
    yield from made_up_host(request.param, tmp_path, monkeypatch)


def test_control_a_printed_secret_is_seen():
    assert CONTROL == "shown"
'''


def run_suite(tmp_path: Path, *options: str) -> tuple[str, str]:
    """The generated module's tests; returns pytest's output and its JUnit XML."""
    module = tmp_path / "test_leaks.py"
    module.write_text(MODULE.format(verify=str(VERIFY), fake=FAKE, control=CONTROL))
    junit = tmp_path / "report.xml"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(module), "-c", str(REPO / "pyproject.toml"), "-p", "no:cacheprovider"]
        + ["--junit-xml", str(junit), *options],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr, junit.read_text()


def around(text: str, secret: str) -> str:
    at = text.index(secret)
    return text[max(0, at - 600) : at + 100]


def failures(xml: str) -> dict[str, str]:
    root = ET.fromstring(xml)  # noqa: S314 (written just now by our own pytest)
    return {
        case.get("name", ""): (failure.get("message") or "") + (failure.text or "")
        for case in root.iter("testcase")
        if (failure := case.find("failure")) is not None
    }


def test_failing_secret_checks_show_where_the_secret_is_never_what(tmp_path):
    # The most a user might ask for: every assertion detail, local variables, DEBUG logs
    # (testinfra logs each command's output) on the terminal and in the report, long tracebacks.
    output, xml = run_suite(tmp_path, "-vv", "-l", "--tb=long", "--log-level=DEBUG", "-o", "junit_logging=all")
    failed = failures(xml)
    assert CONTROL in failed.pop("test_control_a_printed_secret_is_seen") and CONTROL in output
    hosts = ("vllm-running", "vllm-missing", "gateway-running", "monitoring-running")
    assert sorted(failed) == sorted(
        [
            f"{test}[{param}]"
            for test in (
                "test_secrets_not_in_process_arguments",
                "test_no_file_an_unprivileged_user_can_read_holds_a_secret",
                "test_no_secret_in_the_journal",
            )
            for param in hosts
        ]
        + [f"test_service_runs_the_nix_build[{param}]" for param in hosts[:2]]
    )
    # Each says where: processes, files, journal lines.
    running = failed["test_secrets_not_in_process_arguments[vllm-running]"]
    assert "a secret appears in the arguments of processes [" in running
    missing = failed["test_secrets_not_in_process_arguments[vllm-missing]"]
    assert "the vLLM process is missing on host-1" in missing
    for param in hosts:
        # Each role's secret, read from the file that role holds it in, is found where it leaked.
        assert "1 journal lines on host-1 hold a secret" in failed[f"test_no_secret_in_the_journal[{param}]"]
        readable = failed[f"test_no_file_an_unprivileged_user_can_read_holds_a_secret[{param}]"]
        assert "leaked.conf']" in readable or "cannot run as nobody" in readable  # runuser needs root
    for param in hosts[2:]:
        arguments = failed[f"test_secrets_not_in_process_arguments[{param}]"]
        assert "a secret appears in the arguments of processes [" in arguments
    assert "does not run /nix/store/0000-vllm-server" in failed["test_service_runs_the_nix_build[vllm-running]"]
    assert FAKE not in output, around(output, FAKE)
    assert FAKE not in xml, around(xml, FAKE)


def test_the_default_report_holds_no_secret_either(tmp_path):
    output, xml = run_suite(tmp_path, "-q")
    assert CONTROL in output and CONTROL in xml and len(failures(xml)) == 15
    assert FAKE not in output, around(output, FAKE)
    assert FAKE not in xml, around(xml, FAKE)


def test_the_verify_suite_shows_no_locals():
    """A traceback shows source lines and the test's arguments (the target), not local variables
    unless asked for with -l/--showlocals: neither the suite's command nor its config asks (no
    local holds a secret either, as the test above shows with -l)."""
    command = verify_command("inventories/prod.py", ["a"], "-n", "4")
    assert not {"-l", "--showlocals"} & set(command)
    addopts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    assert not {"-l", "--showlocals"} & set(addopts.split())
    assert not [p.name for p in VERIFY.iterdir() if p.name in ("pytest.ini", "tox.ini", "setup.cfg", "pyproject.toml")]


def test_the_suites_targets_carry_no_secret(tmp_path):
    """The suite's copy of the inventory says only whether a secret is set: a target, shown as a
    test's argument in every long traceback, holds no secret."""
    spec = importlib.util.spec_from_file_location("verify_conftest", VERIFY / "conftest.py")
    assert spec and spec.loader
    conftest = importlib.util.module_from_spec(spec)
    # Its dataclass looks its module up by name.
    sys.modules[spec.name] = conftest
    spec.loader.exec_module(conftest)
    inventory = tmp_path / "inventory.py"
    data = {"vllm_bind_address": "0.0.0.0", "vllm_api_key": FAKE, "hf_token": "hf_" + FAKE}
    inventory.write_text(f"single_gpu = [('srv-1', {data!r})]\n")
    [target] = conftest.load_targets(str(inventory))
    key = target.inventory_settings.vllm_api_key
    assert key and key.get_secret_value() != FAKE
    assert FAKE not in repr(target)  # nor the token, which holds it
