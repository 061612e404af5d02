"""Sandbox state holds an SSH key, an API key and image archives: it must never be committed."""

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("state_dir", [".state"])
def test_sandbox_state_is_ignored_and_untracked(state_dir):
    path = f"tests/sandbox/{state_dir}/id_ed25519"
    ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO)
    assert ignored.returncode == 0, f"{path} is not git-ignored"
    tracked = subprocess.run(
        ["git", "ls-files", f"tests/sandbox/{state_dir}"], cwd=REPO, capture_output=True, text=True
    )
    assert tracked.stdout == ""
