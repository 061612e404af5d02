"""The local sandbox: Debian 12 containers with systemd and sshd (make sandbox-up).

Hosts are read from sandbox/.state/hosts.json, written by the sandbox tool.
They deploy the single_gpu profile on the CPU. With the real engine, the first host gets the
image as an air-gapped host would, through vllm_image_archive, and the others pull it by digest
from the sandbox's own registry (sandbox/registry.py); the test model (random weights,
vllm-fleet-test-llama-tiny) comes through vllm_model_dir. A sandbox started with
--engine standin serves the stand-in (tests/standin/, not vLLM) instead. They listen on
all interfaces so the runner can reach them through Docker's published ports, which the
schema allows only with an API key: the sandbox generates one in a root-only state file.
"""

import json as _json
import os as _os
from pathlib import Path as _Path

from pyinfra.api.exceptions import PyinfraError as _PyinfraError

_state_dir = _Path(
    _os.environ.get("VLLM_FLEET_SANDBOX_STATE", _Path(__file__).resolve().parent.parent / "sandbox/.state")
)
_state_file = _state_dir / "hosts.json"
if not _state_file.exists():
    raise _PyinfraError(f"the sandbox is not up ({_state_file} is missing): run `make sandbox-up` first")
_state = _json.loads(_state_file.read_text())

_connection = {
    "ssh_hostname": "127.0.0.1",
    "ssh_user": "root",
    "ssh_key": _state["ssh_key"],
    # Sandbox hosts are rebuilt often and share one image's host keys.
    "ssh_strict_host_key_checking": "off",
    "ssh_known_hosts_file": "/dev/null",
}
_common = {
    **_connection,
    "accelerator": "cpu",
    "vllm_image": _state["vllm_image"],
    "vllm_image_archive": _state["vllm_image_archive"],
    "vllm_bind_address": "0.0.0.0",
    "vllm_api_key": _Path(_state["api_key_file"]).read_text().strip(),
    # The real engine's first start on 2 cores: about 90 s of imports and compilation.
    "vllm_ready_timeout": 600 if _state.get("engine") == "vllm" else 120,
    # The machine running the tests reaches the hosts from the sandbox network's own address;
    # it stands in for a monitoring host in the firewall.
    "vllm_allowed_sources": [_state["runner_address"]],
    # vLLM on 2 shared CPU cores is slow to its first token by any GPU's measure.
    "alert_ttft_p95_seconds": 60.0,
}


if _state.get("engine") != "vllm":
    # The stand-in serves whatever name it is given: there are no weights to download.
    _common["vllm_download_weights"] = False
else:
    _common |= {
        "vllm_model_dir": _state["model_dir"],
        "vllm_kv_cache_gib": _state.get("vllm_kv_cache_gib", 1),
        "vllm_extra_args": _state.get("vllm_extra_args", []),
        # A token-shaped value from a root-only state file, so the secrets checks look for it too.
        "hf_token": _Path(_state["hf_token_file"]).read_text().strip(),
    }


def _at(h: dict) -> dict:
    return {"ssh_port": h["ssh_port"], "fleet_address": h["address"]}


def _image() -> dict:
    """A sandbox of one host gets the image as an archive; the hosts of a larger one pull it from
    the registry, all at once (a 4 GB archive would go to each over SFTP, one operation before
    the pull)."""
    return _state.get("pulled", {})


def _member(rank: int) -> dict:
    """A sandbox started with --cluster: its hosts serve one model together, in their order."""
    if not _state.get("cluster"):
        return {}
    return {"vllm_cluster": _state["cluster"], "vllm_cluster_rank": rank, "vllm_cluster_interface": "eth0"}


single_gpu = [(h["name"], {**_common, **_at(h), **_image(), **_member(i)}) for i, h in enumerate(_state["hosts"])]
# A cluster's leader serves its API; the others serve nothing of their own.
_served = _state["hosts"][:1] if _state.get("cluster") else _state["hosts"]
# Prometheus and Alertmanager watching the others (make sandbox-up MONITORS=1), quick to notice
# for the tests: alerts go to a webhook on the machine running the tests.
monitoring = [
    (
        m["name"],
        {
            **_connection,
            **_at(m),
            "alert_webhook_url": f"http://{_state['runner_address']}:{_state['alert_webhook_port']}/alerts",
            # Mail too, through a relay on the host's loopback where nothing listens (the tests read
            # the webhook): the password, from a root-only state file, is a secret the checks look for.
            "alert_email_to": "oncall@sandbox.test",
            "alert_email_from": "alertmanager@sandbox.test",
            "alert_smtp_smarthost": "127.0.0.1:2525",
            "alert_smtp_username": "alertmanager",
            "alert_smtp_password": _Path(_state["smtp_password_file"]).read_text().strip(),
            **_state["monitoring"],
        },
    )
    for m in _state.get("monitors", [])
]
# HAProxy in front of every sandbox vLLM host (make sandbox-up GATEWAYS=1).
gateway = [
    (g["name"], {**_connection, **_at(g), "gateway_backends": [h["name"] for h in _served]})
    for g in _state.get("gateways", [])
]
