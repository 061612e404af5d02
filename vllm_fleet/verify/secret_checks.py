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
HAPROXY_CONFIG = paths.HAPROXY_CONFIG
GATEWAY_CERTIFICATE = paths.GATEWAY_CERTIFICATE
ALERTMANAGER_CONFIG = paths.ALERTMANAGER_CONFIG
# Where a leaked copy could lie; /proc and /sys are the kernel's, not files anyone wrote.
SEARCHED = "/etc /var /root /home /tmp /srv /opt /usr/local /run"
JOURNAL = "journalctl -b --no-pager -q -o cat"

# A "Bearer ..." word of haproxy.cfg (haproxy.haproxy_quote), its escapes undone.
_QUOTED_BEARER = r'"Bearer \(\([^"\\]\|\\.\)*\)".*/\1/;s/\\\(.\)/\1/g'
# The process that reads a role's secrets, by the name a failure gives it.
HOLDING_PROCESS = {"vllm": "the vLLM process", "gateway": "HAProxy", "monitoring": "Alertmanager"}


def _secrets(role: str) -> str:
    """A shell command printing the secrets a host of this role holds, one per line, read from the
    root-only files the deploy wrote them to, as the process that reads them takes them."""
    if role == "gateway":
        # The clients' key, as written; the vLLM hosts' key in the headers HAProxy sends, where
        # it is a log-format string (haproxy.haproxy_format: % doubled). With TLS, the private
        # key's first line stands for the whole key.
        return (
            f"{{ sed -n -e '/-m str \"Bearer /{{s/.*-m str {_QUOTED_BEARER};p}}' "
            f"-e '/ Authorization \"Bearer /{{s/.* Authorization {_QUOTED_BEARER};s/%%/%/g;p}}' "
            f"{shlex.quote(HAPROXY_CONFIG)}; "
            f"sed -n '/^-----BEGIN .*PRIVATE KEY-----$/{{n;p}}' {shlex.quote(GATEWAY_CERTIFICATE)} 2>/dev/null; }}"
        )
    if role == "monitoring":
        # Alertmanager's YAML (monitoring.alertmanager): a plain or a single-quoted scalar.
        return (
            "sed -n 's/^ *\\(credentials\\|smtp_auth_password\\): //p' "
            f"{shlex.quote(ALERTMANAGER_CONFIG)} | sed \"/^'/{{s/^'\\(.*\\)'$/\\1/;s/''/'/g}}\""
        )
    return f"sed -n 's/^[A-Z_]*=//p' {shlex.quote(ENV_FILE)}"


def secrets_command(role: str) -> str:
    """_secrets, each once and no empty line: grep -F reads an empty pattern as one that matches
    everything."""
    return f"{{ {_secrets(role)}; }} | sed '/^$/d' | sort -u"


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
    return _count(target, f"{secrets_command(target.role)} | wc -l", "the secrets it holds")


def running_with(target, arguments: str) -> bool:
    """Whether a process on the host runs with these arguments (`--model NAME`)."""
    # Counted on the host: `ps` would bring every process's arguments back, a leaked secret's too.
    pattern = shlex.quote(_ere_literal(arguments))
    return _count(target, f"pgrep -fc -- {pattern}", "processes") > 0


def holding_process_runs(target) -> bool:
    """Whether the process that reads the host's secrets runs (a search of its arguments finds
    nothing when it does not): vLLM serving the host's model, HAProxy on its configuration, our
    Alertmanager (the flags the deploy gives it)."""
    if target.role == "gateway":
        return running_with(target, f"-f {HAPROXY_CONFIG}")
    if target.role == "monitoring":
        return running_with(target, "prometheus-alertmanager --web.listen-address=")
    return running_with(target, f"--model {target.settings.vllm_model}")


def processes_holding_a_secret(target) -> list[int]:
    """PIDs of the host's processes with a secret on their command line."""
    # grep reads the patterns from stdin: no secret is on its command line, or on any other here.
    result = target.host.run(f"{secrets_command(target.role)} | grep -lsF -f - /proc/[0-9]*/cmdline")
    # grep exits 2 for a process gone before it was read: only the output's shape says it worked.
    found = [re.fullmatch(r"/proc/(\d+)/cmdline", line) for line in result.stdout.split()]
    if not all(found):
        pytest.fail(f"cannot search the processes' arguments on {target.name}", pytrace=False)
    return sorted(int(match[1]) for match in found if match)


def files_readable_by(target, user: str) -> list[str]:
    """Files under SEARCHED that `user` can read and that hold a secret, by name."""
    # Run as the user: grep exits 2 where it may not read, which is the point, and -s keeps that quiet.
    search = f"runuser -u {shlex.quote(user)} -- grep -rlsF -f - {SEARCHED}"
    result = target.host.run(f"{secrets_command(target.role)} | {search}")
    names = result.stdout.splitlines()
    if not all(name.startswith("/") for name in names):
        pytest.fail(f"cannot search the files {user} can read on {target.name}", pytrace=False)
    return names


def journal_lines_holding_a_secret(target) -> int:
    """How many lines of this boot's journal hold a secret."""
    # The journal is grep's stdin, so the patterns go through a file only its owner (root) reads.
    return _count(
        target,
        f'p=$(mktemp) && {{ {secrets_command(target.role)} > "$p" && {JOURNAL} | grep -cF -f "$p"; }}; rm -f "$p"',
        "the journal's lines holding a secret",
    )


def process_runs(target, pid: int, text: str) -> bool:
    """Whether process pid's command line holds text (read on the host: it may hold a secret too)."""
    command = f"tr '\\0' ' ' < /proc/{int(pid)}/cmdline | grep -cF -- {shlex.quote(text)}"
    return _count(target, command, f"process {pid}'s arguments") > 0
