"""An example fleet. Copy it, replace the hosts, and keep secrets out of it:

    export VLLM_API_KEY=... HF_TOKEN=...
    pyinfra inventories/prod.py deploy.py

Each host goes in exactly one phase group; group_data/<phase>.py holds that
profile, host data below overrides it, and vllm_fleet/settings/ defines every
key (python -m vllm_fleet settings lists them).
"""

# A workstation-class server with one 48 GB GPU, serving a team on the LAN.
single_gpu = [
    (
        "gpu-ws-01.example.internal",
        {
            "ssh_user": "deploy",
            "_sudo": True,
            "accelerator": "nvidia",
            "gpu_count": 1,
            "vllm_bind_address": "0.0.0.0",  # requires VLLM_API_KEY in the environment
            "vllm_max_model_len": 16384,
        },
    ),
]

# Multi-GPU hosts behind the gateway: two NVIDIA hosts and one AMD MI300X host.
enterprise = [
    ("gpu-a-01.example.internal", {"accelerator": "nvidia", "gpu_count": 2}),
    ("gpu-a-02.example.internal", {"accelerator": "nvidia", "gpu_count": 2}),
    (
        "gpu-m-01.example.internal",
        {
            "accelerator": "amd",
            "gpu_count": 8,
            "gpu_memory_gib": 192,
            "gpu_name": "AMD Instinct MI300X",
            "vllm_tensor_parallel_size": 8,
            "vllm_model": "Qwen/Qwen2.5-72B-Instruct",
            "vllm_quantization": None,
        },
    ),
]

# Prometheus and Alertmanager for the whole fleet; every host above exports to it, and only to it.
# Alerts go to the team's webhook (a bearer token from ALERT_WEBHOOK_TOKEN, if it wants one).
monitoring = [
    (
        "mon-01.example.internal",
        {
            "fleet_address": "10.20.0.5",  # the hosts' firewalls admit it by address
            "alert_webhook_url": "https://alerts.example.internal/vllm-fleet",
        },
    ),
]
