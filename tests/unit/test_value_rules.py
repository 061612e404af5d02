"""The value rules of issue 26 one by one, both ways: what each accepts (an operator's ordinary
values, which the bad-inventory tables never show) and what it refuses."""

from __future__ import annotations

import pytest

from vllm_fleet.settings.daemon_json import DAEMON_KEYS, daemon_config
from vllm_fleet.settings.places import host_directory, networks, private_networks
from vllm_fleet.settings.secret_rules import weak_secret
from vllm_fleet.settings.urls import cache_url, smtp_host, webhook_url

ACCEPTED_DIRECTORIES = {
    "/srv/hf": "/srv/hf",
    "/srv/hf/": "/srv/hf",
    "/data": "/data",
    "/mnt/nvme0/hf-cache": "/mnt/nvme0/hf-cache",
    "/home/ops/hf": "/home/ops/hf",
    "/opt/models": "/opt/models",
    "/var/lib/vllm-fleet/huggingface": "/var/lib/vllm-fleet/huggingface",
    "/var/lib/vllm-fleet/cache": "/var/lib/vllm-fleet/cache",
    "/models+v2@site": "/models+v2@site",
}
REFUSED_DIRECTORIES = [
    "/", "", "relative/path", "/data//models", "/srv/../etc", "/srv/./hf", "/srv/a b", "/srv/a:b", "/etc",
    "/etc/hf", "/usr/share/hf",
    "/var", "/var/lib", "/var/lib/docker", "/var/lib/docker/volumes", "/var/run", "/var/run/x", "/run/x", "/tmp/x",
    "/root", "/root/hf", "/home", "/home/ops", "/home/ops/.ssh", "/srv/.hidden/x", "/srv", "/mnt", "/opt",
    "/opt/rocm", "/opt/rocm-6.2/x", "/opt/containerd/x", "/nix/store", "/var/lib/vllm-fleet",
    "/var/lib/vllm-fleet/images", "/var/lib/vllm-fleet/images/x", "/var/lib/vllm-fleet/models",
    "/var/lib/vllm-fleet/nix", "/var/lib/vllm-fleet/.x", "/boot/x", "/snap/x",
]  # fmt: skip


@pytest.mark.parametrize("given, used", ACCEPTED_DIRECTORIES.items())
def test_a_directory_of_the_operators_own_is_taken_as_the_deploy_uses_it(given, used):
    assert host_directory(given) == used


@pytest.mark.parametrize("path", REFUSED_DIRECTORIES)
def test_a_directory_the_os_a_runtime_a_user_or_the_deploy_keeps_is_refused(path):
    with pytest.raises(ValueError):
        host_directory(path)


def test_networks_are_normalised_and_checked_strictly():
    assert networks(("10.0.0.0/8", "192.168.1.7", "2001:db8::/32")) == ("10.0.0.0/8", "192.168.1.7/32", "2001:db8::/32")
    assert networks(()) == ()
    for bad in ("10.0.0.5/8", "0.0.0.0/0", "::/0", "10.0.0.0/33", "not-a-network"):
        with pytest.raises(ValueError):
            networks((bad,))
    assert private_networks(("10.1.0.0/16", "fd00::/8", "127.0.0.1")) == ("10.1.0.0/16", "fd00::/8", "127.0.0.1/32")
    for bad in ("8.8.8.0/24", "10.0.0.5/8", "0.0.0.0/0"):
        with pytest.raises(ValueError):
            private_networks((bad,))


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/a",
        "http://10.0.0.9:9999/hook",
        "https://[2001:db8::1]:8443/h?x=1",
        "https://alerts.example.internal./vllm",
        "https://a.example.com:65535/",
    ],
)
def test_a_webhook_url_that_leads_where_it_reads_is_taken(url):
    assert webhook_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "https://a@b.example.com/",
        "https://u:p@b.example.com/",
        "https://b.exampl\u0435.com/",
        "https://b.example.com:0/",
        "https://b.example.com:65536/",
        "https://b%2eexample.com/",
        "ftp://b.example.com/",
        "https:///path",
        "https://-b.example.com/",
        "https://b.example.com/a b",
    ],
)
def test_a_webhook_url_that_could_lead_elsewhere_is_refused(url):
    with pytest.raises(ValueError):
        webhook_url(url)


def test_mail_relays_are_a_host_and_a_port_alertmanager_can_reach():
    for good in ("smtp.example.com:587", "10.0.0.1:25", "[2001:db8::1]:465", "relay:1", "relay:65535"):
        assert smtp_host(good) == good
    for bad in ("smtp.example.com", "smtp.example.com:0", "smtp.example.com:65536", "[relay]:25", "-x:25", ":25"):
        with pytest.raises(ValueError):
            smtp_host(bad)


def test_nix_caches_must_prove_what_they_serve():
    for good in ("https://cache.nixos.org", "s3://bucket?region=eu-west-1", "ssh-ng://builder", "file:///srv/cache"):
        assert cache_url(good) == good
    for bad in ("http://cache.example.com", "https://c.example.com?trusted=1", "https://c.example.com?Trusted=true"):
        with pytest.raises(ValueError):
            cache_url(bad)


GOOD_DAEMON = {
    "data-root": "/srv/docker",
    "live-restore": True,
    "max-concurrent-downloads": 6,
    "registry-mirrors": ["https://mirror.example.com"],
    "insecure-registries": ["registry.local:5000", "10.0.0.0/8", "fd00::/8"],
    "log-opts": {"max-size": "10m", "max-file": "3"},
    "features": {"buildkit": True},
    "runtimes": {"nvidia": {"path": "nvidia-container-runtime"}},
    "default-address-pools": [{"base": "172.80.0.0/16", "size": 24}],
    "metrics-addr": "127.0.0.1:9323",
}


def test_an_ordinary_daemon_config_of_every_kind_of_value_is_taken():
    assert set(DAEMON_KEYS[key] for key in GOOD_DAEMON) == {
        "str", "bool", "int", "str_list", "str_map", "bool_map", "object", "object_list"
    }  # fmt: skip
    assert daemon_config(GOOD_DAEMON) == GOOD_DAEMON
    for address in ("[::1]:9323", "localhost:9323", "127.0.0.1"):
        assert daemon_config({"metrics-addr": address})


@pytest.mark.parametrize(
    "key, value",
    [
        ("data-root", 1),
        ("live-restore", "true"),
        ("live-restore", 1),
        ("max-concurrent-downloads", True),
        ("max-concurrent-downloads", 1.5),
        ("registry-mirrors", "https://mirror.example.com"),
        ("registry-mirrors", [1]),
        ("log-opts", {"max-file": 3}),
        ("log-opts", ["max-file"]),
        ("features", {"buildkit": "true"}),
        ("runtimes", ["nvidia"]),
        ("runtimes", {1: {}}),
        ("default-address-pools", {"base": "172.80.0.0/16"}),
        ("default-address-pools", ["172.80.0.0/16"]),
        ("default-ulimits", {"nofile": {"Soft": float("nan")}}),
        ("insecure-registries", ["0.0.0.0/0"]),
        ("insecure-registries", ["8.8.0.0/16"]),
        ("metrics-addr", "0.0.0.0:9323"),
        ("metrics-addr", "[::]:9323"),
        ("hosts", ["unix:///var/run/docker.sock"]),
        ("log-opt", {}),
    ],
)
def test_a_daemon_config_dockerd_would_refuse_or_that_opens_it_is_refused(key, value):
    with pytest.raises(ValueError):
        daemon_config({key: value})


WEAK = [
    "1" * 24,
    "abcdefgabcdefgabcdefg",
    "${VLLM_API_KEY}xyz123",
    "$VLLM_API_KEY_12345",
    "<your-api-key-here>",
    "{{ vllm_api_key }}-1234567",
    "token-abc123-XY7890",
    "ChangeMe-0123456789",
    "my-example-key-1234",
]


def test_weak_secrets_are_told_from_real_ones():
    for strong in ("Zq7wPm2x-hunter2-api", "hf_817c09924b5cad6bdeee09d14d94e12059", "a1b2c3d4e5f6g7h8"):
        assert not weak_secret(strong)
    for weak in WEAK:
        assert weak_secret(weak), weak


@pytest.mark.parametrize(
    "args",
    [
        ["--distributed-executor-backend", "mp"],
        ["--distributed-executor-backend=ray"],
        ["-cc", '{"backend": "inductor", "mode": 3}'],
        ["--compilation-config.backend=eager"],
        ["--compilation-config.mode", "3"],
        ["-O3"],
        ["--enforce-eager", "--seed", "7"],
    ],
)
def test_vllms_own_executors_and_compilation_backends_need_no_opt_in(args):
    from vllm_fleet.vllm_flags import risky_features

    assert risky_features(args) == {}


def test_one_address_on_other_ports_or_through_other_routes_is_another_machine():
    """NAT or a sandbox publishes several machines' SSH on one address; two sites' private networks
    reuse addresses behind their own proxies."""
    from vllm_fleet.machines import check_destinations

    hosts = [
        ("a", {"ssh_hostname": "127.0.0.1", "ssh_port": 2201}),
        ("b", {"ssh_hostname": "127.0.0.1", "ssh_port": 2202}),
        ("c", {"ssh_hostname": "10.0.0.5", "ssh_config_file": "site-1.conf"}),
        ("d", {"ssh_hostname": "10.0.0.5", "ssh_config_file": "site-2.conf"}),
        ("@local", {}),
        ("@docker/x", {}),
    ]
    assert check_destinations(hosts) == {}
    refused = check_destinations([*hosts, ("e", {"ssh_hostname": "127.0.0.1", "ssh_port": "2202"})])
    assert list(refused) == ["e"] and "b is reached at 127.0.0.1 port 2202 too" in str(refused["e"])
