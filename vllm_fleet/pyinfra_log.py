"""pyinfra's log read per host: the lines it printed for each, the operation they came under, and
why a host failed in words an operator can act on, with anything that may be a key hidden."""

from __future__ import annotations

import os
import re
from collections.abc import Collection

from vllm_fleet import releases
from vllm_fleet.settings import SECRET_KNOBS
from vllm_fleet.settings.secrets import redaction_of
from vllm_fleet.vllm_flags import SECRET_FLAGS, TOKEN_PREFIXES

# pyinfra 3's log (pyinfra/api/util.py, pyinfra_cli/log.py): "--> Starting operation: NAME (ARGS)"
# (or "Starting nested operation: ..."), then each host's lines under it as "[HOST] ...".
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STARTING = re.compile(r"(?:-->\s*)?Starting (?:[\w ,]+ )?operation:\s*(?P<op>.*?)\s*")
_PREFIXED = re.compile(r"\[(?P<host>[^\]\s]+)\](?:\s+nested)?(?:\s+(?P<rest>.*))?")
# What pyinfra itself says of a host's operation: no news of why it failed.
_PYINFRA_OWN = re.compile(
    r"(?:Success|No changes|Changed|Skipped|Connected|Error|Error in nested operation)"
    r"(?: on retry \d+)?(?: \(ignored[^)]*\))?(?::\s*executed \d+(?:/\d+)? commands.*)?"
    r"|Retrying .*|Loaded fact .*"
)
_ERRORISH = re.compile(
    r"error|fail|fatal|denied|refused|not found|no such|unable|cannot|can't|timed out|invalid|^E: ", re.IGNORECASE
)
# Our own scripts' words for why they stopped a host (pre-flight, the GPU reboot, the port check).
_OURS = ("stopped:", "pre-flight refused:")


def host_log(name: str, log: str, others: Collection[str] = ()) -> list[tuple[str, str]]:
    """(operation, line) for each line pyinfra printed for this host, the operation '' before
    the first one; a line prefixed with another host of `others` is that host's."""
    mentions = re.compile(rf"(?<![\w.-]){re.escape(name)}(?![\w.-])")
    operation, found = "", []
    for raw in _ANSI.sub("", log).splitlines():
        line = raw.strip()
        starting = _STARTING.fullmatch(line)
        if starting:
            operation = starting["op"]
        elif line.startswith("-->"):
            operation = ""
        elif (prefixed := _PREFIXED.fullmatch(line)) and prefixed["host"] == name:
            found.append((operation, (prefixed["rest"] or "").strip()))
        elif not (prefixed and prefixed["host"] in others) and mentions.search(line):
            # A command's output in our own scripts' words, which name the host.
            found.append((operation, line))
    return found


def last_operations(log: str, names: list[str]) -> dict[str, str]:
    """The last operation pyinfra printed a line for, of each of these hosts that it printed one."""
    last = {}
    for name in names:
        ran = [op for op, _ in host_log(name, log, names) if op]
        if ran:
            last[name] = ran[-1]
    return last


def failure(step: str, entries: list[tuple[str, str]], activation: str, log: str) -> str:
    """Why a host failed, short: the step, then the last few lines the host itself printed in
    it (its errors first), never pyinfra's own summary."""
    ran = [op for op, _ in entries if op]
    where = ran[-1] if ran else None
    step = step or where or ""
    said = [
        line
        for op, line in entries
        if (where is None or op == where)
        and line
        and not _PYINFRA_OWN.fullmatch(line)
        and releases.OUTCOME_MARK not in line
        and not line.startswith("Could not connect")
    ]
    ours = [line for _, line in entries if line.startswith(_OURS)] + ([activation] if activation else [])
    errorish = [line for line in said if _ERRORISH.search(line)]
    detail = _unique([*ours, *(errorish or said)[-3:]])[:3]
    if not step and not detail:
        detail = _pyinfra_errors(log)
    head = f"step '{step}' failed" if step else "failed"
    return redact(": ".join([head, "; ".join(_short(line) for line in detail)]) if detail else head)


def _pyinfra_errors(log: str) -> list[str]:
    """pyinfra's own error, for a host it printed nothing of: one that stopped the whole run
    (an exception in deploy.py, a bad inventory), not its count of hosts left."""
    found = [
        line.strip().removeprefix("-->").strip()
        for line in _ANSI.sub("", log).splitlines()
        if re.search(r"^-->.*(error|exception)|^\w+(Error|Exception): ", line.strip(), re.IGNORECASE)
        and "No hosts remaining" not in line
    ]
    return found[-2:] or ["pyinfra printed nothing of this host"]


def _unique(lines: list[str]) -> list[str]:
    return list(dict.fromkeys(lines))


def _short(line: str, width: int = 300) -> str:
    return line if len(line) <= width else line[: width - 3] + "..."


_FLAGS = "|".join(re.escape(flag) for flag in SECRET_FLAGS)
_SECRETS = [
    # --api-key K, --api-key=K, and in a printed list: '--api-key', 'K'; and as vLLM also reads
    # them (--api_key, --api-k, --hf-tok, ...).
    (re.compile(rf"({_FLAGS}|--api[-_]k[\w-]*|--hf[-_]t[\w-]*)([\"']?(?:=|,?\s+)[\"']?)[^\s\"',]+"), r"\1\2<secret>"),
    (re.compile(r"(Authorization:\s*\w+\s+|Bearer\s+)[^\s\"',]+", re.IGNORECASE), r"\1<secret>"),
    (re.compile(r"\b(\w*(?:key|token|secret|password)\w*=)[^\s\"',]+", re.IGNORECASE), r"\1<secret>"),
    (re.compile(rf"\b(?:{'|'.join(re.escape(p) for p in TOKEN_PREFIXES)})[A-Za-z0-9_-]{{16,}}"), "<secret>"),
]


# Where group_data/all.py reads the inventory's secrets from, each of them (test_rollout.py checks): the
# rollout runs in the same environment, so it knows their values and hides them wherever they appear, whole.
# Each secret knob's environment variable is its name in capitals (group_data/all.py).
SECRET_ENVIRONMENT = tuple(name.upper() for name in SECRET_KNOBS)


def redact(text: str) -> str:
    """Text from a host or pyinfra with what may be a key hidden: it goes into reports and CI logs."""
    text = redaction_of([os.environ.get(name, "") for name in SECRET_ENVIRONMENT]).hide(text)
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def tail(text: str, lines: int = 6) -> str:
    """The last lines of a command's output, on one line, redacted."""
    kept = [line.strip() for line in _ANSI.sub("", text).strip().splitlines() if line.strip()]
    return redact(" | ".join(kept[-lines:]))
