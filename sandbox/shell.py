"""How the sandbox tool runs commands on this machine: a failed command stops the tool (run), or
is only answered yes or no (quiet)."""

from __future__ import annotations

import os
import subprocess


def log(msg: str) -> None:
    print(f"[sandbox] {msg}", flush=True)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, text=True, **kw)


def quiet(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
    except FileNotFoundError:
        return False  # the program is not installed


def as_root(cmd: list[str]) -> list[str]:
    return cmd if os.geteuid() == 0 else ["sudo", *cmd]


def image_exists(tag: str) -> bool:
    return quiet(["docker", "image", "inspect", tag])
