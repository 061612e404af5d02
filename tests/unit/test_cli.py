"""python -m vllm_fleet, run as users run it (a subprocess: pyinfra's CLI patches gevent in)."""

import json
import subprocess
import sys
from pathlib import Path

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
    from vllm_fleet.settings import SCHEMA

    out = vllm_fleet("settings").stdout
    assert all(f"{name}\n" in out for name in SCHEMA)
