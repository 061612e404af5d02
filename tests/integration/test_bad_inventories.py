"""Bad inventories: each refused by `plan` and by the real deploy, with host, key, value
and what is allowed, before any operation runs on the host.

The deploy runs for real (-y) against a sandbox host over SSH, never against the machine
running the tests (on a runner with a GPU, a case meant to be refused could otherwise size,
fit and install a driver stack on the runner itself): a refused inventory must leave no
operation executed. The single-host cases of tests/bad_inventories.py are the hosts of one
inventory, each named by its case and connected to the sandbox host (validation names every bad
host, so one `plan` and one deploy answer for all of them); the sizing cases and the rules
across hosts are one inventory each.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SESSION_FLEET

from tests.bad_inventories import CASES, FLEET_CASES, NAME_CASES, expected_line, fleet_inventory, single_host_inventory

pytestmark = [pytest.mark.sandbox, pytest.mark.xdist_group(SESSION_FLEET)]

REPO = Path(__file__).resolve().parents[2]
PYINFRA = str(Path(sys.executable).parent / "pyinfra")
# Refused by sizing: plan says so without the host, the deploy's pre-flight (model_fits) with it.
GPU = {"accelerator": "nvidia", "gpu_count": 1, "gpu_memory_gib": 24}
SIZING_CASES = [
    (
        "model-cannot-fit",
        {**GPU, "vllm_model": "Qwen/Qwen2.5-32B-Instruct"},
        "the model does not fit: Qwen/Qwen2.5-32B-Instruct on 1 x 24 GiB",
    ),
    (
        "tp-above-gpu-count",
        {**GPU, "vllm_tensor_parallel_size": 4},
        "vllm_tensor_parallel_size = 4 is above the host's 1 GPU(s)",
    ),
    (
        "window-above-context",
        {**GPU, "vllm_model": "Qwen/Qwen2.5-7B-Instruct", "vllm_max_model_len": 65536},
        "vllm_max_model_len = 65536 is above Qwen/Qwen2.5-7B-Instruct's context of 32768 tokens",
    ),
    (
        "awq-on-cpu",
        {"accelerator": "cpu", "vllm_model": "TheBloke/deepseek-coder-6.7B-instruct-AWQ"},
        "does not run on vLLM's CPU backend",
    ),
]


@pytest.fixture
def target(fleet) -> dict:
    """The sandbox host the cases deploy to, with its SSH connection."""
    return {"name": fleet.hosts[0]["name"], "connection": connection_to(fleet)}


@pytest.fixture
def inventory(tmp_path, make_archive, target):
    archive = make_archive(tmp_path, "a/b:1")

    def write(data: dict) -> str:
        data = {k: (archive if v == "ARCHIVE" else v) for k, v in data.items()}
        path = tmp_path / "inventory.py"
        # A GPU the host claims but lacks keeps pre-flight refusing, whatever the case.
        data = {**target["connection"], "accelerator": "nvidia", **data}
        path.write_text(f"single_gpu = [({target['name']!r}, {data!r})]\n")
        return str(path)

    return write


def plan(path: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vllm_fleet", "plan", path], cwd=REPO, capture_output=True, text=True)


def deploy(path: str) -> subprocess.CompletedProcess:
    # At most 4 SSH connections at once: the table's hosts are one sandbox host's sshd, which drops
    # unauthenticated connections beyond its MaxStartups.
    return subprocess.run(
        [PYINFRA, "-y", "--parallel", "4", path, "deploy.py"], cwd=REPO, capture_output=True, text=True, timeout=600
    )


@pytest.fixture(scope="module")
def table_runs(fleet, tmp_path_factory, make_archive):
    """`plan` and the real deploy, once, on the inventory of every single-host case."""
    tmp = tmp_path_factory.mktemp("bad-table")
    archive = make_archive(tmp, "a/b:1")
    path = tmp / "inventory.py"
    path.write_text(single_host_inventory(connection_to(fleet), archive))
    return plan(str(path)), deploy(str(path)), archive


def connection_to(fleet) -> dict:
    host = fleet.hosts[0]
    return {
        "ssh_hostname": "127.0.0.1",
        "ssh_port": host["ssh_port"],
        "ssh_user": "root",
        "ssh_key": fleet.state["ssh_key"],
        "ssh_strict_host_key_checking": "off",
        "ssh_known_hosts_file": "/dev/null",
    }


def test_the_table_is_refused_before_any_operation_and_shows_no_secret(table_runs):
    planned, deployed, _ = table_runs
    out = deployed.stdout + deployed.stderr
    assert planned.returncode == 1, planned.stdout[-3000:] + planned.stderr[-3000:]
    assert deployed.returncode != 0
    assert "invalid settings, nothing was changed on any host" in out, out[-3000:]
    assert "Traceback" not in out and "--> Starting operation" not in out
    assert "hunter2" not in planned.stdout + planned.stderr + out, "a secret was echoed"
    refused = [line for line in out.splitlines() if line.strip().startswith("host ")]
    assert len(refused) == len(CASES) + len(NAME_CASES), out[-3000:]


@pytest.mark.parametrize("case_id, expected", [(c[0], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_schema_refusals(table_runs, case_id, expected):
    planned, deployed, archive = table_runs
    expected = expected_line(case_id, expected, archive)
    mine = f"host {case_id}: "
    [in_plan] = [line for line in planned.stdout.splitlines() if line.strip().startswith(f"REFUSED: {mine}")]
    [in_deploy] = [line for line in (deployed.stdout + deployed.stderr).splitlines() if line.strip().startswith(mine)]
    assert expected in in_plan and expected in in_deploy, (in_plan, in_deploy)


@pytest.mark.parametrize("case_id, groups, expected", FLEET_CASES, ids=[c[0] for c in FLEET_CASES])
def test_rules_across_hosts(fleet, tmp_path, case_id, groups, expected):
    path = tmp_path / "inventory.py"
    path.write_text(fleet_inventory(groups, connection_to(fleet)))
    planned, deployed = plan(str(path)), deploy(str(path))
    out = deployed.stdout + deployed.stderr
    assert planned.returncode == 1 and expected in planned.stdout, planned.stdout[-3000:]
    assert deployed.returncode != 0 and expected in out and "--> Starting operation" not in out
    assert "hunter2" not in planned.stdout + planned.stderr + out


@pytest.mark.parametrize("data, expected", [c[1:] for c in SIZING_CASES], ids=[c[0] for c in SIZING_CASES])
def test_sizing_refusals(inventory, data, expected):
    path = inventory(data)

    planned = plan(path)
    assert planned.returncode == 1
    assert "REFUSED:" in planned.stdout and expected in planned.stdout

    deployed = deploy(path)
    out = deployed.stdout + deployed.stderr
    assert deployed.returncode != 0
    refused = [line for line in out.splitlines() if "pre-flight refused: model_fits: " in line]
    assert refused and expected in refused[0], out[-3000:]
    # The only operation the host got is the refusal itself.
    started = [line for line in out.splitlines() if line.startswith("--> Starting operation")]
    assert started == ["--> Starting operation: Pre-flight checks | Refuse the host: pre-flight checks failed "]
