"""What the verify suite learns about a host's secrets: counts and places, never a value.

The runner holds no secret: the suite's settings say "<set>" where the inventory has one. The
values are read on the host, from the root-only env file, and searched for there; what comes
back is a count, PIDs or file names. So neither an assertion's detail (pytest shows both sides),
nor testinfra's log of each command's output, nor the JUnit report can carry one. Nothing here
raises with a host's output in its message or its frame's arguments.
"""

from __future__ import annotations

import re
import shlex

import pytest

from vllm_fleet import paths

# Module globals, read when a check runs (the unit tests point them at files of their own).
ENV_FILE = paths.ENV_FILE
# Where a leaked copy could lie; /proc and /sys are the kernel's, not files anyone wrote.
SEARCHED = "/etc /var /root /home /tmp /srv /opt /usr/local /run"
JOURNAL = "journalctl -b --no-pager -q -o cat"


def _secrets() -> str:
    """A shell command printing the secrets, one per line, as the env file holds them."""
    return f"sed -n 's/^[A-Z_]*=//p' {shlex.quote(ENV_FILE)}"


def _count(target, command: str, what: str) -> int:
    result = target.host.run(command)
    text = result.stdout.strip()
    if not text.isdigit():
        # grep -c exits 1 when it counts 0, and 2 on an error: only the printed count says which.
        pytest.fail(f"cannot count {what} on {target.name} (exit status {result.rc})", pytrace=False)
    return int(text)


def _ere_literal(text: str) -> str:
    """An extended regular expression matching text; spelled [-][-]model, it does not match the
    command lines that carry it (the shells around pgrep)."""
    special = {"]": "[]]", "^": "\\^", "\\": "[\\]"}
    return "".join(c if c.isalnum() else special.get(c, f"[{c}]") for c in text)


def secret_count(target) -> int:
    """How many secrets the host's env file holds."""
    return _count(target, f"{_secrets()} | wc -l", "the secrets in its env file")


def running_with(target, arguments: str) -> bool:
    """Whether a process on the host runs with these arguments (`--model NAME`)."""
    # Counted on the host: `ps` would bring every process's arguments back, a leaked secret's too.
    pattern = shlex.quote(_ere_literal(arguments))
    return _count(target, f"pgrep -fc -- {pattern}", "processes") > 0


def processes_holding_a_secret(target) -> list[int]:
    """PIDs of the host's processes with a secret on their command line."""
    # grep reads the patterns from stdin: no secret is on its command line, or on any other here.
    result = target.host.run(f"{_secrets()} | grep -lsF -f - /proc/[0-9]*/cmdline")
    # grep exits 2 for a process gone before it was read: only the output's shape says it worked.
    found = [re.fullmatch(r"/proc/(\d+)/cmdline", line) for line in result.stdout.split()]
    if not all(found):
        pytest.fail(f"cannot search the processes' arguments on {target.name}", pytrace=False)
    return sorted(int(match[1]) for match in found if match)


def files_readable_by(target, user: str) -> list[str]:
    """Files under SEARCHED that `user` can read and that hold a secret, by name."""
    # Run as the user: grep exits 2 where it may not read, which is the point, and -s keeps that quiet.
    result = target.host.run(f"{_secrets()} | runuser -u {shlex.quote(user)} -- grep -rlsF -f - {SEARCHED}")
    names = result.stdout.splitlines()
    if not all(name.startswith("/") for name in names):
        pytest.fail(f"cannot search the files {user} can read on {target.name}", pytrace=False)
    return names


def journal_lines_holding_a_secret(target) -> int:
    """How many lines of this boot's journal hold a secret."""
    # The journal is grep's stdin, so the patterns go through a file only its owner (root) reads.
    return _count(
        target,
        f'p=$(mktemp) && {{ {_secrets()} > "$p" && {JOURNAL} | grep -cF -f "$p"; }}; rm -f "$p"',
        "the journal's lines holding a secret",
    )


def process_runs(target, pid: int, text: str) -> bool:
    """Whether process pid's command line holds text (read on the host: it may hold a secret too)."""
    command = f"tr '\\0' ' ' < /proc/{int(pid)}/cmdline | grep -cF -- {shlex.quote(text)}"
    return _count(target, command, f"process {pid}'s arguments") > 0
