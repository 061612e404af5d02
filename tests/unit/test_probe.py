"""The host probe as typed data: the script that runs on the host and Probe come from one
definition (Probe's annotated fields), checked by running the script here, on this machine, whose
commands are read-only."""

import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest

from vllm_fleet.facts.probe import FIELDS, HostProbe, Printed, Probe, ProbeError, key_values

TYPES = {bool, int, str, tuple[str, ...], Mapping[str, str]}
FIXTURE = Path(__file__).parent / "fixtures" / "probe-debian12-sandbox-serving.txt"


@pytest.fixture(scope="module")
def printed() -> list[str]:
    script = HostProbe().command(8000, "/var/lib/vllm-fleet/huggingface", "models--org--m", "nvidia,cpu")
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60).stdout.splitlines()


def test_every_field_has_a_type_the_probe_reads_and_a_line_that_prints_it():
    assert {f.type for f in FIELDS} <= TYPES
    assert len(FIELDS) >= 40
    script = HostProbe().command(8000, "/c", "m", "cpu")
    assert all(f"{getattr(f.printed, 'prefix', f.name + '=')}" in script for f in FIELDS)


def test_what_the_script_prints_is_exactly_probe_with_every_value_typed(printed):
    probe = Probe.parse(printed, strict=True)  # refuses a key with no field, or a field not printed
    for f in FIELDS:
        value = getattr(probe, f.name)
        assert isinstance(value, getattr(f.type, "__origin__", f.type)), (f.name, value)
    assert set(probe.nix_builds) == {"nvidia", "cpu"}
    assert set(probe.release_sha) == {"vllm_service", "vllm_env", "release_conf"}
    assert probe.kernel == subprocess.run(["uname", "-r"], capture_output=True, text=True).stdout.strip()
    # This machine has no Docker daemon.json and no vLLM: the typed defaults, not the text.
    assert probe.vllm_main_pid == 0 and probe.firewall is False


def test_only_fields_printed_when_true_may_be_absent(printed):
    keys = set(key_values(printed))
    conditional = {f.name for f in FIELDS if isinstance(f.printed, Printed) and not f.always}
    assert conditional == {"reboot_required", "nvidia_rpm", "epel", "cdi_spec", "unit_method", "runc_needed_by"}
    assert {f.name for f in FIELDS if f.always} <= keys


def test_booleans_are_read_from_the_words_the_script_prints():
    assert Probe.of({"headers": "yes", "nouveau": "no", "cdi_spec": "current"}) == Probe(headers=True, cdi_spec=True)
    assert Probe.of({"shm_kib": "65536", "shm_kib_x": "1"}).shm_kib == 65536
    assert Probe.of({"vllm_main_pid": "", "gfx": "gfx942,gfx90a,"}) == Probe(gfx=("gfx942", "gfx90a"))


@pytest.mark.parametrize(
    "values, words",
    [
        ({"headers": "true"}, "headers: 'true' is neither 'yes' nor 'no'"),
        ({"cdi_spec": "yes"}, "cdi_spec: 'yes' is neither 'current' nor 'no'"),
        ({"shm_kib": "64M"}, "shm_kib: '64M' is not a whole number"),
    ],
)
def test_a_value_of_the_wrong_type_is_refused_naming_the_key(values, words):
    with pytest.raises(ProbeError, match=words):
        Probe.of(values)


def test_strict_reading_refuses_an_unknown_key_and_names_the_missing_ones(printed):
    with pytest.raises(ProbeError, match=r"keys it has no field for: \['gpu_temp'\]; fields it did not print: none"):
        Probe.parse([*printed, "gpu_temp=41"], strict=True)
    without = [line for line in printed if not line.startswith("selinux=")]
    with pytest.raises(ProbeError, match=r"no field for: none; fields it did not print: \['selinux'\]"):
        Probe.parse(without, strict=True)


def test_the_recorded_sandbox_probe_is_an_older_probes_output():
    """The fixture was recorded on a sandbox host before later fields were added: read as the fact
    reads a host (keys of another probe left out, missing fields at their defaults), never strictly."""
    recorded = key_values(FIXTURE.read_text().splitlines())
    probe = Probe.of(recorded)
    assert probe.docker and not probe.headers and probe.shm_kib == 8388608
    assert probe.docker_runtimes == ("io.containerd.runc.v2", "io.containerd.runtime.v1.linux", "runc")
    with pytest.raises(ProbeError, match=r"no field for: \['os_id', 'os_version'\]; .*'held'"):
        Probe.of(recorded, strict=True)


def test_daemon_json_is_parsed_once_into_its_keys_or_why_not():
    assert Probe.of({"daemon_json": '{"runtimes": {"nvidia": {}}}'}).daemon_config == {"runtimes": {"nvidia": {}}}
    assert Probe().daemon_config == {}
    assert str(Probe.of({"daemon_json": "{"}).daemon_config).startswith("it does not parse as JSON")


def test_the_image_to_serve_is_read_by_its_local_id(tmp_path):
    docker = tmp_path / "docker"
    docker.write_text('#!/bin/sh\n[ "$5" = "vllm/vllm-openai:v1" ] && echo sha256:1234\n')
    docker.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}

    def image_id(image: str) -> str:
        script = HostProbe().command(8000, "/c", "m", "cpu", image)
        printed = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60, env=env).stdout
        return Probe.parse(printed.splitlines()).image_id

    assert image_id("vllm/vllm-openai:v1") == "sha256:1234"
    assert image_id("vllm/vllm-openai:v2") == ""  # not loaded
    assert image_id("") == ""  # served by Nix: Docker is not asked


def test_the_nvidia_libraries_version_is_read_from_nvmls_file_name(tmp_path):
    """ldconfig names libnvidia-ml.so.1, a link to the release's own file (libnvidia-ml.so.580.95.05)."""
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libnvidia-ml.so.580.95.05").touch()
    (tmp_path / "lib" / "libnvidia-ml.so.1").symlink_to(tmp_path / "lib" / "libnvidia-ml.so.580.95.05")
    ldconfig = tmp_path / "ldconfig"
    ldconfig.write_text(f'#!/bin/sh\necho "\tlibnvidia-ml.so.1 (libc6,x86-64) => {tmp_path}/lib/libnvidia-ml.so.1"\n')
    ldconfig.chmod(0o755)
    script = HostProbe().command(8000, "/c", "m", "cpu")
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    printed = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60, env=env).stdout
    probe = Probe.parse(printed.splitlines())
    assert probe.nvidia_libraries == "580.95.05"
    assert Probe(nvidia_driver="580.82.07", nvidia_libraries="580.95.05").nvidia_mismatch
    assert not Probe(nvidia_driver="580.95.05", nvidia_libraries="580.95.05").nvidia_mismatch
    assert not Probe(nvidia_driver="", nvidia_libraries="580.95.05").nvidia_mismatch  # no module loaded yet


def test_dockerds_version_is_read_as_it_prints_it(tmp_path):
    dockerd = tmp_path / "dockerd"
    dockerd.write_text('#!/bin/sh\necho "Docker version 20.10.24+dfsg1, build 297e128"\n')
    dockerd.chmod(0o755)
    script = HostProbe().command(8000, "/c", "m", "cpu")
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    printed = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60, env=env).stdout
    assert Probe.parse(printed.splitlines()).dockerd_version == "20.10.24"
