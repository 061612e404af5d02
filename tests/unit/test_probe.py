"""The host probe as typed data: what the probe script really prints (run here, on this machine,
whose commands are read-only) is exactly the fields of Probe, no more and no fewer."""

import dataclasses
import subprocess

from vllm_fleet.checks import HostProbe
from vllm_fleet.probe import Probe, key_values


def test_every_line_the_probe_prints_is_a_field_and_every_field_is_printed():
    script = HostProbe().command(8000, "/var/lib/vllm-fleet/huggingface", "models--org--m", "nvidia,cpu")
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60).stdout.splitlines()
    printed = set(key_values(out))
    fields = {f.name for f in dataclasses.fields(Probe)} - {"nix_builds", "release_sha"}
    # Printed only when true: the probe says nothing otherwise.
    conditional = {"reboot_required", "nvidia_rpm", "epel", "cdi_spec", "unit_method"}
    dynamic = {k for k in printed if k.startswith(("nix_build_", "release_sha_"))}
    assert printed - dynamic <= fields, printed - dynamic - fields
    assert fields - conditional <= printed, fields - conditional - printed
    probe = Probe.parse(out)
    assert set(probe.nix_builds) == {"nvidia", "cpu"}
    assert set(probe.release_sha) == {"vllm_service", "vllm_env", "release_conf"}
    assert probe.kernel == subprocess.run(["uname", "-r"], capture_output=True, text=True).stdout.strip()


def test_daemon_json_is_parsed_once_into_its_keys_or_why_not():
    assert Probe.of({"daemon_json": '{"runtimes": {"nvidia": {}}}'}).daemon_config == {"runtimes": {"nvidia": {}}}
    assert Probe().daemon_config == {}
    assert str(Probe.of({"daemon_json": "{"}).daemon_config).startswith("it does not parse as JSON")
