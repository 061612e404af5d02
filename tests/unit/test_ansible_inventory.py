"""Ansible YAML inventories: read with Ansible's precedence, planned like pyinfra's, validated
the same way, and accepted by pyinfra itself through inventories/ansible.py."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vllm_fleet.ansible_inventory import PATH_VARIABLE, AnsibleInventoryError, load

REPO = Path(__file__).resolve().parents[2]
KEY = "k" * 24


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "hosts.yml"
    path.write_text(text)
    return str(path)


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VLLM_API_KEY": KEY}
    return subprocess.run(
        [sys.executable, "-m", "vllm_fleet", *args], cwd=REPO, capture_output=True, text=True, env=env, timeout=120
    )


def test_variables_merge_as_ansible_merges_them(tmp_path):
    groups = load(
        write(
            tmp_path,
            """
all:
  vars: {vllm_max_num_seqs: 8, vllm_port: 8001, ansible_python_interpreter: /usr/bin/python3}
  children:
    enterprise:
      vars: {vllm_port: 8002, gpu_count: 2}
      children:
        rack_b:
          vars: {vllm_port: 8003}
          hosts:
            gpu-b-1: {ansible_host: 10.0.0.7, ansible_user: ops, ansible_port: 2222, ansible_become: true}
            gpu-b-2: {vllm_port: 9000}
""",
        )
    )
    hosts = dict(groups["enterprise"][0])
    assert [name for name, _ in groups["rack_b"][0]] == ["gpu-b-1", "gpu-b-2"] and set(hosts) == {"gpu-b-1", "gpu-b-2"}
    assert hosts["gpu-b-1"] == {
        "vllm_max_num_seqs": 8,
        "vllm_port": 8003,
        "gpu_count": 2,
        "ssh_hostname": "10.0.0.7",
        "ssh_user": "ops",
        "ssh_port": 2222,
        "_sudo": True,
    }
    assert hosts["gpu-b-2"]["vllm_port"] == 9000


@pytest.mark.parametrize(
    "text, message",
    [
        ("- a\n- b\n", "an Ansible inventory is a mapping of group names"),
        (
            "all:\n  children:\n    single_gpu:\n      hosts: [a, b]\n",
            "group all > single_gpu: hosts must be a mapping",
        ),
        (
            "all:\n  children:\n    g:\n      host: {}\n",
            "group all > g: a group is a mapping of hosts, children and vars",
        ),
        ("all:\n  children:\n    g:\n      hosts:\n        h: 3\n", "group all > g: host h: its variables must be"),
        ("all: [\n", "cannot read it as YAML"),
    ],
)
def test_what_is_not_an_ansible_inventory_is_refused_saying_where(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(AnsibleInventoryError, match=message) as caught:
        load(path)
    assert str(caught.value).startswith(path)


def test_the_example_yaml_plans_exactly_as_the_example_python_inventory():
    from_yaml, from_python = (
        cli("plan", "inventories/hosts.yml", "--format", "json"),
        cli("plan", "inventories/prod.py", "--format", "json"),
    )
    assert from_yaml.returncode == from_python.returncode, from_yaml.stderr
    yaml_hosts, python_hosts = json.loads(from_yaml.stdout)["hosts"], json.loads(from_python.stdout)["hosts"]
    assert list(yaml_hosts) == list(python_hosts) and len(yaml_hosts) == 5
    for name, plan in yaml_hosts.items():
        if plan.get("role") == "monitoring":
            assert plan == python_hosts[name], name
            continue
        values = {key: v["value"] for key, v in plan["settings"].items()}
        assert values == {key: v["value"] for key, v in python_hosts[name]["settings"].items()}, name
        assert plan["vllm_args"] == python_hosts[name]["vllm_args"], name


def test_a_bad_setting_in_yaml_is_refused_like_any_other(tmp_path):
    path = write(tmp_path, "all:\n  children:\n    single_gpu:\n      hosts:\n        gpu-01: {vllm_port: 70000}\n")
    planned = cli("plan", path)
    assert planned.returncode == 1
    assert "host gpu-01: vllm_port = 70000 is not allowed: an integer from 1 to 65535" in planned.stdout
    hosts = cli("hosts", path)
    assert hosts.returncode == 2 and "host gpu-01: vllm_port = 70000 is not allowed" in hosts.stderr


def test_pyinfra_reads_it_through_the_shim_inventory():
    env = {**os.environ, PATH_VARIABLE: "inventories/hosts.yml"}
    pyinfra = str(Path(sys.executable).parent / "pyinfra")
    done = subprocess.run(
        [pyinfra, "inventories/ansible.py", "debug-inventory"], cwd=REPO, capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "gpu-m-01.example.internal" in done.stdout + done.stderr
    assert "--> Groups: enterprise, amd_hosts, ansible" in done.stdout + done.stderr


def test_vllm_fleet_deploy_runs_pyinfra_on_the_yaml_inventory(tmp_path):
    # A fake host (pyinfra's @fake connector): nothing is reached; deploy.py refuses it while preparing.
    path = write(
        tmp_path, "all:\n  children:\n    single_gpu:\n      hosts:\n        '@fake/gpu-01': {vllm_port: 70000}\n"
    )
    deployed = cli("deploy", path, "--dry")
    output = deployed.stdout + deployed.stderr
    assert deployed.returncode == 1, output
    assert "host @fake/gpu-01: vllm_port = 70000 is not allowed: an integer from 1 to 65535" in output
