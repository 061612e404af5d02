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
KEY = "k" * 16 + "Zq7wPm2x"


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


SECRET_LINE = (
    'all:\n  children:\n    single_gpu:\n      hosts:\n        h1:\n          vllm_api_key: "hunter2-never-shown\n'
)
STRICT_CASES = {
    "duplicate-key": ("all:\n  children:\n    single_gpu:\n      hosts:\n        h1: {}\n        h1: {}\n", "line 6"),
    "duplicate-group": ("all:\n  children:\n    single_gpu: {}\n    single_gpu: {}\n", "appears twice"),
    "alias": ("all:\n  vars: &v {vllm_port: 8001}\n  children:\n    single_gpu: {vars: *v}\n", "aliases"),
    "merge-key": ("all:\n  vars: &v {a: 1}\n  children:\n    g: {vars: {<<: *v}}\n", "aliases"),
    "self-containing": ("all: &a\n  children:\n    g: *a\n", "aliases"),
    "alias-bomb": ("a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n" * 1, "aliases"),
    "python-tag": ("all: !!python/object/apply:os.system ['id']\n", "cannot read it as YAML"),
    "top-level-list": ("- a\n- b\n", "a mapping of group names"),
    "deep-nesting": ("all: " + "[" * 5000 + "]" * 5000 + "\n", "cannot read it as YAML"),
    "syntax-error-with-a-secret": (SECRET_LINE, "cannot read it as YAML: line 7"),
}


@pytest.mark.parametrize("case", sorted(STRICT_CASES))
def test_a_yaml_inventory_is_read_strictly_and_refused_in_one_line(tmp_path, case):
    text, expected = STRICT_CASES[case]
    path = write(tmp_path, text)
    with pytest.raises(AnsibleInventoryError) as refused:
        load(path)
    assert expected in str(refused.value) and "\n" not in str(refused.value)
    assert "hunter2" not in str(refused.value)


def test_the_commands_refuse_a_bad_yaml_inventory_in_one_line_without_its_secret(tmp_path):
    path = write(tmp_path, SECRET_LINE)
    for command in ("plan", "hosts"):
        done = cli(command, path)
        assert done.returncode == 2 and done.stdout == ""
        assert done.stderr.strip().count("\n") == 0 and "cannot read it as YAML: line 7" in done.stderr
        assert "hunter2" not in done.stderr and "Traceback" not in done.stderr
