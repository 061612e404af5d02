"""The table of bad inventories: host data that must be refused, and what the refusal says.

Run in-process by tests/unit/test_bad_inventory_table.py and through `plan` and the real
pyinfra deploy by tests/integration/test_bad_inventories.py. Every secret in a case contains
"hunter2", which no output may show.
"""

from __future__ import annotations

from tests.hostile_inventories import HOSTILE_CASES

H = "host TARGET: "  # TARGET: the sandbox host the cases are deployed to

# (case id, host data, expected text). Each host sits in group single_gpu.
SCHEMA_CASES = [
    (
        "unknown-phase",
        {"phase": "cluster"},
        H + "phase = 'cluster' is not allowed: one of laptop, single_gpu, enterprise",
    ),
    (
        "phase-not-its-group",
        {"phase": "laptop"},
        H + "phase = 'laptop' is not allowed: the host must be in exactly one",
    ),
    (
        "unknown-accelerator",
        {"accelerator": "intel"},
        H + "accelerator = 'intel' is not allowed: one of auto, nvidia, amd, cpu",
    ),
    (
        "unknown-method",
        {"serving_method": "podman"},
        H + "serving_method = 'podman' is not allowed: one of docker, nix",
    ),
    (
        "nix-builder-not-in-inventory",
        {"serving_method": "nix", "nix_builder": "builder-9"},
        H + "nix_builder = 'builder-9' is not allowed: the name of a host in this inventory with serving_method",
    ),
    (
        "nix-secret-systemd-would-change",
        {"serving_method": "nix", "vllm_api_key": "hunter2'hunter2hunter2"},
        H + "vllm_api_key = <secret, 22 characters> is not allowed: with serving_method = 'nix', a secret without",
    ),
    ("port-too-high", {"vllm_port": 70000}, H + "vllm_port = 70000 is not allowed: an integer from 1 to 65535"),
    ("port-as-string", {"vllm_port": "8000"}, H + "vllm_port = '8000' is not allowed: an integer from 1 to 65535"),
    ("port-as-bool", {"vllm_port": True}, H + "vllm_port = True is not allowed: an integer from 1 to 65535"),
    (
        "utilization-above-1",
        {"vllm_gpu_memory_utilization": 1.5},
        H + "vllm_gpu_memory_utilization = 1.5 is not allowed: a number greater than 0 and at most 1",
    ),
    ("utilization-zero", {"vllm_gpu_memory_utilization": 0}, H + "vllm_gpu_memory_utilization = 0 is not allowed"),
    (
        "window-too-short",
        {"vllm_max_model_len": 64},
        H + "vllm_max_model_len = 64 is not allowed: an integer from 128 to 1048576 (or None)",
    ),
    ("no-sequences", {"vllm_max_num_seqs": 0}, H + "vllm_max_num_seqs = 0 is not allowed: an integer from 1 to 4096"),
    (
        "tp-zero",
        {"vllm_tensor_parallel_size": 0},
        H + "vllm_tensor_parallel_size = 0 is not allowed: 'auto' or an integer from 1 to 64",
    ),
    (
        "tp-word",
        {"vllm_tensor_parallel_size": "two"},
        H + "vllm_tensor_parallel_size = 'two' is not allowed: 'auto' or an integer",
    ),
    (
        "unknown-quantization",
        {"vllm_quantization": "int3"},
        H + "vllm_quantization = 'int3' is not allowed: one of the pinned vLLM's methods: awq, auto_awq, fp8",
    ),
    (
        "bind-hostname",
        {"vllm_bind_address": "localhost"},
        H + "vllm_bind_address = 'localhost' is not allowed: an IP address",
    ),
    (
        "public-without-key",
        {"vllm_bind_address": "0.0.0.0"},
        H + "vllm_bind_address = '0.0.0.0' is not allowed: a non-loopback address only with vllm_api_key set",
    ),
    (
        "model-with-space",
        {"vllm_model": "org/my model"},
        H + "vllm_model = 'org/my model' is not allowed: 'auto' (sizing chooses), a Hugging Face model id",
    ),
    (
        "image-untagged",
        {"vllm_image": "vllm/vllm-openai"},
        H + "vllm_image = 'vllm/vllm-openai' is not allowed: an image reference pinned",
    ),
    (
        "image-latest",
        {"vllm_image": "vllm/vllm-openai:latest"},
        H + "vllm_image = 'vllm/vllm-openai:latest' is not allowed: an image reference pinned",
    ),
    (
        "archive-missing",
        {"vllm_image": "a/b:1", "vllm_image_archive": "/nonexistent/vllm.tar"},
        H
        + "vllm_image_archive = '/nonexistent/vllm.tar' is not allowed: the path of an existing `docker save` archive",
    ),
    (
        "archive-without-image",
        {"vllm_image_archive": "ARCHIVE"},
        H + "vllm_image_archive = 'ARCHIVE' is not allowed: only with vllm_image set",
    ),
    (
        "archive-holds-other-image",
        {"vllm_image": "a/b:2", "vllm_image_archive": "ARCHIVE"},
        H + "vllm_image_archive = 'ARCHIVE' is not allowed: an archive holding vllm_image 'a/b:2'; it holds ['a/b:1']",
    ),
    (
        "extra-args-string",
        {"vllm_extra_args": "--enforce-eager"},
        H + "vllm_extra_args = '--enforce-eager' is not allowed: a list of strings",
    ),
    (
        "extra-args-owned-port",
        {"vllm_extra_args": ["--port=9000"]},
        H + "vllm_extra_args = ['--port=9000'] is not allowed: extra vLLM arguments other than --port",
    ),
    (
        "extra-args-api-key",
        {"vllm_extra_args": ["--api-key", "hunter2-in-args"]},
        H + "vllm_extra_args = ['--api-key', '<secret>'] is not allowed: extra vLLM arguments other than --api-key",
    ),
    (
        "cache-relative",
        {"hf_cache_dir": "cache"},
        H + "hf_cache_dir = 'cache' is not allowed: an absolute path of letters, digits and . _ - + @",
    ),
    ("docker-from-snap", {"docker_source": "snap"}, H + "docker_source = 'snap' is not allowed: one of distro, docker"),
    (
        "docker-version-distro",
        {"docker_version": "5:27.3.1-1~debian.12~bookworm"},
        H + "docker_version = '5:27.3.1-1~debian.12~bookworm' is not allowed: only with docker_source = 'docker'",
    ),
    (
        "daemon-config-list",
        {"docker_daemon_config": ["a"]},
        H + "docker_daemon_config = ['a'] is not allowed: a mapping of daemon.json keys",
    ),
    ("gpu-count-negative", {"gpu_count": -1}, H + "gpu_count = -1 is not allowed: an integer from 1 to 64 (or None)"),
    (
        "gpu-memory-tiny",
        {"gpu_memory_gib": 0.5},
        H + "gpu_memory_gib = 0.5 is not allowed: a number of GiB from 1 to 1024",
    ),
    (
        "typo-max-model-length",
        {"vllm_max_model_length": 4096},
        H + "vllm_max_model_length = 4096 is not allowed: vllm_max_model_length is not a setting; "
        "did you mean vllm_max_model_len?",
    ),
    (
        "typo-acelerator",
        {"acelerator": "nvidia"},
        H + "acelerator = 'nvidia' is not allowed: acelerator is not a setting; did you mean accelerator?",
    ),
    (
        "typo-hf-cache",
        {"hf_cache": "/data"},
        H + "hf_cache = '/data' is not allowed: hf_cache is not a setting; did you mean hf_cache_dir?",
    ),
    (
        "short-api-key",
        {"vllm_api_key": "hunter2"},
        H + "vllm_api_key = <secret, 7 characters> is not allowed: a string of at least 16 printable ASCII characters",
    ),
    (
        "unknown-preflight-check",
        {"preflight_warn_only": ["prot"]},
        H + "preflight_warn_only = ['prot'] is not allowed: a list of pre-flight check names from os,",
    ),
]

# Cases of "Nothing gets through" (issue 14), by class.
K = "hunter2-" + "k" * 12  # a valid key; every secret of a case contains hunter2, never printed
SECRET_CASES = [
    (
        "typo-of-a-secret-hf-tokens",
        {"hf_tokens": "hf_hunter2abcdefghijklmnop"},
        H + "hf_tokens = <secret, 26 characters> is not allowed: hf_tokens is not a setting; did you mean hf_token?",
    ),
    (
        "typo-of-a-secret-api-keys",
        {"vllm_api_keys": "hunter2hunter2hunter2"},
        H + "vllm_api_keys = <secret, 21 characters> is not allowed: vllm_api_keys is not a setting; did you mean",
    ),
    (
        "token-under-a-wrong-key",
        {"gpu_count": "hf_hunter2abcdefghijklmnop"},
        H + "gpu_count = <secret, 26 characters> is not allowed: an integer from 1 to 64 (or None)",
    ),
    (
        "secret-with-newline",
        {"vllm_api_key": "hunter2hunter2hunter2\nX=1"},
        H + "vllm_api_key = <secret, 25 characters> is not allowed: a value without control characters",
    ),
    (
        "secret-not-ascii",
        {"vllm_api_key": "hunter2hunter2hunter2é"},
        H + "vllm_api_key = <secret, 22 characters> is not allowed: a string of at least 16 printable ASCII",
    ),
    (
        "secret-flag-underscored",
        {"vllm_extra_args": ["--api_key", "hunter2hunter2hunter2"]},
        H + "vllm_extra_args = ['--api_key', '<secret>'] is not allowed: extra vLLM arguments other than --api_key "
        "(vLLM reads it as --api-key), which is set by vllm_api_key",
    ),
    (
        "secret-flag-abbreviated",
        {"vllm_extra_args": ["--hf-tok=hunter2hunter2hunter2"]},
        H + "vllm_extra_args = ['--hf-tok=<secret>'] is not allowed: extra vLLM arguments other than --hf-tok "
        "(vLLM reads it as --hf-token), which is set by hf_token",
    ),
]
QUOTED = 'm", "id": "other'  # the model list is JSON: a name must not end its string
FORMAT_CASES = [
    (
        "unit-breaking-newline-in-args",
        {"vllm_extra_args": ["--enforce-eager\nExecStartPre=/bin/sh -c id"]},
        H + "vllm_extra_args = ['--enforce-eager\\nExecStartPre=/bin/sh -c id'] is not allowed: a value without "
        "control characters",
    ),
    (
        "newline-in-image",
        {"vllm_image": "a/b:1\n"},
        H + "vllm_image = 'a/b:1\\n' is not allowed: a value without control characters",
    ),
    (
        "escape-in-gpu-name",
        {"gpu_name": "RTX\x1b[2J"},
        H + "gpu_name = 'RTX\\x1b[2J' is not allowed: a value without control characters",
    ),
    (
        "served-name-with-quote",
        {"vllm_served_model_name": QUOTED},
        H + f"vllm_served_model_name = {QUOTED!r} is not allowed: a name of letters, digits and",
    ),
    (
        "served-name-with-percent",
        {"vllm_served_model_name": "m%n"},
        H + "vllm_served_model_name = 'm%n' is not allowed: a name of letters, digits and",
    ),
    (
        "ssh-hostname-with-shell",
        {"ssh_hostname": "127.0.0.1;id"},
        H + "ssh_hostname = '127.0.0.1;id' is not allowed: an IP address or a DNS name",
    ),
    (
        "fleet-address-with-space",
        {"fleet_address": "10.0.0.1 backup"},
        H + "fleet_address = '10.0.0.1 backup' is not allowed: an IP address or a DNS name",
    ),
    (
        "shm-size-with-flag",
        {"vllm_container_shm_size": "4g --privileged"},
        H + "vllm_container_shm_size = '4g --privileged' is not allowed: a size as Docker reads it",
    ),
    (
        "version-with-shell",
        {"docker_source": "docker", "docker_version": "5:27.3.1;reboot"},
        H + "docker_version = '5:27.3.1;reboot' is not allowed: a package version as apt",
    ),
    (
        "owned-flag-underscored",
        {"vllm_extra_args": ["--max_model_len=4096"]},
        H + "vllm_extra_args = ['--max_model_len=4096'] is not allowed: extra vLLM arguments other than "
        "--max_model_len (vLLM reads it as --max-model-len), which is set by vllm_max_model_len",
    ),
    (
        "owned-flag-prefix",
        {"vllm_extra_args": ["--served-model", "x"]},
        H + "vllm_extra_args = ['--served-model', 'x'] is not allowed: extra vLLM arguments other than "
        "--served-model (vLLM reads it as --served-model-name), which is set by vllm_served_model_name",
    ),
    (
        "owned-flag-short-alias",
        {"vllm_extra_args": ["-tp", "2"]},
        H + "vllm_extra_args = ['-tp', '2'] is not allowed: extra vLLM arguments other than -tp, which is set by "
        "vllm_tensor_parallel_size",
    ),
    (
        "owned-flag-short-attached",
        {"vllm_extra_args": ["-qawq"]},
        H + "vllm_extra_args = ['-qawq'] is not allowed: extra vLLM arguments other than -qawq (vLLM reads it as "
        "-q), which is set by vllm_quantization",
    ),
    (
        "owned-flag-alias",
        {"vllm_extra_args": ["--device-memory-utilization=0.5"]},
        H + "vllm_extra_args = ['--device-memory-utilization=0.5'] is not allowed: extra vLLM arguments other than "
        "--device-memory-utilization, which is set by vllm_gpu_memory_utilization",
    ),
    (
        "config-file-in-args",
        {"vllm_extra_args": ["--config", "/etc/vllm.yaml"]},
        H + "vllm_extra_args = ['--config', '/etc/vllm.yaml'] is not allowed: extra vLLM arguments other than "
        "--config, which is set by the knobs themselves",
    ),
]
PATH_CASES = [
    ("cache-is-root", {"hf_cache_dir": "/"}, H + "hf_cache_dir = '/' is not allowed: an absolute path of letters"),
    ("cache-is-etc", {"vllm_cache_dir": "/etc"}, H + "vllm_cache_dir = '/etc' is not allowed: an absolute path"),
    ("cache-is-var-lib", {"hf_cache_dir": "/var/lib"}, H + "hf_cache_dir = '/var/lib' is not allowed"),
    ("cache-under-usr", {"hf_cache_dir": "/usr/share/hf"}, H + "hf_cache_dir = '/usr/share/hf' is not allowed"),
    (
        "cache-under-docker",
        {"vllm_cache_dir": "/var/lib/docker/volumes/x"},
        H + "vllm_cache_dir = '/var/lib/docker/volumes/x' is not allowed",
    ),
    ("cache-climbs-out", {"hf_cache_dir": "/srv/../etc"}, H + "hf_cache_dir = '/srv/../etc' is not allowed"),
    (
        "volume-colon",
        {"hf_cache_dir": "/srv/hf:/etc"},
        H + "hf_cache_dir = '/srv/hf:/etc' is not allowed: an absolute path of letters",
    ),
    ("volume-comma", {"vllm_cache_dir": "/srv/a,b"}, H + "vllm_cache_dir = '/srv/a,b' is not allowed"),
    (
        "image-uppercase",
        {"vllm_image": "Vllm/vllm-openai:v1"},
        H + "vllm_image = 'Vllm/vllm-openai:v1' is not allowed: an image reference pinned",
    ),
    (
        "image-with-space",
        {"vllm_image": "vllm/vllm-openai:v1 --privileged"},
        H + "vllm_image = 'vllm/vllm-openai:v1 --privileged' is not allowed: an image reference pinned",
    ),
    (
        "digest-too-short",
        {"vllm_image": "vllm/vllm-openai@sha256:abc123"},
        H + "vllm_image = 'vllm/vllm-openai@sha256:abc123' is not allowed: an image reference pinned",
    ),
    (
        "digest-unknown-algorithm",
        {"vllm_image": "vllm/vllm-openai@md5:" + "0" * 32},
        H + "vllm_image = 'vllm/vllm-openai@md5:" + "0" * 32 + "' is not allowed",
    ),
]
CONTRADICTION_CASES = [
    (
        "image-of-another-accelerator",
        {"accelerator": "amd", "vllm_image": "vllm/vllm-openai:v0.33.0"},
        H + "vllm_image = 'vllm/vllm-openai:v0.33.0' is not allowed: an image for accelerator amd: this one is "
        "vLLM's nvidia image",
    ),
    (
        "nix-with-image-archive",
        {"serving_method": "nix", "vllm_image": "a/b:1", "vllm_image_archive": "ARCHIVE"},
        H + "vllm_image = 'a/b:1' is not allowed: only with serving_method = 'docker'",
    ),
    (
        "builder-on-docker-host",
        {"nix_builder": "builder-1"},
        H + "nix_builder = 'builder-1' is not allowed: only with serving_method = 'nix'",
    ),
]
# Inventory names that would reach HAProxy's configuration or a shell unquoted.
NAME_CASES = [
    ("name-with-space", "gpu 01", "host 'gpu 01': name = 'gpu 01' is not allowed: an inventory name of letters"),
    ("name-with-shell", "gpu;id", "host 'gpu;id': name = 'gpu;id' is not allowed: an inventory name of letters"),
]
# Rules across hosts: (case id, {group: [(host, data)]}, expected text).
GATEWAY = {"fleet_address": "10.9.0.1"}
BACKEND = {"vllm_bind_address": "0.0.0.0", "vllm_api_key": K, "vllm_firewall": False}
FLEET_CASES = [
    (
        "gateway-key-is-the-hosts-key",
        {
            "gateway": [("gw-a", {**GATEWAY, "gateway_auth": "gateway", "gateway_api_key": K})],
            "enterprise": [("be-a", {**BACKEND, "fleet_address": "10.9.0.2"})],
        },
        "host gw-a: gateway_api_key = <secret, 20 characters> is not allowed: a key other than its vLLM hosts' "
        "vllm_api_key",
    ),
    (
        "gateway-and-backend-at-one-address-and-port",
        {
            "gateway": [("gw-b", GATEWAY)],
            "enterprise": [("be-b", {**BACKEND, "fleet_address": "10.9.0.1"})],
        },
        "host gw-b: gateway_backends = None is not allowed: hosts at addresses and ports of their own: be-b and "
        "gw-b are both at 10.9.0.1:8000",
    ),
    (
        "two-backends-at-one-address-and-port",
        {
            "gateway": [("gw-c", GATEWAY)],
            "enterprise": [
                ("be-c1", {**BACKEND, "fleet_address": "10.9.0.3"}),
                ("be-c2", {**BACKEND, "fleet_address": "10.9.0.3"}),
            ],
        },
        "host gw-c: gateway_backends = None is not allowed: hosts at addresses and ports of their own: be-c2 and "
        "be-c1 are both at 10.9.0.3:8000",
    ),
]
MONITOR = {"fleet_address": "10.9.0.9", "alert_webhook_url": "http://10.9.0.10:9999/alerts"}
FLEET_CASES += [
    (
        "monitoring-host-without-receiver",
        {
            "monitoring": [("mon-a", {"fleet_address": "10.9.0.9"})],
            "enterprise": [("be-d", {**BACKEND, "fleet_address": "10.9.0.4"})],
        },
        "host mon-a: alert_webhook_url = None is not allowed: a URL Alertmanager posts alerts to, or alert_email_to",
    ),
    (
        "monitoring-mail-without-relay",
        {
            "monitoring": [
                (
                    "mon-b",
                    {
                        "fleet_address": "10.9.0.9",
                        "alert_email_to": "oncall@example.com",
                        "alert_email_from": "alerts@example.com",
                        "alert_smtp_password": "hunter2-smtp-password",
                    },
                )
            ],
        },
        "host mon-b: alert_smtp_smarthost = None is not allowed: set with alert_email_to",
    ),
    (
        "vllm-on-the-node-exporters-port",
        {
            "monitoring": [("mon-c", MONITOR)],
            "enterprise": [("be-e", {**BACKEND, "fleet_address": "10.9.0.5", "vllm_port": 9100})],
        },
        "host be-e: vllm_port = 9100 is not allowed: a port other than 9100, where the host exports node metrics",
    ),
    (
        "gateway-and-monitoring-at-once",
        {
            "monitoring": [("both-a", MONITOR)],
            "gateway": [("both-a", MONITOR)],
            "enterprise": [("be-f", {**BACKEND, "fleet_address": "10.9.0.6"})],
        },
        "host both-a: groups = ['gateway', 'monitoring'] is not allowed: one of the gateway and monitoring groups",
    ),
]
CLUSTER = {
    **BACKEND,
    "vllm_firewall": True,
    "accelerator": "nvidia",
    "gpu_count": 8,
    "vllm_cluster": "c",
    "vllm_cluster_interface": "eth0",
}
FLEET_CASES += [
    (
        "cluster-members-with-different-images",
        {
            "enterprise": [
                ("cl-a", {**CLUSTER, "vllm_cluster_rank": 0, "fleet_address": "10.9.1.1"}),
                (
                    "cl-b",
                    {
                        **CLUSTER,
                        "vllm_cluster_rank": 1,
                        "fleet_address": "10.9.1.2",
                        "vllm_image": "vllm/vllm-openai:v0.32.0",
                    },
                ),
            ],
        },
        "host cl-b: vllm_image = 'vllm/vllm-openai:v0.32.0' is not allowed: the value every member of cluster 'c' "
        "has: its leader cl-a has None",
    ),
    (
        "cluster-members-with-one-rank",
        {
            "enterprise": [
                ("cl-c", {**CLUSTER, "vllm_cluster_rank": 0, "fleet_address": "10.9.1.3"}),
                ("cl-d", {**CLUSTER, "vllm_cluster_rank": 0, "fleet_address": "10.9.1.4"}),
            ],
        },
        "host cl-c: vllm_cluster_rank = 0 is not allowed: a rank of its own from 0 to 1 in cluster 'c' (cl-c and cl-d "
        "both have it)",
    ),
    (
        "gateway-in-front-of-a-cluster-member",
        {
            "gateway": [("gw-e", {**GATEWAY, "gateway_backends": ["cl-e", "cl-f"]})],
            "enterprise": [
                ("cl-e", {**CLUSTER, "vllm_cluster_rank": 0, "fleet_address": "10.9.1.5"}),
                ("cl-f", {**CLUSTER, "vllm_cluster_rank": 1, "fleet_address": "10.9.1.6"}),
            ],
        },
        "host gw-e: gateway_backends = ['cl-e', 'cl-f'] is not allowed: the names of vLLM hosts of this inventory that "
        "serve an API: cl-f join(s) a cluster",
    ),
]
CASES = SCHEMA_CASES + SECRET_CASES + FORMAT_CASES + PATH_CASES + CONTRADICTION_CASES + HOSTILE_CASES
# A GPU the host claims but lacks keeps pre-flight refusing, whatever the case.
DEFAULTS = {"accelerator": "nvidia"}


def single_host_inventory(connection: dict, archive: str) -> str:
    """One inventory with every single-host case as a host of group single_gpu, named by its id."""
    hosts = []
    for case_id, data, _ in CASES:
        stand_ins = {"ARCHIVE": archive, "SSH_PORT": connection.get("ssh_port", 22)}
        data = {k: stand_ins.get(v, v) if isinstance(v, str) else v for k, v in data.items()}
        hosts.append((case_id, {**connection, **DEFAULTS, **_own_address(len(hosts), data), **data}))
    hosts += [(name, {**connection, **DEFAULTS, **_own_address(len(hosts), {})}) for _, name, _ in NAME_CASES]
    return f"single_gpu = {hosts!r}\n"


def _own_address(index: int, data: dict) -> dict:
    """Each host of the table is one machine of its own to the rules (they all connect to one), unless
    the case sets where it is reached itself."""
    if "fleet_address" in data or "ssh_hostname" in data:
        return {}
    return {"fleet_address": f"10.77.{index // 250}.{index % 250 + 1}"}


def fleet_inventory(groups: dict, connection: dict) -> str:
    """The groups' hosts, each reached over SSH as connection says. Where it names no port, each host
    gets a port of its own: one machine of its own to the rules, as in a fleet behind NAT."""
    ports = iter(range(2201, 2300))
    own = (lambda: {}) if "ssh_port" in connection else (lambda: {"ssh_port": next(ports)})
    return "".join(
        f"{group} = {[(name, {**connection, **own(), **data}) for name, data in hosts]!r}\n"
        for group, hosts in groups.items()
    )


def expected_line(case_id: str, expected: str, archive: str) -> str:
    return expected.replace("ARCHIVE", archive).replace("host TARGET: ", f"host {case_id}: ", 1)
