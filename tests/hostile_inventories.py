"""Bad inventories judged by what their values would do on the host (issue 26's classes): paths
that hand the host to the container, exposure by a switch or a typo, self-lockout. Same shapes as
tests/bad_inventories.py, which adds the single-host cases to its table (so `plan` and the real
deploy refuse them too); the cases across hosts run in-process (tests/unit/test_bad_inventory_table.py).

SSH_PORT stands for the port the case's host is reached at (its connection's ssh_port).
"""

from __future__ import annotations

H = "host TARGET: "
K = "hunter2-" + "k" * 12
LOCKOUT = "a port other than the host's SSH port ("
CACHE = "is not allowed: an absolute path of letters, digits and . _ - + @ beneath a directory of your own"
CACHE_CASES = [
    (f"cache-is-{name}", {knob: path}, f"{H}{knob} = {path!r} {CACHE}")
    for name, knob, path in (
        ("the-docker-dir", "vllm_cache_dir", "/var/lib/docker"),
        ("containerd-dir", "hf_cache_dir", "/var/lib/containerd"),
        ("var-run-docker", "hf_cache_dir", "/var/run/docker"),
        ("var-run-itself", "vllm_cache_dir", "/var/run"),
        ("roots-ssh", "hf_cache_dir", "/root/.ssh"),
        ("a-users-ssh", "hf_cache_dir", "/home/ops/.ssh"),
        ("a-home", "vllm_cache_dir", "/home/ops"),
        ("cron", "vllm_cache_dir", "/var/spool/cron/crontabs"),
        ("our-state-dir", "hf_cache_dir", "/var/lib/vllm-fleet"),
        ("our-images", "vllm_cache_dir", "/var/lib/vllm-fleet/images"),
        ("above-our-models", "hf_cache_dir", "/var/lib/vllm-fleet/models/../models"),
        ("tmp", "hf_cache_dir", "/tmp/hf"),
        ("var-tmp", "vllm_cache_dir", "/var/tmp/cache"),
        ("dev-shm", "hf_cache_dir", "/dev/shm/hf"),
        ("rocm", "vllm_cache_dir", "/opt/rocm/cache"),
        ("nix-store", "hf_cache_dir", "/nix/store/x"),
        ("srv-itself", "hf_cache_dir", "/srv"),
        ("double-slash-etc", "hf_cache_dir", "//etc"),
    )
]
EXPOSURE_CASES = [
    (
        "sources-host-bits-everything",
        {"vllm_allowed_sources": ["10.20.0.5/0"]},
        H + "vllm_allowed_sources = ['10.20.0.5/0'] is not allowed: a list of IP addresses or networks",
    ),
    (
        "sources-every-address",
        {"vllm_allowed_sources": ["0.0.0.0/0"]},
        H + "vllm_allowed_sources = ['0.0.0.0/0'] is not allowed: a list of IP addresses or networks",
    ),
    (
        "sources-every-v6-address",
        {"vllm_allowed_sources": ["10.0.0.0/8", "::/0"]},
        H + "vllm_allowed_sources = ['10.0.0.0/8', '::/0'] is not allowed",
    ),
    (
        "sources-host-bits",
        {"vllm_allowed_sources": ["192.168.1.7/24"]},
        H + "vllm_allowed_sources = ['192.168.1.7/24'] is not allowed",
    ),
    (
        "monitoring-sources-public",
        {"monitoring_allowed_sources": ["8.8.8.0/24"]},
        H + "monitoring_allowed_sources = ['8.8.8.0/24'] is not allowed: a list of private IP addresses",
    ),
    ("vllm-port-is-ssh", {"vllm_port": "SSH_PORT"}, LOCKOUT),
]
ARGS = "vllm_extra_args = "
ARG_CASES = [
    (
        "args-word-after-a-switch",
        {"vllm_extra_args": ["--enforce-eager", "org/other-model"]},
        H + ARGS + "['--enforce-eager', 'org/other-model'] is not allowed: options of vLLM's serve parser",
    ),
    ("args-bare-word-first", {"vllm_extra_args": ["evil/model"]}, "'evil/model' is such a word"),
    ("args-empty-item", {"vllm_extra_args": ["--seed", "1", ""]}, H + ARGS + "['--seed', '1', ''] is not allowed"),
    ("args-en-dash", {"vllm_extra_args": ["\u2013\u2013enforce-eager"]}, "no dash other than '-'"),
    ("args-minus-sign", {"vllm_extra_args": ["\u2212-enforce-eager"]}, "no dash other than '-'"),
    ("args-space-around", {"vllm_extra_args": [" --enforce-eager"]}, "no spaces around an item"),
    (
        "args-remote-code",
        {"vllm_extra_args": ["--trust_remote_code"]},
        "arguments without --trust-remote-code, which runs Python from the model's repository",
    ),
    (
        "args-remote-code-other-knob-allowed",
        {"vllm_extra_args": ["--trust-remote-code"], "vllm_allow": ["prompt_logging"]},
        "name 'remote_code' in vllm_allow",
    ),
    ("args-tool-plugin", {"vllm_extra_args": ["--tool-parser-plugin", "/x.py"]}, "name 'plugins' in vllm_allow"),
    ("args-middleware", {"vllm_extra_args": ["--middleware=os.system"]}, "name 'plugins' in vllm_allow"),
    ("args-worker-class", {"vllm_extra_args": ["--worker_cls=os.system"]}, "name 'plugins' in vllm_allow"),
    (
        "args-executor-class",
        {"vllm_extra_args": ["--distributed-executor-backend", "evil.Executor"]},
        "name 'plugins' in vllm_allow",
    ),
    (
        "args-compilation-backend",
        {"vllm_extra_args": ["--compilation-config.backend=os.system"]},
        "name 'plugins' in vllm_allow",
    ),
    (
        "args-compilation-backend-short-dotted",
        {"vllm_extra_args": ["-cc.backend=os.system"]},
        "name 'plugins' in vllm_allow",
    ),
    (
        "args-compilation-backend-abbreviated",
        {"vllm_extra_args": ["--compilation-conf.backend=os.system"]},
        "name 'plugins' in vllm_allow",
    ),
    (
        "args-compilation-passes",
        {"vllm_extra_args": ["-cc", '{"inductor_passes": {"p": "evil.fn"}}']},
        "name 'plugins' in vllm_allow",
    ),
    ("args-local-media", {"vllm_extra_args": ["--allowed-local-media-path", "/"]}, "name 'local_media'"),
    ("args-dummy-weights", {"vllm_extra_args": ["--load-format", "dummy"]}, "name 'dummy_weights'"),
    ("args-prompt-logging", {"vllm_extra_args": ["--enable-log-outputs"]}, "name 'prompt_logging'"),
    ("allow-unknown-feature", {"vllm_allow": ["everything"]}, H + "vllm_allow = ['everything'] is not allowed"),
]
SECRET = " is not allowed: a string of at least 16 printable ASCII characters without whitespace, 8 or more"
TOKEN = "hf_hunter2abcdefgh99"
SECRET_CASES = [
    ("key-all-ones", {"vllm_api_key": "1" * 24}, H + "vllm_api_key = <secret, 24 characters>" + SECRET),
    ("key-seven-letters", {"vllm_api_key": "hunter2" + "2" * 20}, H + "vllm_api_key = <secret, 27"),
    ("key-unexpanded-variable", {"vllm_api_key": "${VLLM_API_KEY}hunter2"}, H + "vllm_api_key = <secret, 22"),
    ("key-docs-example", {"vllm_api_key": "token-abc123-hunter2"}, H + "vllm_api_key = <secret, 20 characters>"),
    ("token-changeme", {"hf_token": "hf_changeme_hunter2_01"}, H + "hf_token = <secret, 22 characters>" + SECRET),
    ("key-template", {"gateway_api_key": "<hunter2-gateway-key>"}, H + "gateway_api_key = <secret, 21 characters>"),
    (
        "token-reused-as-key",
        {"vllm_api_key": TOKEN, "hf_token": TOKEN},
        "is not allowed: a secret of its own, not the value of",
    ),
    (
        "key-in-the-served-name",
        {"vllm_api_key": K, "vllm_served_model_name": "m-" + K},
        H + "vllm_served_model_name = <secret, 22 characters> is not allowed: a value without the host's vllm_api_key",
    ),
    (
        "token-in-an-argument",
        {"hf_token": TOKEN, "vllm_extra_args": ["--seed", "1", "--revision", "x" + TOKEN]},
        "is not allowed: a value without the host's hf_token in it",
    ),
    (
        "token-in-the-gpu-name",
        {"hf_token": TOKEN, "gpu_name": "NVIDIA " + TOKEN},
        H + "gpu_name = 'NVIDIA <secret>' is not allowed: a value without the host's hf_token in it",
    ),
]
URL = "is not allowed: an http:// or https:// URL without spaces"
ALERTING_CASES = [
    ("webhook-user-info", {"alert_webhook_url": "https://hooks.example.com@evil.example.net/a"}, URL),
    ("webhook-credentials", {"alert_webhook_url": "https://ops:hunter2pw@hooks.example.com/a"}, URL),
    ("webhook-look-alike-host", {"alert_webhook_url": "https://hooks.exampl\u0435.com/a"}, URL),
    ("webhook-port-out-of-range", {"alert_webhook_url": "https://hooks.example.com:99999/a"}, URL),
    ("webhook-port-zero", {"alert_webhook_url": "https://hooks.example.com:0/a"}, URL),
    ("webhook-percent-host", {"alert_webhook_url": "https://hooks%2eexample.com/a"}, URL),
    ("webhook-ftp", {"alert_webhook_url": "ftp://hooks.example.com/a"}, URL),
    ("smtp-port-out-of-range", {"alert_smtp_smarthost": "smtp.example.com:70000"}, "a host and port such as"),
    ("smtp-port-zero", {"alert_smtp_smarthost": "smtp.example.com:0"}, "a host and port such as"),
    ("mail-double-dot", {"alert_email_to": "on..call@example.com"}, "a mail address such as"),
    ("mail-domain-hyphen", {"alert_email_from": "alerts@-example.com"}, "a mail address such as"),
    ("mail-two-ats", {"alert_email_to": "a@b@example.com"}, "a mail address such as"),
]
NIX_CASES = [
    ("nix-cache-plain-http", {"nix_substituters": ["http://cache.example.com"]}, "not plain http://"),
    ("nix-cache-trusted", {"nix_substituters": ["https://cache.example.com?trusted=1"]}, "not marked ?trusted=1"),
    (
        "nix-cache-without-keys",
        {"serving_method": "nix", "nix_substituters": ["https://cache.example.com"], "nix_trusted_public_keys": []},
        H + "nix_trusted_public_keys = () is not allowed: the public keys of the caches in nix_substituters",
    ),
]
DAEMON = "docker_daemon_config = "
DOCKER_CASES = [
    ("daemon-unknown-key", {"docker_daemon_config": {"log-opt": {"max-size": "10m"}}}, "'log-opt' is not one of them"),
    ("daemon-hosts", {"docker_daemon_config": {"hosts": ["tcp://0.0.0.0:2375"]}}, "not hosts: the unit starts"),
    ("daemon-wrong-type", {"docker_daemon_config": {"live-restore": "true"}}, "'live-restore' takes bool"),
    ("daemon-number-as-text", {"docker_daemon_config": {"mtu": "1500"}}, "'mtu' takes int"),
    ("daemon-log-opts-number", {"docker_daemon_config": {"log-opts": {"max-file": 3}}}, "'log-opts' takes str of map"),
    ("daemon-bool-as-int", {"docker_daemon_config": {"max-concurrent-downloads": True}}, "takes int"),
    (
        "daemon-every-registry-insecure",
        {"docker_daemon_config": {"insecure-registries": ["0.0.0.0/0"]}},
        "insecure-registries networks that are private, not 0.0.0.0/0",
    ),
    (
        "daemon-public-registry-network-insecure",
        {"docker_daemon_config": {"insecure-registries": ["registry.local:5000", "8.8.0.0/16"]}},
        "not 8.8.0.0/16",
    ),
    ("daemon-metrics-open", {"docker_daemon_config": {"metrics-addr": "0.0.0.0:9323"}}, "metrics-addr on a loopback"),
    ("daemon-not-a-mapping", {"docker_daemon_config": ["debug"]}, H + DAEMON + "['debug'] is not allowed"),
]
HOSTILE_CASES = CACHE_CASES + EXPOSURE_CASES + ARG_CASES + SECRET_CASES + ALERTING_CASES + NIX_CASES + DOCKER_CASES

MEMBER = {
    "vllm_bind_address": "0.0.0.0",
    "vllm_api_key": K,
    "accelerator": "nvidia",
    "gpu_count": 8,
    "vllm_cluster": "c",
    "vllm_cluster_interface": "eth0",
}
MONITOR = {"fleet_address": "10.9.0.9", "alert_webhook_url": "https://alerts.example.com/hook"}
HOSTILE_FLEET_CASES = [
    (
        "cluster-with-the-firewall-off",
        {
            "enterprise": [
                ("cm-a", {**MEMBER, "fleet_address": "10.9.1.1", "vllm_cluster_rank": 0, "vllm_firewall": False}),
                ("cm-b", {**MEMBER, "fleet_address": "10.9.1.2", "vllm_cluster_rank": 1}),
            ]
        },
        "host cm-a: vllm_firewall = False is not allowed: True on a member of cluster 'c'",
    ),
    (
        "cluster-dynamic-ports-cover-ssh",
        {
            "enterprise": [
                ("cm-c", {**MEMBER, "fleet_address": "10.9.1.3", "vllm_cluster_rank": 0}),
                (
                    "cm-d",
                    {
                        **MEMBER,
                        "fleet_address": "10.9.1.4",
                        "vllm_cluster_rank": 1,
                        "ssh_port": 40022,
                    },
                ),
            ]
        },
        "host cm-d: vllm_cluster_dynamic_ports = '32768-60999' is not allowed: " + LOCKOUT + "40022",
    ),
    (
        "cluster-dynamic-ports-cover-vllm-port",
        {
            "enterprise": [
                ("cm-e", {**MEMBER, "fleet_address": "10.9.1.5", "vllm_cluster_rank": 0, "vllm_port": 40000}),
                ("cm-f", {**MEMBER, "fleet_address": "10.9.1.6", "vllm_cluster_rank": 1, "vllm_port": 40000}),
            ]
        },
        "host cm-e: vllm_cluster_dynamic_ports = '32768-60999' is not allowed: a port of its own: vllm_port "
        "(40000) is there already",
    ),
    (
        "monitoring-open-with-the-firewall-off",
        {
            "monitoring": [("mo-a", {**MONITOR, "prometheus_bind_address": "0.0.0.0", "vllm_firewall": False})],
            "enterprise": [("be-a", {"vllm_api_key": K, "fleet_address": "10.9.1.7"})],
        },
        "host mo-a: vllm_firewall = False is not allowed: True on a monitoring host whose Prometheus and "
        "Alertmanager listen beyond loopback",
    ),
    (
        "prometheus-on-the-ssh-port",
        {
            "monitoring": [("mo-b", {**MONITOR, "prometheus_port": 2200, "ssh_port": 2200})],
            "enterprise": [("be-b", {"vllm_api_key": K, "fleet_address": "10.9.1.8"})],
        },
        "host mo-b: prometheus_port = 2200 is not allowed: " + LOCKOUT + "2200",
    ),
    (
        "ssh-on-the-node-exporters-port",
        {
            "monitoring": [("mo-c", MONITOR)],
            "enterprise": [("be-c", {"vllm_api_key": K, "fleet_address": "10.9.1.9", "ssh_port": 9100})],
        },
        "host be-c: ssh_port = 9100 is not allowed: a port other than the node metrics",
    ),
    (
        "alertmanager-on-the-gossip-port",
        {
            "monitoring": [("mo-d", {**MONITOR, "alertmanager_port": 9094})],
            "enterprise": [("be-d", {"vllm_api_key": K, "fleet_address": "10.9.1.10"})],
        },
        "host mo-d: alertmanager_port = 9094 is not allowed: a port of its own: Alertmanager's gossip port",
    ),
    (
        "laptop-open-to-its-network",
        {"laptop": [("lp-a", {"vllm_firewall": False})]},
        "host lp-a: vllm_firewall = False is not allowed: True on a laptop without vllm_api_key",
    ),
    (
        "gateway-on-the-ssh-port",
        {
            "gateway": [("gw-a", {"fleet_address": "10.9.1.11", "gateway_port": 22, "ssh_port": 22})],
            "enterprise": [("be-e", {"vllm_api_key": K, "fleet_address": "10.9.1.12", "vllm_bind_address": "0.0.0.0"})],
        },
        "host gw-a: gateway_port = 22 is not allowed: " + LOCKOUT + "22",
    ),
]

BEHIND = {"vllm_api_key": K}
BY_NAME = {"ssh_hostname": None, "ssh_port": 22}
HOSTILE_FLEET_CASES += [
    (
        "api-key-as-webhook-token",
        {
            "monitoring": [("mo-e", {**MONITOR, "alert_webhook_token": K})],
            "enterprise": [("be-f", {"vllm_api_key": K, "fleet_address": "10.9.2.1"})],
        },
        "host be-f: vllm_api_key = <secret, 20 characters> is not allowed: a secret of its own, not the value of "
        "mo-e's alert_webhook_token",
    ),
    (
        "two-names-one-address",
        {
            "enterprise": [
                ("gpu-a", {"vllm_api_key": K, "fleet_address": "10.9.2.2"}),
                ("gpu-b", {"vllm_api_key": K, "fleet_address": "10.9.2.2"}),
            ]
        },
        "host gpu-b: fleet_address = '10.9.2.2' is not allowed: an address of its own: gpu-a is at 10.9.2.2 too",
    ),
    (
        "names-differ-in-case",
        {
            "enterprise": [
                ("GPU-c", {"vllm_api_key": K, "fleet_address": "10.9.2.3"}),
                ("gpu-c", {"vllm_api_key": K, "fleet_address": "10.9.2.4"}),
            ]
        },
        "host gpu-c: name = 'gpu-c' is not allowed: a name of its own: GPU-c differs only in case",
    ),
    (
        "monitoring-and-vllm-on-one-machine",
        {
            "monitoring": [("mo-f", {**MONITOR, "fleet_address": "10.9.2.5"})],
            "enterprise": [("be-g", {"vllm_api_key": K, "fleet_address": "10.9.2.5"})],
        },
        "is not allowed: an address of its own:",
    ),
    (
        "two-names-one-ssh-destination",
        {
            "enterprise": [
                ("gpu-d", {"vllm_api_key": K, "ssh_hostname": "10.9.2.6", "ssh_port": 22, "fleet_address": "10.9.2.7"}),
                ("gpu-e", {"vllm_api_key": K, "ssh_hostname": "10.9.2.6", "ssh_port": 22, "fleet_address": "10.9.2.8"}),
            ]
        },
        "host gpu-e: ssh_hostname = '10.9.2.6' is not allowed: a machine of its own: gpu-d is reached at 10.9.2.6 "
        "port 22 too",
    ),
    (
        "a-name-and-its-fully-qualified-spelling",
        {
            "enterprise": [
                # Reached by their names (no ssh_hostname).
                ("gpu-f.example.com", {**BY_NAME, "vllm_api_key": K, "fleet_address": "10.9.2.9"}),
                ("GPU-F.example.com.", {**BY_NAME, "vllm_api_key": K, "fleet_address": "10.9.2.10"}),
            ]
        },
        "host GPU-F.example.com.: ssh_hostname = 'GPU-F.example.com.' is not allowed: a machine of its own: "
        "gpu-f.example.com is reached at gpu-f.example.com port 22 too",
    ),
]

PLAIN = "http://10.9.3.1/hook"
HOSTILE_FLEET_CASES += [
    (
        "webhook-token-over-plain-http",
        {
            "monitoring": [
                ("mo-g", {**MONITOR, "alert_webhook_url": "http://10.9.3.1/hook", "alert_webhook_token": K})
            ],
            "enterprise": [("be-h", {"vllm_api_key": "Zq7wPm2x-hunter2-api", "fleet_address": "10.9.3.2"})],
        },
        f"host mo-g: alert_webhook_url = {PLAIN!r} is not allowed: an https:// URL with alert_webhook_token",
    ),
    (
        "scrapes-too-rare-for-the-alerts",
        {
            "monitoring": [("mo-h", {**MONITOR, "prometheus_scrape_interval": 300})],
            "enterprise": [("be-i", {"vllm_api_key": K, "fleet_address": "10.9.3.3"})],
        },
        "host mo-h: prometheus_scrape_interval = 300 is not allowed: at most 150 s",
    ),
]

# pyinfra's connection keys: across hosts only (in-process), as the real deploy would first try to
# connect with them.
HOSTILE_FLEET_CASES += [
    (
        f"connection-{name}",
        {"single_gpu": [(f"ssh-{name}", {"vllm_api_key": K, key: value})]},
        f"host ssh-{name}: {key} = {value!r} is not allowed: {allowed}",
    )
    for name, key, value, allowed in (
        ("user-is-a-url", "ssh_user", "root@evil?ssh_config=/tmp/x", "a user name of letters"),
        ("port-as-text", "ssh_port", "22; id", "an integer from 1 to 65535"),
        ("key-as-an-option", "ssh_key", "-oProxyCommand=id", "the path of a key file"),
    )
]
