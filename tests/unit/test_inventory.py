"""Inventory files loaded in the process that asks (the verify suite's workers, the rollout,
`plan`), with pyinfra's own loader and without its CLI's gevent patches; and `vllm-fleet hosts`,
which prints each secret only as set."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from vllm_fleet.repository import REPO
from vllm_fleet.settings import public_values
from vllm_fleet.settings.secrets import SET_ON_THE_HOST

KEY = "k" * 16 + "Zq7wPm2x"

INVENTORY = f"""
single_gpu = [
    ("gpu-01", {{"ssh_hostname": "10.0.0.7", "ssh_port": 2222, "ssh_user": "ops", "accelerator": "nvidia",
                "vllm_bind_address": "0.0.0.0", "vllm_api_key": "{KEY}"}}),
]
"""


def test_loading_an_inventory_leaves_the_process_unpatched(tmp_path):
    inventory = tmp_path / "inventory.py"
    inventory.write_text(INVENTORY)
    script = (
        "import gevent.monkey, pathlib\n"
        "from vllm_fleet.inventory import load_inventory\n"
        f"hosts = [h.name for h in load_inventory({str(inventory)!r}, pathlib.Path('.'))]\n"
        "print(hosts, [m for m in ('socket', 'threading', 'subprocess') if gevent.monkey.is_module_patched(m)])\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "['gpu-01'] []", done.stderr


def test_the_verify_suite_reads_the_inventory_validated_with_its_connection(tmp_path):
    from vllm_fleet.verify.conftest import load_targets

    inventory = tmp_path / "inventory.py"
    inventory.write_text(INVENTORY)
    (target,) = load_targets(str(inventory))
    assert target.hostspec == "paramiko://ops@10.0.0.7:2222"
    assert target.inventory_settings.vllm_api_key.get_secret_value() == SET_ON_THE_HOST
    assert target.inventory_settings.hf_token is None
    assert target.fleet == {"gpu-01": target.inventory_settings}


def test_an_inventory_with_a_refused_host_verifies_nothing(tmp_path):
    from vllm_fleet.verify.conftest import load_targets

    inventory = tmp_path / "inventory.py"
    inventory.write_text(INVENTORY.replace(f'"vllm_api_key": "{KEY}"', '"vllm_port": 22'))
    with pytest.raises(pytest.UsageError, match="gpu-01.*vllm_bind_address"):
        load_targets(str(inventory))


def test_a_secret_is_never_printed_only_whether_it_is_set(settings_for):
    key, token = "a" * 12 + "Zq7wPm2x", "hf_" + "b" * 12 + "Zq7wPm2x"
    settings = settings_for("single_gpu", vllm_bind_address="0.0.0.0", vllm_api_key=key, hf_token=token)
    printed = json.dumps(public_values(settings))
    assert key not in printed and token not in printed
    values = json.loads(printed)
    assert values["vllm_api_key"] == values["hf_token"] == "<set>"
    assert values["alert_webhook_token"] is None
