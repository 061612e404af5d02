"""Secrets live only in root-only files: never in a process's arguments, a file an unprivileged
user can read, or the journal. Nothing here prints a secret: the values are read on the host
from the root-only env file and compared there, and a failure names files, not values."""

import pytest

from vllm_fleet import paths

# The secrets, one per line, as the env file holds them (the runner needs none of them).
SECRETS = f"sed -n 's/^[A-Z_]*=//p' {paths.ENV_FILE}"
# Where a leaked copy could lie; /proc and /sys are the kernel's, not files anyone wrote.
SEARCHED = "/etc /var /root /home /tmp /srv /opt /usr/local /run"


def _secrets_set(target) -> None:
    if not target.host.check_output(f"{SECRETS} | wc -l").strip().strip("0"):
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
    assert f"--model {target.settings.vllm_model}" in target.host.check_output("ps -eo args"), (
        f"the vLLM process is missing from ps on {target.name}"
    )
    leaks = target.host.run(f"{SECRETS} | grep -cF -f - /proc/[0-9]*/cmdline 2>/dev/null | grep -v ':0$'")
    assert leaks.stdout.strip() == "", f"a secret appears in a process's arguments on {target.name}"


def test_no_file_an_unprivileged_user_can_read_holds_a_secret(target):
    _secrets_set(target)
    assert target.host.run("runuser -u nobody -- true").rc == 0, f"cannot run as nobody on {target.name}"
    # grep exits 2 where nobody may not read, which is the point: only what it could read counts.
    readable = target.host.run(f"{SECRETS} | runuser -u nobody -- grep -rlsF -f - {SEARCHED}")
    assert readable.stdout.strip() == "", f"files any user can read hold a secret on {target.name}: {readable.stdout}"


def test_no_secret_in_the_journal(target):
    _secrets_set(target)
    # mktemp makes a file only its owner (root) reads; grep counts lines, printing none.
    count = target.host.check_output(
        f'p=$(mktemp) && {SECRETS} > "$p" && journalctl -b --no-pager -q -o cat | grep -cF -f "$p"; rm -f "$p"'
    )
    assert count.strip() == "0", f"{count.strip()} journal lines on {target.name} hold a secret"
