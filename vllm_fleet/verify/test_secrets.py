"""Secrets live only in root-only files: never in a process's arguments, a file an unprivileged
user can read, or the journal, on a host of any role (a vLLM host's keys and token, a gateway's
keys and TLS key, a monitoring host's alerting credentials). Nothing here prints a secret: the
values are read on the host from the root-only files that hold them and searched for there
(secret_checks), and a failure names processes and files, not values."""

import pytest
from secret_checks import (
    HOLDING_PROCESS,
    files_readable_by,
    holding_process_runs,
    journal_lines_holding_a_secret,
    processes_holding_a_secret,
    secret_count,
)

from vllm_fleet import paths


def _secrets_set(host) -> None:
    if not secret_count(host):
        pytest.skip(f"{host.name} has no secret set")


def test_env_file_is_root_only(target):
    link = target.host.file(paths.ENV_FILE)
    assert link.is_symlink, f"{paths.ENV_FILE} on {target.name} is not the current release's env file"
    env = target.host.file(link.linked_to)
    assert env.exists and env.path.startswith(paths.RELEASES_DIR + "/")
    assert (env.user, env.group, env.mode) == ("root", "root", 0o600)
    for directory in (paths.CONFIG_DIR, paths.RELEASES_DIR):
        assert target.host.file(directory).mode == 0o700, f"{directory} on {target.name} is not root-only"


def test_secrets_not_in_process_arguments(any_host):
    _secrets_set(any_host)
    # vLLM's (`docker run ... --model`, or the Nix-built server's), HAProxy, Alertmanager: the
    # process that would carry them.
    assert holding_process_runs(any_host), f"{HOLDING_PROCESS[any_host.role]} is missing on {any_host.name}"
    leaks = processes_holding_a_secret(any_host)
    assert not leaks, f"a secret appears in the arguments of processes {leaks} on {any_host.name}"


def test_no_file_an_unprivileged_user_can_read_holds_a_secret(any_host):
    _secrets_set(any_host)
    assert any_host.host.run("runuser -u nobody -- true").rc == 0, f"cannot run as nobody on {any_host.name}"
    readable = files_readable_by(any_host, "nobody")
    assert not readable, f"files any user can read hold a secret on {any_host.name}: {readable}"


def test_no_secret_in_the_journal(any_host):
    _secrets_set(any_host)
    count = journal_lines_holding_a_secret(any_host)
    assert count == 0, f"{count} journal lines on {any_host.name} hold a secret"
