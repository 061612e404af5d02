"""The schema: defaults, every rule, and one clean message per bad value."""

from typing import get_args

import pytest

from vllm_fleet.rules import validate
from vllm_fleet.settings import KNOBS, SettingsError

GOOD_KEY = "k" * 16 + "Zq7wPm2x"


def refuse(data: dict, groups=("single_gpu",)) -> str:
    with pytest.raises(SettingsError) as caught:
        validate("gpu-01", {"phase": "single_gpu", **data}, groups=groups)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("host gpu-01: ")
    return message


def test_defaults_validate():
    s = validate("gpu-01", {"phase": "single_gpu"}, groups=["single_gpu"])
    assert s.accelerator == "auto" and s.serving_method == "docker"
    assert s.vllm_port == 8000 and s.vllm_bind_address == "127.0.0.1"
    assert s.served_model_name == s.vllm_model


def test_every_knob_the_issue_names_is_in_the_schema():
    named = """phase accelerator serving_method vllm_model vllm_served_model_name vllm_quantization
    vllm_max_model_len vllm_gpu_memory_utilization vllm_max_num_seqs vllm_tensor_parallel_size vllm_port
    vllm_bind_address vllm_image vllm_image_archive vllm_extra_args vllm_api_key hf_token hf_cache_dir""".split()
    assert set(named) <= set(KNOBS)
    assert all(KNOBS[name].description for name in KNOBS)


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"phase": "cluster"}, "phase = 'cluster' is not allowed: one of laptop, single_gpu, enterprise"),
        ({"accelerator": "intel"}, "accelerator = 'intel' is not allowed: one of auto, nvidia, amd, cpu"),
        ({"serving_method": "podman"}, "serving_method = 'podman' is not allowed: one of docker, nix"),
        ({"vllm_port": 70000}, "vllm_port = 70000 is not allowed: an integer from 1 to 65535"),
        ({"vllm_port": "8000"}, "vllm_port = '8000' is not allowed: an integer from 1 to 65535"),
        ({"vllm_port": True}, "vllm_port = True is not allowed: an integer"),
        ({"vllm_gpu_memory_utilization": 1.5}, "vllm_gpu_memory_utilization = 1.5 is not allowed: a number"),
        ({"vllm_gpu_memory_utilization": 0}, "vllm_gpu_memory_utilization = 0 is not allowed"),
        ({"vllm_max_model_len": 64}, "vllm_max_model_len = 64 is not allowed: an integer from 128"),
        ({"vllm_max_num_seqs": 0}, "vllm_max_num_seqs = 0 is not allowed: an integer from 1 to 4096"),
        ({"vllm_tensor_parallel_size": 0}, "vllm_tensor_parallel_size = 0 is not allowed"),
        (
            {"vllm_quantization": "int3"},
            "vllm_quantization = 'int3' is not allowed: one of the pinned vLLM's methods: awq, auto_awq",
        ),
        ({"vllm_bind_address": "localhost"}, "vllm_bind_address = 'localhost' is not allowed: an IP address"),
        (
            {"vllm_model": "has space/x"},
            "vllm_model = 'has space/x' is not allowed: 'auto' (sizing chooses), a Hugging Face model id",
        ),
        (
            {"vllm_image": "vllm/vllm-openai"},
            "vllm_image = 'vllm/vllm-openai' is not allowed: an image reference pinned",
        ),
        ({"vllm_image": "vllm/vllm-openai:latest"}, "vllm_image = 'vllm/vllm-openai:latest' is not allowed"),
        ({"vllm_image_archive": "/nonexistent.tar", "vllm_image": "a/b:1"}, "vllm_image_archive = '/nonexistent.tar'"),
        ({"vllm_extra_args": "--enforce-eager"}, "vllm_extra_args = '--enforce-eager' is not allowed: a list"),
        ({"vllm_extra_args": ["--port=9000"]}, "other than --port, which is set by vllm_port"),
        ({"vllm_extra_args": ["--api-key", "x"]}, "other than --api-key, which is set by vllm_api_key"),
        ({"hf_cache_dir": "cache"}, "hf_cache_dir = 'cache' is not allowed: an absolute path"),
        ({"docker_source": "snap"}, "docker_source = 'snap' is not allowed: one of distro, docker"),
        ({"docker_version": "27.3.1"}, "docker_version = '27.3.1' is not allowed: only with docker_source = 'docker'"),
        ({"docker_daemon_config": ["a"]}, "docker_daemon_config = ['a'] is not allowed: a mapping"),
        ({"gpu_count": -1}, "gpu_count = -1 is not allowed: an integer from 1 to 64 (or None)"),
        ({"vllm_max_model_length": 4096}, "vllm_max_model_length is not a setting; did you mean vllm_max_model_len?"),
        ({"acelerator": "nvidia"}, "acelerator is not a setting; did you mean accelerator?"),
        ({"vllm_bind_address": "0.0.0.0"}, "vllm_bind_address = '0.0.0.0' is not allowed: a non-loopback address only"),
        (
            {"serving_method": "nix", "vllm_api_key": "a'quoted\\key-long-enough"},
            "vllm_api_key = <secret, 24 characters> is not allowed: with serving_method = 'nix', a secret",
        ),
        (
            {"serving_method": "nix", "nix_builder": "builder-01"},
            "accelerator = 'auto' is not allowed: nvidia, amd or cpu when nix_builder is set",
        ),
        (
            {"serving_method": "nix", "accelerator": "cpu", "nix_builder": "gpu-01"},
            "nix_builder = 'gpu-01' is not allowed: another host",
        ),
        (
            {"nix_substituters": ["cache.nixos.org"]},
            "nix_substituters = ['cache.nixos.org'] is not allowed: a list of binary",
        ),
        ({"nix_trusted_public_keys": ["no key"]}, "is not allowed: a list of Nix public keys"),
        ({"nix_flake": "/nonexistent"}, "nix_flake = '/nonexistent' is not allowed: a directory holding flake.nix"),
    ],
)
def test_bad_values_are_refused_with_host_key_value_and_allowed(data, expected):
    assert expected in refuse(data)


def test_secret_values_are_never_echoed():
    message = refuse({"vllm_api_key": "short secret"})
    assert "short secret" not in message
    assert "vllm_api_key = <secret, 12 characters> is not allowed: a string of at least 16" in message


def test_public_bind_with_api_key_is_allowed():
    s = validate(
        "gpu-01",
        {"phase": "single_gpu", "vllm_bind_address": "0.0.0.0", "vllm_api_key": GOOD_KEY},
        groups=["single_gpu"],
    )
    assert not s.is_loopback


def test_loopback_ipv6_needs_no_key():
    assert validate("gpu-01", {"phase": "single_gpu", "vllm_bind_address": "::1"}, groups=["single_gpu"]).is_loopback


def test_host_must_be_in_the_group_of_its_phase():
    message = refuse({"phase": "laptop"}, groups=("single_gpu",))
    assert "phase = 'laptop'" in message and "it is in single_gpu" in message
    assert "phase = None" in refuse({"phase": None}, groups=())


def test_host_in_two_phase_groups_is_refused():
    assert "it is in laptop, single_gpu" in refuse({}, groups=("laptop", "single_gpu"))


def test_connection_and_unrelated_keys_pass():
    s = validate("gpu-01", {"phase": "single_gpu", "ssh_port": 22, "_sudo": True, "rack": "b7"}, groups=["single_gpu"])
    assert s.phase == "single_gpu"


def test_archive_must_hold_the_image(tmp_path, make_archive):
    archive = make_archive(tmp_path, "registry.local/vllm:v1")
    ok = validate(
        "gpu-01",
        {"phase": "single_gpu", "vllm_image": "registry.local/vllm:v1", "vllm_image_archive": archive},
        groups=["single_gpu"],
    )
    assert ok.vllm_image_archive == archive
    message = refuse({"vllm_image": "registry.local/vllm:v2", "vllm_image_archive": archive})
    assert "an archive holding vllm_image 'registry.local/vllm:v2'; it holds ['registry.local/vllm:v1']" in message


@pytest.mark.parametrize("key", ["hf_tokens", "vllm_api_keys", "gateway_apikey", "vllm_secret"])
def test_a_key_that_may_hold_a_secret_is_refused_without_its_value(key):
    value = "hf_" + "s" * 22 + "Zq7wPm2x"
    message = refuse({key: value})
    assert value not in message
    assert f"{key} = <secret, {len(value)} characters> is not allowed: {key} is not a setting" in message


def test_secrets_stay_out_of_the_settings_repr():
    s = validate(
        "gpu-01",
        {"phase": "single_gpu", "vllm_api_key": GOOD_KEY, "hf_token": "hf_" + "t" * 12 + "Zq7wPm2x"},
        ["single_gpu"],
    )
    assert GOOD_KEY not in repr(s) and "hf_ttt" not in repr(s) and GOOD_KEY not in str(s.values)
    assert s.vllm_api_key.get_secret_value() == GOOD_KEY


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"ssh_hostname": "bad host!"},
            "ssh_hostname = 'bad host!' is not allowed: an IP address or a DNS name such as "
            "'gpu-01.example.internal' (the fleet_address the others reach)",
        ),
        (
            {"vllm_zzz_qqq": 1},
            "vllm_zzz_qqq = 1 is not allowed: vllm_zzz_qqq is not a setting; see the settings reference "
            "(vllm-fleet settings)",
        ),
        # A check's own words, with (or None) where the knob may be None, and without where not.
        (
            {"vllm_model_dir": "/srv/models/x"},
            "vllm_model_dir = '/srv/models/x' is not allowed: a model directory (config.json, weights, tokenizer) "
            "on the machine running pyinfra, its path made of letters, digits and . _ / - (or None)",
        ),
        (
            {"hf_cache_dir": "cache"},
            "hf_cache_dir = 'cache' is not allowed: an absolute path of letters, digits and . _ - + @ beneath a "
            "directory of your own (such as /srv/hf, /data/cache, /mnt/nvme/hf, /home/USER/hf) or beneath "
            "/var/lib/vllm-fleet: not the OS's directories nor under them (/, /etc, /usr, /var, /run, /tmp, /root, "
            "...), a runtime's or GPU vendor's (/var/lib/docker, /opt/containerd, /opt/rocm), a hidden directory "
            "(.ssh, .config), a home itself, nor the deploy's own state (/var/lib/vllm-fleet itself, its images, "
            "models and nix)",
        ),
        # The host's own key, put under another knob, is hidden there too.
        (
            {"docker_source": "a'quoted-key-long", "vllm_api_key": "a'quoted-key-long"},
            "docker_source = <secret, 17 characters> is not allowed: one of distro, docker",
        ),
    ],
)
def test_each_kind_of_error_says_it_exactly(data, expected):
    assert refuse(data) == f"host gpu-01: {expected}"


def test_show_value_hides_secrets_by_key_by_look_and_by_the_hosts_own():
    from pydantic import SecretStr

    from vllm_fleet.settings.parsing import show_value

    assert show_value("vllm_api_key", "short") == "<secret, 5 characters>"
    assert show_value("vllm_api_key", None) == "None"
    assert show_value("vllm_api_key", "") == "''"
    assert show_value("docker_source", "snap") == "'snap'"
    # A host's secret as validated data holds it (SecretStr), found wherever else it is put.
    data = {"vllm_api_key": SecretStr("a'b-c"), "hf_token": "", "docker_source": "a'b-c"}
    assert show_value("docker_source", "a'b-c", data) == "<secret, 5 characters>"
    assert show_value("docker_source", "a'b", data) == '"a\'b"'


def test_a_typo_is_suggested_only_when_close():
    from vllm_fleet.settings.parsing import suggest

    assert suggest("vllm_portt") == "vllm_port"
    assert suggest("vllm_timeout") == "vllm_ready_timeout"
    # Close enough for difflib's default cutoff (0.6), not for ours (0.8).
    assert suggest("vllm_reddy") is None and suggest("vllm_xyz") is None


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"vllm_image": "a/b:1"},
            "vllm_image = 'a/b:1' is not allowed: only with serving_method = 'docker' (the Nix way builds the "
            "server and runs no image)",
        ),
        (
            {"vllm_image_archive": "{tmp}/vllm.tar"},
            "vllm_image_archive = '{tmp}/vllm.tar' is not allowed: only with serving_method = 'docker' (the Nix way "
            "builds the server and runs no image)",
        ),
        (
            {"hf_token": "hf_`" + "a" * 12 + "Zq7wPm2x"},
            "hf_token = <secret, 24 characters> is not allowed: with serving_method = 'nix', a secret without "
            "quotes, backslashes, backticks or $ (systemd's EnvironmentFile would change it)",
        ),
    ],
)
def test_what_a_nix_host_refuses_exactly(tmp_path, data, expected):
    (tmp_path / "vllm.tar").write_bytes(b"")
    data = {k: v.replace("{tmp}", str(tmp_path)) for k, v in data.items()}
    assert refuse({"serving_method": "nix", **data}) == f"host gpu-01: {expected.replace('{tmp}', str(tmp_path))}"


def test_an_ssh_hostname_that_is_the_hosts_key_is_not_shown():
    key = "bad_host!" + "x" * 10
    message = refuse({"ssh_hostname": key, "vllm_api_key": key, "vllm_bind_address": "0.0.0.0"})
    assert message.startswith("host gpu-01: ssh_hostname = <secret, 19 characters> is not allowed: ")


def test_a_monitoring_hosts_own_rules_exactly():
    with pytest.raises(SettingsError) as caught:
        validate("mon", {"alert_webhook_url": "http://a/b", "prometheus_port": 9093}, ["monitoring"])
    assert str(caught.value) == "host mon: alertmanager_port = 9093 is not allowed: a port other than prometheus_port"
    with pytest.raises(SettingsError) as caught:
        validate("mon", {"alert_webhook_url": "http://a/b", "phase": "laptop"}, ["monitoring", "laptop"])
    assert str(caught.value) == (
        "host mon: phase = 'laptop' is not allowed: a host of the monitoring group runs Prometheus, not vLLM: "
        "put it in no phase group"
    )


@pytest.mark.parametrize(
    ("name", "data", "address"),
    [
        ("@docker/10.0.0.5", {}, "10.0.0.5"),  # a pyinfra connector's host: the part after it
        ("@docker/gpu-1", {}, "gpu-1"),
        ("@local", {}, "localhost"),
        ("gpu-1.example", {}, "gpu-1.example"),
        ("gw", {"ssh_hostname": "@docker/10.0.0.7"}, "10.0.0.7"),
        ("gw", {"ssh_hostname": "192.0.2.7"}, "192.0.2.7"),
    ],
)
def test_fleet_address_from_the_inventory_name_or_ssh_hostname(name, data, address):
    assert validate(name, data, ["gateway"]).fleet_address == address


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"alert_email_from": "alerts@example.com"},
            "alert_email_from = 'alerts@example.com' is not allowed: only with alert_email_to",
        ),
        (
            {"alert_smtp_smarthost": "s.example.com:25", "alert_smtp_username": "u"},
            "alert_smtp_smarthost = 's.example.com:25' is not allowed: only with alert_email_to",
        ),
        ({"alert_smtp_username": "u"}, "alert_smtp_username = 'u' is not allowed: only with alert_email_to"),
        (
            {"alert_email_to": "oncall@example.com"},
            "alert_email_from = None is not allowed: set with alert_email_to (a mail address such as "
            "'oncall@example.com' (letters, digits and . _ % + - before the @, a DNS name after) (or None))",
        ),
        (
            {"alert_email_to": "oncall@example.com", "alert_email_from": "alerts@example.com"},
            "alert_smtp_smarthost = None is not allowed: set with alert_email_to (a host and port such as "
            "'smtp.example.com:587' (the port from 1 to 65535) (or None))",
        ),
    ],
)
def test_mail_settings_go_together(data, expected):
    with pytest.raises(SettingsError) as caught:
        validate("mon", {"alert_webhook_url": "http://a/b", **data}, ["monitoring"])
    assert str(caught.value) == f"host mon: {expected}"


def test_a_nix_builder_is_a_nix_host_of_the_inventory_that_builds_for_itself():
    from vllm_fleet.rules import check_builder

    nix = {"phase": "laptop", "serving_method": "nix", "accelerator": "cpu"}
    builder = validate("b", nix, ["laptop"])
    member = validate("c", {**nix, "nix_builder": "b"}, ["laptop"])
    check_builder(member, builder)
    check_builder(builder, None)  # builds for itself
    check_builder(validate("e", {"phase": "laptop"}, ["laptop"]), None)  # Docker: nothing to build
    refused = (
        "host c: nix_builder = 'b' is not allowed: the name of a host in this inventory with serving_method = 'nix' "
        "and no nix_builder of its own"
    )
    for other in (
        None,
        validate("b", {"phase": "laptop"}, ["laptop"]),
        validate("b", {**nix, "nix_builder": "x"}, ["laptop"]),
    ):
        with pytest.raises(SettingsError) as caught:
            check_builder(member, other)
        assert str(caught.value) == refused


def test_the_fleet_check_finds_a_hosts_builder_by_name():
    from vllm_fleet.rules import check_fleet

    nix = {"phase": "laptop", "serving_method": "nix", "accelerator": "cpu"}
    hosts = {"b": validate("b", nix, ["laptop"]), "c": validate("c", {**nix, "nix_builder": "b"}, ["laptop"])}
    for s in hosts.values():
        check_fleet(s, hosts)
    with pytest.raises(SettingsError, match="^host c: nix_builder = 'b' is not allowed: the name of a host"):
        check_fleet(hosts["c"], {"c": hosts["c"]})


def test_the_risky_features_are_the_ones_vllm_allow_takes():
    from vllm_fleet.settings.types import RiskyFeature
    from vllm_fleet.vllm_flags import RISKY_FEATURE_NAMES

    assert get_args(RiskyFeature) == RISKY_FEATURE_NAMES


def test_an_allowed_feature_is_named_by_plan(settings_for):
    from vllm_fleet.plan import allowed_features

    s = settings_for("single_gpu", vllm_extra_args=["--trust-remote-code"], vllm_allow=["remote_code", "plugins"])
    assert allowed_features(s) == [
        "vllm_allow lets --trust-remote-code run: it runs Python from the model's repository, or Jinja templates "
        "a client sends, in the container"
    ]
    assert allowed_features(s.replace(vllm_extra_args=[])) == []


@pytest.mark.parametrize("number", [float("nan"), float("inf"), -float("inf")])
def test_a_daemon_config_number_json_cannot_carry_is_refused(number):
    """Python's json writes NaN and Infinity, which dockerd's decoder refuses (a YAML inventory's .nan)."""
    with pytest.raises(SettingsError) as caught:
        validate("h", {"docker_daemon_config": {"default-ulimits": {"nofile": {"Soft": number}}}}, ["single_gpu"])
    assert "'default-ulimits' takes object" in str(caught.value)


def test_quantization_takes_the_pinned_vllms_methods_and_the_catalogue_uses_only_those():
    """vLLM 0.32 has no bitsandbytes, gguf or marlin method any more (its QUANTIZATION_METHODS)."""
    from vllm_fleet.catalogue import CATALOGUE
    from vllm_fleet.vllm_flags import QUANTIZATION_METHODS

    assert {"awq", "awq_marlin", "gptq_marlin", "fp8", "compressed-tensors", "mxfp4"} <= set(QUANTIZATION_METHODS)
    assert not {"bitsandbytes", "gguf", "marlin"} & set(QUANTIZATION_METHODS)
    for gone in ("bitsandbytes", "gguf", "marlin"):
        with pytest.raises(SettingsError, match=f"vllm_quantization = '{gone}' is not allowed: one of the pinned"):
            validate("h", {"vllm_quantization": gone}, ["single_gpu"])
    used = {model.quantization for model in CATALOGUE.models.values() if model.quantization}
    assert used and used <= set(QUANTIZATION_METHODS)
