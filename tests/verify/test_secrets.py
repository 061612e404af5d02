"""Secrets live only in root-only files and never in a process's arguments."""

import pytest

from vllm_fleet import launch


def test_env_file_is_root_only(target):
    env = target.host.file(launch.ENV_FILE)
    assert env.exists
    assert (env.user, env.group, env.mode) == ("root", "root", 0o600)
    assert target.host.file(launch.CONFIG_DIR).mode == 0o700


def test_secrets_not_in_process_arguments(target):
    # The secrets are read on the host, from the file only root can read, so the
    # runner needs none of them.
    values = target.host.check_output(f"sed -n 's/^[A-Z_]*=//p' {launch.ENV_FILE}").split()
    if not values:
        pytest.skip(f"{target.name} has no secret set")
    args = target.host.check_output("ps -eo args")
    # `docker run ... --model` or the Nix-built server's `... --model`: the process that would carry them.
    assert f"--model {target.settings.vllm_model}" in args, f"the vLLM process is missing from ps on {target.name}"
    for value in values:
        assert value not in args, f"a secret appears in a process's arguments on {target.name}"
