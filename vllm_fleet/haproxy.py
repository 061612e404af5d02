"""HAProxy on a gateway host: its runtime API's socket, the helper rollouts drain hosts through,
and `show stat` read by the column names of its header line (not by position)."""

from __future__ import annotations

import csv

from vllm_fleet import paths

SHOW_STAT = f"echo 'show stat' | socat stdio unix-connect:{paths.HAPROXY_ADMIN_SOCKET}"


def parse_show_stat(text: str, backend: str = paths.HAPROXY_BACKEND) -> dict[str, dict[str, str]]:
    """Server -> {column: value} for the servers of `backend`, from `show stat`'s CSV, whose first
    line names the columns ("# pxname,svname,qcur,..."; "#pxname,..." from older releases)."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("#"):
        raise ValueError(f"not HAProxy's show stat output: {text[:80]!r}")
    header = lines[0].lstrip("# ").split(",")
    rows = csv.DictReader(lines[1:], fieldnames=header)
    return {
        row["svname"]: row
        for row in rows
        if row.get("pxname") == backend and row.get("svname") not in ("FRONTEND", "BACKEND")
    }


def server_status(text: str) -> dict[str, str]:
    """Server -> its status (UP, DOWN, MAINT, DRAIN, ...) in the vLLM backend."""
    return {server: row["status"] for server, row in parse_show_stat(text).items()}
