"""The rollout's own logic: batches, host selection, reading pyinfra's results, the report."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from vllm_fleet import rollout
from vllm_fleet.rollout import CHANGED, FAILED, NOT_STARTED, ROLLED_BACK, UNCHANGED, UNREACHABLE

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
    got = rollout.split_batches(HOSTS, canary, rollout.parse_batch(batch))
    assert got == [[f"gpu-{i}" for i in b] for b in expected]


@pytest.mark.parametrize("bad", ["0", "-1", "101%", "half", "2.5", ""])
def test_bad_batch_sizes_are_refused(bad):
    with pytest.raises(ValueError, match="a number of hosts such as 2, or a percentage"):
        rollout.parse_batch(bad)


def test_limit_takes_names_and_globs_in_inventory_order():
    assert rollout.select(HOSTS, ["gpu-7", "gpu-[12]"]) == ["gpu-1", "gpu-2", "gpu-7"]
    assert rollout.select(HOSTS, []) == HOSTS
    assert rollout.select(HOSTS, ["web-*"]) == []


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
    got = rollout.classify(["a", "b", "c", "d", "e"], REPORT, LOG)
    assert got["a"] == (CHANGED, "")
    assert got["b"] == (UNCHANGED, "")
    assert got["c"] == (ROLLED_BACK, "c ROLLED BACK to release 20261121-9, which serves; release 20261122-1 is kept")
    assert got["d"] == (
        FAILED,
        "step 'Pre-flight checks | Refuse the host: pre-flight checks failed' failed; stopped: port: port 8000 is "
        "already taken by nginx",
    )
    assert got["e"] == (UNREACHABLE, "Could not connect ([Errno None] Unable to connect to port 2225 on 127.0.0.1)")


def test_outcomes_when_every_host_failed_and_pyinfra_gave_no_results():
    # pyinfra ends "No hosts remaining!" without its --json results when no host is left.
    log = LOG + "--> pyinfra error: No hosts remaining!\n"
    got = rollout.classify(["c", "d", "e"], {"operations": [], "failed_hosts": ["c", "d", "e"]}, log)
    assert got["c"][0] == ROLLED_BACK
    assert got["d"] == (
        FAILED,
        "failed: --> pyinfra error: No hosts remaining!; stopped: port: port 8000 is already taken by nginx",
    )
    assert got["e"][0] == UNREACHABLE


def finished(states: dict[str, str], stopped: str = "") -> rollout.Rollout:
    done = rollout.Rollout("inv.py", [["a"], ["b", "c"], ["d"]], ["gw"], 60, 0, say=lambda _: None)
    for name, state in states.items():
        done.results[name].state = state
        done.results[name].reason = f"why {name}" if state not in (CHANGED, UNCHANGED, NOT_STARTED) else ""
    done.stopped = stopped
    return done


def test_junit_names_every_host_and_how_it_ended():
    done = finished({"a": CHANGED, "b": ROLLED_BACK, "c": UNREACHABLE}, stopped="too many failures")
    suite = ET.fromstring(rollout.junit(done)).find("testsuite")
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
    lines = rollout.table(finished({"a": CHANGED, "b": ROLLED_BACK})).splitlines()
    assert lines[0].split() == ["host", "batch", "state", "reason"]
    assert lines[2].split() == ["b", "2", "rolled", "back", "why", "b"]
    assert lines[4].split() == ["d", "3", "not", "started"]
