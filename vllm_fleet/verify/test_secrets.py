"""Secrets live only in root-only files: never in a process's arguments, a file an unprivileged
user can read, or the journal. Nothing here prints a secret: the values are read on the host
from the root-only env file and searched for there (secret_checks), and a failure names
processes and files, not values."""

import pytest
from secret_checks import (
    files_readable_by,
    journal_lines_holding_a_secret,
    processes_holding_a_secret,
    running_with,
    secret_count,
)

from vllm_fleet import paths


def _secrets_set(target) -> None:
    if not secret_count(target):
        pytest.skip(f"{target.name} has no secret set")


def test_env_file_is_root_only(target):
    link = target.host.file(paths.ENV_FILE)
    assert link.is_symlink, f"{paths.ENV_FILE} on {target.name} is not the current release's env file"
    env = target.host.file(link.linked_to)
    assert env.exists and env.path.startswith(paths.RELEASES_DIR + "/")
    assert (env.user, env.group, env.mode) == ("root", "root", 0o600)
    for directory in (paths.CONFIG_DIR, paths.RELEASES_DIR):
        assert target.host.file(directory).mode == 0o700, f"{directory} on {target.name} is not root-only"


def test_secrets_not_in_process_arguments(target):
    _secrets_set(target)
    # `docker run ... --model` or the Nix-built server's `... --model`: the process that would carry them.
    assert running_with(target, f"--model {target.settings.vllm_model}"), (
        f"the vLLM process is missing on {target.name}"
    )
    leaks = processes_holding_a_secret(target)
    assert not leaks, f"a secret appears in the arguments of processes {leaks} on {target.name}"


def test_no_file_an_unprivileged_user_can_read_holds_a_secret(target):
    _secrets_set(target)
    assert target.host.run("runuser -u nobody -- true").rc == 0, f"cannot run as nobody on {target.name}"
    readable = files_readable_by(target, "nobody")
    assert not readable, f"files any user can read hold a secret on {target.name}: {readable}"


def test_no_secret_in_the_journal(target):
    _secrets_set(target)
    count = journal_lines_holding_a_secret(target)
    assert count == 0, f"{count} journal lines on {target.name} hold a secret"
