"""Secrets live only in root-only files and never in a process's arguments."""

import pytest

from vllm_fleet import launch


def test_env_file_is_root_only(target):
    link = target.host.file(launch.ENV_FILE)
    assert link.is_symlink, f"{launch.ENV_FILE} on {target.name} is not the current release's env file"
    env = target.host.file(link.linked_to)
    assert env.exists and env.path.startswith(launch.RELEASES_DIR + "/")
    assert (env.user, env.group, env.mode) == ("root", "root", 0o600)
    for directory in (launch.CONFIG_DIR, launch.RELEASES_DIR):
        assert target.host.file(directory).mode == 0o700, f"{directory} on {target.name} is not root-only"


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
