"""The rollout's own logic: batches, host selection, reading pyinfra's results, the report."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from pyinfra.api.exceptions import PyinfraError

from vllm_fleet import pyinfra_log
from vllm_fleet.rollout import runner
from vllm_fleet.rollout.batches import parse_batch, select, split_batches
from vllm_fleet.rollout.plans import DEPLOY_MARGIN
from vllm_fleet.rollout.report import junit, table
from vllm_fleet.rollout.run import main
from vllm_fleet.rollout.runner import GATEWAY_MARGIN, VERIFY_PER_HOST, VERIFY_START, classify
from vllm_fleet.rollout.state import CHANGED, FAILED, NOT_STARTED, ROLLED_BACK, UNCHANGED, UNREACHABLE, Rollout

HOSTS = [f"gpu-{i}" for i in range(1, 9)]


@pytest.mark.parametrize(
    ("canary", "batch", "expected"),
    [
        (1, "25%", [[1], [2, 3], [4, 5], [6, 7], [8]]),
        (1, "2", [[1], [2, 3], [4, 5], [6, 7], [8]]),
        (2, "100%", [[1, 2], [3, 4, 5, 6, 7, 8]]),
        (0, "3", [[1, 2, 3], [4, 5, 6], [7, 8]]),
        (1, "1%", [[1], [2], [3], [4], [5], [6], [7], [8]]),
    ],
)
def test_batches(canary, batch, expected):
    got = split_batches(HOSTS, canary, parse_batch(batch))
    assert got == [[f"gpu-{i}" for i in b] for b in expected]


@pytest.mark.parametrize("bad", ["0", "-1", "101%", "half", "2.5", ""])
def test_bad_batch_sizes_are_refused(bad):
    with pytest.raises(ValueError, match="a number of hosts such as 2, or a percentage"):
        parse_batch(bad)


def test_limit_takes_names_and_globs_in_inventory_order():
    assert select(HOSTS, ["gpu-7", "gpu-[12]"]) == ["gpu-1", "gpu-2", "gpu-7"]
    assert select(HOSTS, []) == HOSTS
    assert select(HOSTS, ["web-*"]) == []


def op(name, success=(), error=(), no_change=()):
    return {"name": name, "success": list(success), "error": list(error), "no_change": list(no_change)}


# pyinfra 3.10's --json results and log lines, as a batch of five hosts printed them; the
# activation's outcome lines in the form its `jq -c` writes them.
REPORT = {
    "operations": [
        op("Docker engine | Install Docker engine", no_change=["a", "b", "c", "d"]),
        op("vLLM service | Write vllm.service of the new release", success=["a", "c"], no_change=["b"]),
        op("vLLM service | Activate the new release", success=["a"], error=["c"]),
        op("Pre-flight checks | Refuse the host: pre-flight checks failed", error=["d"]),
    ],
    "failed_hosts": ["c", "d", "e"],
}
LOG = """--> Connecting to hosts...
    [e]   Could not connect ([Errno None] Unable to connect to port 2225 on 127.0.0.1)
    [a]   Connected
vLLM on c did not list m at http://127.0.0.1:8000/v1/models within 15s
vllm-fleet: release 20261122-1 did not come up on c: going back to release 20261121-9
vllm-fleet: c ROLLED BACK to release 20261121-9, which serves; release 20261122-1 is kept
vllm-fleet-outcome {"host":"c","outcome":"rolled_back","release":"20261122-1","fallback":"20261121-9",\
"message":"c ROLLED BACK to release 20261121-9, which serves; release 20261122-1 is kept"}
    [c] Error: executed 0/1 commands
vllm-fleet: cc ROLLED BACK to release 20261121-9, which serves (another host, whose name ends like this one's)
vllm-fleet-outcome {"host":"cc","outcome":"rolled_back","release":"1","fallback":"2","message":"cc ROLLED BACK"}
vllm-fleet: b ROLLED BACK, said a log line with no outcome after it (not an outcome)
    [d] stopped: port: port 8000 is already taken by nginx
"""


def test_each_host_outcome_is_read_from_pyinfras_results():
    got = classify(["a", "b", "c", "d", "e"], REPORT, LOG)
    assert got["a"] == (CHANGED, "")
    assert got["b"] == (UNCHANGED, "")
    assert got["c"] == (ROLLED_BACK, "c ROLLED BACK to release 20261121-9, which serves; release 20261122-1 is kept")
    assert got["d"] == (
        FAILED,
        "step 'Pre-flight checks | Refuse the host: pre-flight checks failed' failed: stopped: port: port 8000 is "
        "already taken by nginx",
    )
    assert got["e"] == (UNREACHABLE, "Could not connect ([Errno None] Unable to connect to port 2225 on 127.0.0.1)")


def test_outcomes_when_every_host_failed_and_pyinfra_gave_no_results():
    # pyinfra ends "No hosts remaining!" without its --json results when no host is left.
    log = LOG + "--> pyinfra error: No hosts remaining!\n"
    got = classify(["c", "d", "e"], {"operations": [], "failed_hosts": ["c", "d", "e"]}, log)
    assert got["c"][0] == ROLLED_BACK
    # This log names no operation: the host's own words are all there is, never pyinfra's summary.
    assert got["d"] == (FAILED, "failed: stopped: port: port 8000 is already taken by nginx")
    assert got["e"][0] == UNREACHABLE


def finished(states: dict[str, str], stopped: str = "") -> Rollout:
    done = Rollout("inv.py", [["a"], ["b", "c"], ["d"]], {"gw": ["a", "b", "c", "d"]}, 60, 0, say=lambda _: None)
    for name, state in states.items():
        done.results[name].state = state
        done.results[name].reason = f"why {name}" if state not in (CHANGED, UNCHANGED, NOT_STARTED) else ""
    done.stopped = stopped
    return done


def test_junit_names_every_host_and_how_it_ended():
    done = finished({"a": CHANGED, "b": ROLLED_BACK, "c": UNREACHABLE}, stopped="too many failures")
    suite = ET.fromstring(junit(done)).find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("4", "2", "1")
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert cases["a"].find("failure") is None and cases["a"].find("skipped") is None
    assert cases["b"].find("failure").get("message") == "rolled back: why b"
    assert cases["c"].find("failure").get("type") == "unreachable"
    assert cases["d"].find("skipped").get("message") == "not started: too many failures"
    assert cases["b"].get("classname") == "rollout.batch2"


def test_failures_count_failed_and_rolled_back_hosts_not_unreachable_ones():
    done = finished({"a": CHANGED, "b": ROLLED_BACK, "c": UNREACHABLE, "d": FAILED})
    assert done.failures == 2 and not done.completed
    assert finished({"a": CHANGED, "b": UNCHANGED, "c": CHANGED, "d": CHANGED}).completed


def test_table_has_a_row_per_host_with_its_reason():
    lines = table(finished({"a": CHANGED, "b": ROLLED_BACK})).splitlines()
    assert lines[0].split() == ["host", "batch", "state", "reason"]
    assert lines[2].split() == ["b", "2", "rolled", "back", "why", "b"]
    assert lines[4].split() == ["d", "3", "not", "started"]


# --- the rollout run against a stand-in for pyinfra and the verify suite ----------------------
#
# Fleet answers each command the rollout starts (through subprocess.run), as pyinfra 3.10's CLI
# and pytest would, and records it; a step named in `raises` raises instead what subprocess.run
# would (on a timeout, Ctrl-C, an OSError), or, given a function of the hosts, when it returns one.


def settings(**values):
    return {name: {"value": value, "source": "host data"} for name, value in values.items()}


def planned_vllm(**values):
    knobs = {"package_lock_timeout": 0, "vllm_ready_timeout": 100, "serving_method": "docker"}
    knobs |= {"vllm_download_weights": True, "vllm_download_timeout": 600} | values
    return {"role": "vllm", "refused": None, "warnings": [], "settings": settings(**knobs)}


def planned_gateway(*backends, drain_timeout=30):
    fronted = {name: f"10.0.0.{i}:8000" for i, name in enumerate(backends, 1)}
    return {"role": "gateway", "drain_timeout": drain_timeout, "backends": fronted, "refused": None, "warnings": []}


def done(cmd, rc=0, stdout="", stderr=""):
    return subprocess.CompletedProcess(cmd, rc, stdout, stderr)


class Fleet:
    def __init__(self, plans, raises=None, verify_fails=()):
        self.plans, self.raises, self.verify_fails = plans, raises or {}, verify_fails
        self.calls: list[tuple[str, list[str], float]] = []  # (step, hosts, timeout)

    def plan_inventory(self, inventory):
        """The plans, as plan.plan_inventory makes them in the rollout's process."""
        self.calls.append(("plan", [], None))
        raises = self.raises.get("plan")
        if raises is not None:
            raise raises
        return self.plans

    def __call__(self, cmd, timeout=None, **_):
        limited = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--limit"]
        if "exec" in cmd:
            step, hosts = cmd[cmd.index("--") + 2], cmd[cmd.index("--") + 4 :]
            hosts = [f"{gateway}:{host}" for gateway in limited for host in hosts]
        else:
            step, hosts = ("deploy" if "deploy.py" in cmd else "verify"), limited
        self.calls.append((step, hosts, timeout))
        raises = self.raises.get(step)
        if callable(raises) and not isinstance(raises, BaseException):
            raises = raises(limited if step in ("deploy", "verify") else hosts)
        if raises is not None:
            raise raises
        if step == "deploy":
            report = {
                "operations": [op("vLLM service | Activate the new release", success=limited)],
                "failed_hosts": [],
            }
            return done(cmd, stdout=json.dumps({"plan": {}, "results": report}))
        if step == "verify":
            cases = "".join(
                f'<testcase name="test_health[{h}]">' + ("<failure/>" if h in self.verify_fails else "") + "</testcase>"
                for h in limited
            )
            Path(cmd[cmd.index("--junit-xml") + 1]).write_text(
                f"<testsuites><testsuite>{cases}</testsuite></testsuites>"
            )
            return done(cmd)
        return done(cmd, stdout="\n".join(f"gateway: {h} {step}" for h in hosts))

    def gateway_calls(self, action):
        """The gateway:host pairs of each call of the gateway helper's `action`."""
        return [hosts for step, hosts, _ in self.calls if step == action]


@pytest.fixture
def run_rollout(monkeypatch, tmp_path, capsys):
    """main() on a Fleet: returns (exit status, the Rollout's printed output, the JUnit cases)."""

    def run(fleet, batch="1", canary=1, max_failures=0):
        monkeypatch.setattr(subprocess, "run", fleet)
        monkeypatch.setattr(runner, "plan_inventory", fleet.plan_inventory)
        report = tmp_path / "reports" / "rollout.xml"
        args = argparse.Namespace(
            inventory="inv.py", batch=batch, canary=canary, max_failures=max_failures, limit=[], junit_xml=str(report)
        )
        status = main(args)
        cases = {case.get("name"): case for case in ET.parse(report).getroot().iter("testcase")}
        return status, capsys.readouterr().out, cases

    return run


# 1. Drain only where a host is fronted.


def test_each_host_is_drained_and_put_back_only_at_the_gateways_that_front_it(run_rollout):
    plans = {"gw-1": planned_gateway("a", "b"), "gw-2": planned_gateway("b"), **{n: planned_vllm() for n in "abc"}}
    fleet = Fleet(plans)
    status, out, cases = run_rollout(fleet, batch="100%", canary=0)
    assert status == 0, out
    assert fleet.gateway_calls("drain") == [["gw-1:a", "gw-1:b"], ["gw-2:b"]]
    assert fleet.gateway_calls("ready") == [["gw-1:a", "gw-1:b"], ["gw-2:b"]]
    assert fleet.gateway_calls("restore") == []
    assert "c: fronted by no gateway, deployed without draining" in out
    assert all(case.find("failure") is None for case in cases.values())


def test_gateways_fronting_the_same_hosts_are_driven_in_one_call(run_rollout):
    plans = {"gw-1": planned_gateway("a"), "gw-2": planned_gateway("a"), "a": planned_vllm()}
    fleet = Fleet(plans)
    assert run_rollout(fleet)[0] == 0
    assert fleet.gateway_calls("drain") == [["gw-1:a", "gw-2:a"]]


def test_a_batch_no_gateway_fronts_is_deployed_without_any_gateway_call(run_rollout):
    plans = {"gw": planned_gateway("a"), "a": planned_vllm(), "b": planned_vllm()}
    fleet = Fleet(plans)
    status, out, _ = run_rollout(fleet)
    assert status == 0, out
    steps = [(step, hosts) for step, hosts, _ in fleet.calls]
    # Batch 2 (b): deployed and verified with no drain, no ready.
    assert steps[-2:] == [("deploy", ["b"]), ("verify", ["b"])]


def test_monitoring_hosts_are_brought_up_to_date_with_the_gateways_and_in_no_batch(run_rollout):
    plans = {"gw": planned_gateway("a"), "mon": {"role": "monitoring", "refused": None}, "a": planned_vllm()}
    fleet = Fleet(plans)
    status, out, cases = run_rollout(fleet)
    assert status == 0, out
    steps = [(step, hosts) for step, hosts, _ in fleet.calls]
    assert steps[1] == ("deploy", ["gw", "mon"])
    assert ("verify", ["mon"]) not in steps and "mon" not in cases
    assert "gateways and monitoring hosts: gw, mon" in out


def test_the_gateway_plan_names_the_backends_it_fronts():
    from vllm_fleet.plan import gateway_plan
    from vllm_fleet.settings import parse

    fleet = {
        "gw": parse("gw", {"gateway_backends": ["a"], "vllm_api_key": "k" * 8 + "Zq7wPm2x"}, role="gateway"),
        "a": parse("a", {"phase": "enterprise", "fleet_address": "10.0.0.1", "vllm_api_key": "k" * 8 + "Zq7wPm2x"}),
        "b": parse("b", {"phase": "enterprise", "fleet_address": "10.0.0.2", "vllm_api_key": "k" * 8 + "Zq7wPm2x"}),
    }
    assert list(gateway_plan(fleet["gw"], fleet)["backends"]) == ["a"]


# 2. Every wait has a limit; whatever stops the rollout ends in its report.


def test_every_step_runs_under_a_limit_from_the_settings(run_rollout):
    plans = {"gw": planned_gateway("a", drain_timeout=45), "a": planned_vllm(), "n": planned_vllm(serving_method="nix")}
    plans["n"]["settings"] |= settings(nix_build_timeout=5000)
    fleet = Fleet(plans)
    assert run_rollout(fleet, batch="100%", canary=0)[0] == 0
    limits = {step: timeout for step, hosts, timeout in fleet.calls}
    # The slowest host of the batch: the margin, twice the ready timeout and the Nix build.
    assert limits["deploy"] == DEPLOY_MARGIN + 2 * 100 + 5000
    assert limits["verify"] == VERIFY_START + 2 * VERIFY_PER_HOST
    assert limits["drain"] == limits["ready"] == 45 + GATEWAY_MARGIN
    gateway_deploy = [timeout for step, hosts, timeout in fleet.calls if step == "deploy" and hosts == ["gw"]]
    assert gateway_deploy == [DEPLOY_MARGIN + 900]  # a gateway's own: the package lock's default


def test_a_deploy_past_its_limit_fails_its_batch_puts_it_back_and_writes_the_report(run_rollout):
    # What pyinfra had printed when subprocess.run stopped it: bytes, as subprocess leaves them.
    log = b"--> Starting operation: vLLM service | Download the weights (up to 600 s) \n    [b] Success\n"
    plans = {"gw": planned_gateway("a", "b"), "a": planned_vllm(), "b": planned_vllm(), "c": planned_vllm()}
    past_its_limit = subprocess.TimeoutExpired(["pyinfra"], 2400, stderr=log)
    fleet = Fleet(plans, raises={"deploy": lambda hosts: past_its_limit if "b" in hosts else None})
    status, out, cases = run_rollout(fleet, max_failures=5)
    assert status == 1
    assert cases["a"].find("failure") is None
    message = cases["b"].find("failure").get("message")
    assert message == (
        "failed: step 'deploy' timed out after 2400s, pyinfra at 'vLLM service | Download the weights (up to 600 s)'"
    )
    # Its batch back in rotation (the health checks decide), the rollout stopped there.
    assert fleet.gateway_calls("restore") == [["gw:b"]]
    assert cases["c"].find("skipped").get("message") == "not started: batch 2: step 'deploy' timed out after 2400s"
    assert "rollout STOPPED" in out and "left drained" not in out
    assert ["b", "2", "failed", "step", "'deploy'"] in [line.split()[:5] for line in out.splitlines()]


def test_ctrl_c_fails_the_batch_and_keeps_its_known_failure_drained(run_rollout):
    plans = {"gw": planned_gateway("a", "b"), "a": planned_vllm(), "b": planned_vllm()}
    fleet = Fleet(plans, raises={"ready": KeyboardInterrupt()}, verify_fails=["b"])
    status, out, cases = run_rollout(fleet, batch="100%", canary=0)
    assert status == 130
    # a verified, then Ctrl-C while the gateway put it back: a goes back to the health checks,
    # b failed its verify suite and stays drained, named so.
    assert fleet.gateway_calls("restore") == [["gw:a"]]
    a, b = (cases[n].find("failure").get("message") for n in "ab")
    assert a == "failed: interrupted (Ctrl-C) during step 'ready at gw'; before that: changed"
    assert b == (
        "failed: interrupted (Ctrl-C) during step 'ready at gw'; before that: failed (verify suite failed: "
        "test_health); left drained at gw"
    )
    assert "left drained at the gateways: b" in out


def test_an_error_anywhere_is_a_reason_and_what_could_not_be_restored_is_named(run_rollout):
    plans = {"gw": planned_gateway("a"), "a": planned_vllm()}
    missing = FileNotFoundError(2, "No such file or directory", "/venv/bin/pyinfra")
    fleet = Fleet(plans, raises={"drain": missing, "restore": missing})
    status, out, cases = run_rollout(fleet)
    assert status == 1
    assert cases["a"].find("failure").get("message") == (
        "failed: step 'drain at gw' failed: FileNotFoundError: [Errno 2] No such file or directory: "
        "'/venv/bin/pyinfra'; left drained at gw"
    )
    assert "Traceback" not in out


def test_a_gateway_that_does_not_see_a_host_up_leaves_it_to_its_health_checks(run_rollout):
    plans = {"gw": planned_gateway("a"), "a": planned_vllm(), "b": planned_vllm()}
    fleet = Fleet(plans)

    def ready_fails(cmd, **kwargs):
        answer = fleet(cmd, **kwargs)
        return done(cmd, rc=1, stderr="gateway gw: a is DOWN after 30s, not UP") if "ready" in cmd else answer

    ready_fails.plan_inventory = fleet.plan_inventory
    status, out, cases = run_rollout(ready_fails)
    assert status == 1
    assert fleet.gateway_calls("restore") == [["gw:a"]]
    assert "did not come back into rotation at the gateways: gw: gateway gw: a is DOWN" in out
    assert "left drained" not in out


def test_planning_that_fails_still_writes_a_failed_report(run_rollout):
    fleet = Fleet({}, raises={"plan": PyinfraError("the inventory says no")})
    status, out, cases = run_rollout(fleet)
    assert status == 1
    assert cases["plan"].find("failure").get("message") == "step 'plan' failed: PyinfraError: the inventory says no"


# 3. An unforeseen failure names its step and the host's own error lines.

# pyinfra 3.10's log (stderr) as its CLI prints it with -y: a header per operation, each host's
# lines under it ("[host] ..."; a failed command's output printed for it, then its Error line);
# it ends "No hosts remaining!" without --json results when no host is left. Written by hand
# in the form of pyinfra/api/util.py (log_operation_start, print_host_combined_output,
# log_error_or_warning) and pyinfra_cli/log.py.
UNFORESEEN = """--> Loading config...
--> Loading inventory...
--> Connecting to hosts...
    [gpu-1]  Connected
    [gpu-22] Connected
--> Preparing operation files...
--> Skipping change detection
--> Beginning operation run...
--> Starting operation: Pre-flight checks | Probe the host$
    [gpu-1]  Success
    [gpu-22] Success
--> Starting operation: Docker engine | Install Docker engine$
    [gpu-1]  No changes
    [gpu-22] Reading package lists...
    [gpu-22] Building dependency tree...
    [gpu-22] E: Unable to locate package docker-ce
    [gpu-22] Error: executed 0 commands
--> Starting operation: vLLM service | Download the weights of m before the restart (up to 600 s)$
    [gpu-1]  + hf download m --token hf_abcdefghijklmnopqrstuvwxyz0123 --api-key sk-live-1234
    [gpu-1]  > Authorization: Bearer sk-live-1234
    [gpu-1]  HF_TOKEN=hf_abcdefghijklmnopqrstuvwxyz0123 vllm serve --hf-token=tok-5678 m
    [gpu-1]  401 Client Error: Unauthorized for url: https://huggingface.co/api/models/m
    [gpu-1]  Error: executed 0 commands

--> pyinfra error: No hosts remaining!
""".replace("$\n", " \n")  # an operation header ends in a space where its arguments would go


def test_an_unforeseen_failure_names_the_step_and_the_hosts_own_error_lines():
    got = classify(["gpu-1", "gpu-22"], {"operations": [], "failed_hosts": ["gpu-1", "gpu-22"]}, UNFORESEEN)
    assert got["gpu-22"] == (
        FAILED,
        "step 'Docker engine | Install Docker engine' failed: E: Unable to locate package docker-ce",
    )
    state, reason = got["gpu-1"]
    assert state == FAILED
    assert reason.startswith(
        "step 'vLLM service | Download the weights of m before the restart (up to 600 s)' failed: "
    )
    assert "401 Client Error: Unauthorized" in reason
    assert "No hosts remaining" not in reason and "pyinfra error" not in reason and "executed 0" not in reason


def test_the_step_is_pyinfras_own_name_for_it_when_its_results_came():
    report = {
        "operations": [
            op("Pre-flight checks | Probe the host", success=["gpu-22"]),
            op("Docker engine | Install Docker engine (docker-ce)", error=["gpu-22"]),
            op("vLLM service | Activate the new release", error=["gpu-22"]),
        ],
        "failed_hosts": ["gpu-22"],
    }
    assert classify(["gpu-22"], report, UNFORESEEN)["gpu-22"] == (
        FAILED,
        "step 'Docker engine | Install Docker engine (docker-ce)' failed: E: Unable to locate package docker-ce",
    )


def test_no_secret_a_failing_command_printed_reaches_the_reason():
    log = "".join(line for line in UNFORESEEN.splitlines(keepends=True) if "401 Client Error" not in line)
    _, reason = classify(["gpu-1"], {"operations": [], "failed_hosts": ["gpu-1"]}, log)["gpu-1"]
    # No error in its words: the host's last lines, its command lines among them.
    assert "hf download m" in reason and "vllm serve" in reason
    for secret in ("sk-live-1234", "hf_abcdefghijklmnopqrstuvwxyz0123", "tok-5678"):
        assert secret not in reason
    assert "Bearer <secret>" in reason and "--hf-token=<secret>" in reason and "--api-key <secret>" in reason


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        ("vllm serve m --api-key sk-1 --port 8000", "vllm serve m --api-key <secret> --port 8000"),
        (
            "['vllm', '--api-key', 'sk-1', '--hf-token=hf_2']",
            "['vllm', '--api-key', '<secret>', '--hf-token=<secret>']",
        ),
        ("curl -H 'Authorization: Bearer sk-1' http://h", "curl -H 'Authorization: Bearer <secret>' http://h"),
        ("VLLM_API_KEY=sk-1 GATEWAY_API_KEY=sk-2 x", "VLLM_API_KEY=<secret> GATEWAY_API_KEY=<secret> x"),
        ("port 8000 is already taken by nginx", "port 8000 is already taken by nginx"),
        ("vllm serve m --api_key=sk-1 --hf-tok hf_3", "vllm serve m --api_key=<secret> --hf-tok <secret>"),
    ],
)
def test_redact_hides_keys_in_command_lines(line, shown):
    assert pyinfra_log.redact(line) == shown


def test_a_line_of_another_host_that_names_this_one_is_not_its_own():
    log = UNFORESEEN.replace("[gpu-22] E: Unable", "[gpu-1]  gpu-22 says E: Unable")
    _, reason = classify(["gpu-1", "gpu-22"], {"operations": [], "failed_hosts": ["gpu-22"]}, log)["gpu-22"]
    own = "Reading package lists...; Building dependency tree..."
    assert reason == f"step 'Docker engine | Install Docker engine' failed: {own}"


def test_a_failure_before_any_operation_shows_pyinfras_error_not_its_count_of_hosts():
    log = """--> Preparing operation files...
--> An exception occurred in: deploy.py:

Traceback (most recent call last):
  File "deploy.py", line 3
ValueError: gpu_name is not a string
--> pyinfra error: No hosts remaining!
"""
    assert classify(["gpu-1"], {"operations": [], "failed_hosts": ["gpu-1"]}, log)["gpu-1"] == (
        FAILED,
        "failed: An exception occurred in: deploy.py:; ValueError: gpu_name is not a string",
    )


def test_at_most_three_lines_of_a_host_are_kept():
    lines = "".join(f"    [gpu-1] error {i}\n" for i in range(10))
    log = f"--> Starting operation: Step \n{lines}    [gpu-1] Error: executed 0 commands\n"
    _, reason = classify(["gpu-1"], {"operations": [], "failed_hosts": ["gpu-1"]}, log)["gpu-1"]
    assert reason == "step 'Step' failed: error 7; error 8; error 9"


def test_redact_hides_the_inventorys_own_secrets_whole_wherever_they_appear(monkeypatch):
    """A key may hold , " ' which end the patterns: the values group_data/all.py reads go whole."""
    key = "Zx9,Q7mN\"p'1-abcdefgh"
    monkeypatch.setenv("VLLM_API_KEY", key)
    shown = pyinfra_log.redact(f"curl: (22) 401 for key {key} (VLLM_API_KEY={key})")
    assert "Zx9" not in shown and "Q7mN" not in shown and "abcdefgh" not in shown


def _environment_secrets() -> set[str]:
    """The environment variables group_data/all.py reads the inventory's secrets from."""
    source = (Path(__file__).parents[2] / "group_data" / "all.py").read_text()
    return set(re.findall(r'os\.environ\.get\("(\w+)"\)', source))


def test_redaction_knows_every_secret_the_inventory_reads_from_the_environment():
    assert _environment_secrets() == set(pyinfra_log.SECRET_ENVIRONMENT)


@pytest.mark.parametrize("name", sorted(_environment_secrets()))
def test_redact_hides_each_secret_of_the_environment_whole(monkeypatch, name):
    """No pattern catches these (no key=, no known prefix, too short for looks_secret): only the
    value read back from the environment hides them. Eight characters is enough to be hidden."""
    for other in _environment_secrets():
        monkeypatch.delenv(other, raising=False)
    monkeypatch.setenv(name, "q,7'x\"9z")
    assert pyinfra_log.redact("refused q,7'x\"9z at login") == "refused <secret> at login"


def test_a_short_environment_value_is_left_alone_it_would_hide_common_words(monkeypatch):
    monkeypatch.setenv("VLLM_API_KEY", "q,7'x\"9")  # seven characters
    assert pyinfra_log.redact("refused q,7'x\"9 at login") == "refused q,7'x\"9 at login"
