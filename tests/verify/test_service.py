"""vllm.service is enabled, active, and runs the configured image."""

from vllm_fleet import launch


def test_service_enabled_and_active(target):
    service = target.host.service(launch.SERVICE)
    assert service.is_enabled, f"{launch.SERVICE} is not enabled on {target.name}"
    assert service.is_running, f"{launch.SERVICE} is not running on {target.name}"


def test_container_runs_configured_image(target):
    result = target.host.run(
        f"docker inspect --format '{{{{.State.Running}}}} {{{{.Config.Image}}}}' {launch.CONTAINER_NAME}"
    )
    assert result.rc == 0, f"no container {launch.CONTAINER_NAME} on {target.name}: {result.stderr.strip()}"
    running, image = result.stdout.split()
    assert running == "true"
    assert image == launch.image(target.settings, target.accelerator)
