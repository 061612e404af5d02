"""python -m vllm_fleet, run as users run it (a subprocess: pyinfra's CLI patches gevent in)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.seed import SEED_VLLM_ARGS

REPO = Path(__file__).resolve().parents[2]
KEY = "cli-test-key-0123456789"


def vllm_fleet(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vllm_fleet", *args], cwd=REPO, capture_output=True, text=True)


def test_hosts_resolves_profiles_and_redacts_secrets(tmp_path):
    inventory = tmp_path / "inv.py"
    inventory.write_text(
        f"laptop = [('lap-1', {{'ssh_hostname': '10.0.0.5', 'accelerator': 'nvidia'}})]\n"
        f"single_gpu = [('srv-1', {{'vllm_bind_address': '0.0.0.0', 'vllm_api_key': {KEY!r}}})]\n"
    )
    result = vllm_fleet("hosts", str(inventory))
    assert result.returncode == 0, result.stderr
    assert KEY not in result.stdout
    hosts = json.loads(result.stdout)["hosts"]
    assert hosts["lap-1"]["settings"]["vllm_max_model_len"] == 2048
    assert hosts["lap-1"]["connection"]["ssh_hostname"] == "10.0.0.5"
    assert hosts["srv-1"]["settings"]["vllm_api_key"] == "<set>"
    assert hosts["srv-1"]["settings"]["vllm_max_model_len"] == 8192


def test_hosts_refuses_a_bad_inventory_with_one_line_per_host(tmp_path):
    inventory = tmp_path / "inv.py"
    inventory.write_text("single_gpu = [('a', {'vllm_port': 0}), ('b', {'vllm_bind_address': '10.1.1.1'})]\n")
    result = vllm_fleet("hosts", str(inventory))
    assert result.returncode == 2
    assert "host a: vllm_port = 0 is not allowed: an integer from 1 to 65535" in result.stderr
    assert "host b: vllm_bind_address = '10.1.1.1' is not allowed" in result.stderr
    assert "Traceback" not in result.stderr


def test_settings_reference_lists_every_knob():
    from vllm_fleet.settings import KNOBS

    out = vllm_fleet("settings").stdout
    assert all(f"{name}\n" in out for name in KNOBS)


def write(tmp_path, text: str) -> str:
    path = tmp_path / "inv.py"
    path.write_text(text)
    return str(path)


def test_plan_reproduces_the_seed_laptop_command_for_an_rtx_4060_with_no_model(tmp_path):
    inventory = write(
        tmp_path,
        "laptop = [('lap', {'gpu_name': 'NVIDIA GeForce RTX 4060 Laptop GPU', 'gpu_count': 1, 'gpu_memory_gib': 8})]\n",
    )
    result = vllm_fleet("plan", inventory, "--format", "json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)["hosts"]["lap"]
    assert plan["vllm_args"] == SEED_VLLM_ARGS
    assert (plan["phase"], plan["accelerator"], plan["serving_method"]) == ("laptop", "nvidia", "docker")
    container = " ".join(plan["container_args"])
    for flag in (
        "--gpus all",
        "--ipc=host",
        "--shm-size=4g",
        "-p 127.0.0.1:8000:8000",
        "/var/lib/vllm-fleet/huggingface:/root/.cache/huggingface",
    ):
        assert flag in container
    assert plan["settings"]["vllm_model"] == {"value": "TheBloke/deepseek-coder-6.7B-instruct-AWQ", "source": "sizing"}
    assert plan["settings"]["vllm_max_model_len"] == {"value": 2048, "source": "group laptop"}
    assert plan["settings"]["gpu_memory_gib"]["source"] == "host"
    assert plan["memory"]["fits"] and plan["memory"]["gpus"]["source"] == "host data"
    assert plan["refused"] is None
    assert any("KV cache holds 2.0 sequences of 2048 tokens" in w for w in plan["warnings"])


def test_plan_table_shows_sources_arithmetic_and_warnings(tmp_path):
    inventory = write(
        tmp_path, "laptop = [('lap', {'gpu_name': 'NVIDIA GeForce RTX 4060', 'gpu_count': 1, 'gpu_memory_gib': 8})]\n"
    )
    out = vllm_fleet("plan", inventory).stdout
    assert "vllm serve --model TheBloke/deepseek-coder-6.7B-instruct-AWQ --quantization awq" in out
    assert "memory:    5.75 GiB of 6.8 GiB per GPU" in out
    assert "warning:   KV cache holds" in out


def test_plan_one_host_and_exit_status(tmp_path):
    inventory = write(
        tmp_path,
        "single_gpu = [('ok', {'gpu_count': 1, 'gpu_memory_gib': 24}), "
        "('big', {'gpu_count': 1, 'gpu_memory_gib': 24, 'vllm_model': 'Qwen/Qwen2.5-32B-Instruct'})]\n",
    )
    both = vllm_fleet("plan", inventory, "--format", "json")
    assert both.returncode == 1
    hosts = json.loads(both.stdout)["hosts"]
    assert hosts["ok"]["refused"] is None and "does not fit" in hosts["big"]["refused"]
    one = vllm_fleet("plan", inventory, "--host", "ok", "--format", "json")
    assert one.returncode == 0 and list(json.loads(one.stdout)["hosts"]) == ["ok"]
    missing = vllm_fleet("plan", inventory, "--host", "nope")
    assert missing.returncode == 2 and "no host 'nope'" in missing.stderr


def test_plan_without_gpu_details_says_what_it_assumed(tmp_path):
    inventory = write(tmp_path, "enterprise = [('e1', {'vllm_api_key': 'k' * 12 + 'Zq7wPm2x'})]\n")
    plan = json.loads(vllm_fleet("plan", inventory, "--format", "json").stdout)["hosts"]["e1"]
    assert plan["warnings"][0].startswith("accelerator auto and no gpu_name: assumed nvidia")
    assert any("no GPU details for this host: sized for 2 x 79.6 GiB" in w for w in plan["warnings"])
    assert plan["settings"]["vllm_tensor_parallel_size"] == {"value": 2, "source": "sizing"}


def test_the_settings_reference_page_is_the_one_the_model_generates():
    from vllm_fleet.settings import reference_markdown

    page = (REPO / "docs" / "settings-reference.md").read_text()
    assert page == reference_markdown() + "\n", "regenerate it: vllm-fleet settings --format markdown"


def test_plan_with_facts_plans_an_unreachable_host_from_its_data_and_says_so(tmp_path):
    import socket

    with socket.socket() as closed:  # a port nothing listens on: the connection is refused at once
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    inventory = tmp_path / "inventory.py"
    inventory.write_text(
        f'single_gpu = [("gpu-01", {{"ssh_hostname": "127.0.0.1", "ssh_port": {port}, "gpu_name": "NVIDIA L4"}})]\n'
    )
    done = subprocess.run(
        [sys.executable, "-m", "vllm_fleet", "plan", str(inventory), "--facts", "--format", "json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)["hosts"]["gpu-01"]
    assert plan["warnings"][0] == "facts could not be read from this host (unreachable?): planned from host data"
    assert plan["accelerator"] == "nvidia" and plan["machine"] == ""


def test_each_fact_is_read_under_a_time_limit(monkeypatch):
    from vllm_fleet.facts import host as host_facts

    class Host:
        name, connected, inventory = "gpu-01", True, None

        def __init__(self):
            self.limits = []

        def get_fact(self, fact, _timeout=None):
            self.limits.append((fact.__name__, _timeout))
            return ["nvidia"] if fact.__name__ == "GpuVendors" else None

        def connect(self, show_errors=True):
            self.limits.append(("connect", show_errors))

        def disconnect(self):
            pass

    class Pool:
        def spawn(self, function, **kwargs):
            return host_facts.gevent.spawn(function, **kwargs)

    class State:
        pool = Pool()

        def __init__(self, inventory, config):
            assert config.CONNECT_TIMEOUT == host_facts.CONNECT_TIMEOUT

    host = Host()
    monkeypatch.setattr(host_facts, "State", State)
    facts = host_facts.read_over_ssh([host], {"gpu-01": "auto"})
    assert facts["gpu-01"].vendors == ["nvidia"]
    assert host.limits[0] == ("connect", False)
    assert host.limits[1:] and all(limit == host_facts.FACT_TIMEOUT for _, limit in host.limits[1:])


def test_the_text_reference_says_what_the_documentation_page_says():
    """`vllm-fleet settings` (text) and the page hold the same facts for each knob, in the same order;
    the page adds a sentence to each secret."""
    from vllm_fleet.settings import reference

    page = (REPO / "docs" / "settings-reference.md").read_text()
    blocks = []
    for section in page.split("\n## ")[1:]:
        lines = section.strip().splitlines()
        name = lines[0].strip("`")
        fields = dict(line[2:].split(": ", 1) for line in lines if line.startswith("- "))
        description = lines[-1].removesuffix(" Secret: never shown, read from the environment.")
        type_, default, allowed = fields["type"].strip("`"), fields["default"].strip("`"), fields["allowed"]
        blocks.append(f"{name}\n    type: {type_}\n    default: {default}\n    {description}\n    allowed: {allowed}\n")
    assert len(blocks) > 50
    assert reference() == "\n".join(blocks)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("single_gpu = [('h1', {}), ('h1', {'vllm_port': 8001})]\n", "group single_gpu lists host h1 twice"),
        ("single_gpu = [('h1', {'vllm_api_key': 'hunter2-secret-xyz'}\n", "SyntaxError at line 1"),
        ("import os\nos.environ['NO_SUCH_VARIABLE_HERE']\n", "KeyError: 'NO_SUCH_VARIABLE_HERE'"),
    ],
    ids=["host-twice", "syntax-error", "exception"],
)
def test_an_inventory_that_does_not_load_is_refused_in_one_line(tmp_path, text, expected):
    inventory = write(tmp_path, text)
    for command in ("plan", "hosts", "deploy"):
        done = vllm_fleet(command, inventory)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert done.stderr.startswith("vllm_fleet: ") and expected in done.stderr
        assert done.stderr.strip().count("\n") == 0 and "hunter2" not in done.stderr


def test_every_output_hides_the_inventorys_secrets_wherever_they_are(tmp_path):
    """A secret put where no rule looks (an unknown key's data is refused; a webhook URL's
    credentials and a host's own secrets in any other value) never reaches plan or hosts."""
    key = "Zq7wPm2x-hunter2-key"
    inventory = write(
        tmp_path,
        f"enterprise = [('e1', {{'vllm_api_key': {key!r}, 'fleet_address': '10.0.0.1'}})]\n"
        "monitoring = [('m1', {'fleet_address': '10.0.0.9', "
        "'alert_webhook_url': 'https://ops:hunter2pw@alerts.example.com/hook'})]\n",
    )
    for args in (("plan", inventory), ("plan", inventory, "--format", "json"), ("hosts", inventory)):
        done = vllm_fleet(*args)
        assert "hunter2" not in done.stdout + done.stderr, args
