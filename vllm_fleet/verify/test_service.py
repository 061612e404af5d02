"""vllm.service is enabled, active, and runs the configured image or Nix build."""

import pytest
from secret_checks import process_runs

from vllm_fleet import launch, nix, paths


def test_service_enabled_and_active(target):
    service = target.host.service(paths.SERVICE)
    assert service.is_enabled, f"{paths.SERVICE} is not enabled on {target.name}"
    assert service.is_running, f"{paths.SERVICE} is not running on {target.name}"


def test_service_runs_the_current_release(target):
    current = f"{paths.RELEASES_DIR}/current/vllm.service"
    digests = target.host.check_output(f"sha256sum {paths.UNIT_PATH} {current} | cut -d' ' -f1").split()
    assert len(digests) == 2 and digests[0] == digests[1], f"{paths.SERVICE} on {target.name} is not {current}"


def test_container_runs_configured_image(target):
    if target.settings.serving_method != "docker":
        pytest.skip(f"{target.name} serves vLLM with {target.settings.serving_method}")
    result = target.host.run(
        f"docker inspect --format '{{{{.State.Running}}}} {{{{.Config.Image}}}}' {paths.CONTAINER_NAME}"
    )
    assert result.rc == 0, f"no container {paths.CONTAINER_NAME} on {target.name}: {result.stderr.strip()}"
    running, image = result.stdout.split()
    assert running == "true"
    assert image == launch.image(target.settings, target.accelerator)


def test_service_runs_the_nix_build(target):
    if target.settings.serving_method != "nix":
        pytest.skip(f"{target.name} serves vLLM with {target.settings.serving_method}")
    link = nix.out_link(target.accelerator)
    built = target.host.run(f"readlink {link}")
    assert built.rc == 0 and built.stdout.startswith("/nix/store/"), f"{link} is not a Nix build on {target.name}"
    pid = target.host.check_output(f"systemctl show -p MainPID --value {paths.SERVICE}")
    # Compared on the host: the process's arguments are what a leaked secret would be in.
    assert pid.isdigit() and process_runs(target, int(pid), built.stdout.strip()), (
        f"{paths.SERVICE} on {target.name} (PID {pid}) does not run {built.stdout.strip()}"
    )
