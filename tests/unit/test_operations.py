"""secret_file: what it runs to write a root-only file, read as commands and, where this machine
allows (root, runuser), run for real with the SSH user's part played by nobody."""

from __future__ import annotations

import hashlib
import os
import pwd
import shlex
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from pyinfra.api import FileUploadCommand, StringCommand
from pyinfra.context import ctx_host
from pyinfra.facts.files import File, Sha256File

from vllm_fleet import paths
from vllm_fleet.operations import secret_file, secret_file_commands
from vllm_fleet.paths import UPLOAD_DIR, UPLOAD_FILE

DEST = "/etc/vllm-fleet/releases/1/vllm.env"
STAGED = "/etc/vllm-fleet/releases/1/.vllm.env.new"
DATA = b"VLLM_API_KEY=fake-key-for-the-operation-test\n"


def rendered(commands) -> list[str]:
    """Each command as the host's shell gets it; an upload as UPLOAD <dest> VIA <staging file>."""
    out = []
    for command in commands:
        if isinstance(command, FileUploadCommand):
            out.append(f"UPLOAD {command.dest} VIA {command.remote_temp_filename}")
        else:
            assert isinstance(command, StringCommand)
            out.append(command.get_raw_value())
    return out


def test_the_upload_is_staged_in_a_directory_of_the_ssh_user_alone_and_removed_after():
    commands = rendered(secret_file_commands(DEST, DATA))
    user = '"${SUDO_USER:-$(id -un)}"'
    assert commands == [
        f"install -m 600 -o root -g root /dev/null {STAGED}",
        f"rm -rf {UPLOAD_DIR}",
        f"install -d -m 700 -o {user} {UPLOAD_DIR}",
        f"install -m 600 -o {user} /dev/null {UPLOAD_FILE}",
        f"UPLOAD {STAGED} VIA {UPLOAD_FILE}",
        f"rm -rf {UPLOAD_DIR}",
        f"mv -f {STAGED} {DEST}",
    ]
    assert UPLOAD_FILE.startswith(UPLOAD_DIR + "/") and os.path.isabs(UPLOAD_FILE)
    # /run is root's: no other user can have made the directory first.
    assert UPLOAD_DIR.startswith("/run/")
    [upload] = [c for c in secret_file_commands(DEST, DATA) if isinstance(c, FileUploadCommand)]
    assert upload.src.read() == DATA


def test_paths_reach_the_shell_quoted():
    dest = "/etc/odd dir/it's; rm -rf x.env"
    for command in secret_file_commands(dest, DATA):
        if isinstance(command, StringCommand):
            words = shlex.split(command.get_raw_value())
            assert ";" not in words and "x.env" not in words
    assert shlex.split(rendered(secret_file_commands(dest, DATA))[-1]) == [
        "mv",
        "-f",
        "/etc/odd dir/.it's; rm -rf x.env.new",
        dest,
    ]


class FakeHost:
    """The facts secret_file reads: the destination's File fact and its SHA-256."""

    def __init__(self, file: dict | None, sha256: str | None = None):
        self.facts = {File: file, Sha256File: sha256}

    def get_fact(self, fact, path):
        assert path == DEST
        return self.facts[fact]


def run_operation(fake: FakeHost) -> list[str]:
    with ctx_host.use(fake):
        return rendered(secret_file._inner(dest=DEST, content=DATA.decode()))


def test_the_operation_writes_only_new_content_and_repairs_ownership_without_rewriting():
    same = hashlib.sha256(DATA).hexdigest()
    root_only = {"mode": 600, "user": "root", "group": "root"}
    expected = rendered(secret_file_commands(DEST, DATA))
    assert run_operation(FakeHost(None)) == expected
    assert run_operation(FakeHost(root_only, "0" * 64)) == expected
    assert run_operation(FakeHost(root_only, same)) == []
    assert run_operation(FakeHost({**root_only, "mode": 644}, same)) == [f"chown root:root {DEST}", f"chmod 600 {DEST}"]


def _as_root(command: str, env: dict) -> None:
    # pyinfra under _sudo runs `sudo -H -n sh -c '...'`; sudo sets SUDO_USER.
    subprocess.run(["sh", "-c", command], env=env, check=True)


def _mode(path: Path) -> tuple[int, str]:
    st = path.stat()
    return stat.S_IMODE(st.st_mode), pwd.getpwuid(st.st_uid).pw_name


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runuser"), reason="needs root and runuser")
def test_the_sequence_under_sudo_leaves_no_copy_anyone_else_could_read(monkeypatch):
    """Run as pyinfra's SSH connector does under _sudo: our commands as root with SUDO_USER set,
    the upload as the SSH user, then pyinfra's own `cp` as root and `rm -f` as the SSH user."""
    base = Path(tempfile.mkdtemp(prefix="secret-file-"))
    try:
        base.chmod(0o755)  # stands in for /run: root's, anyone may pass through
        config = base / "releases"
        config.mkdir(mode=0o700)
        dest = config / "vllm.env"
        upload_dir, upload_file = base / "upload", base / "upload" / "content"
        monkeypatch.setattr(paths, "UPLOAD_DIR", str(upload_dir))
        monkeypatch.setattr(paths, "UPLOAD_FILE", str(upload_file))
        upload_dir.mkdir()
        (upload_dir / "left-by-a-dropped-run").write_text("old")
        env = {**os.environ, "SUDO_USER": "nobody"}
        for command in secret_file_commands(str(dest), DATA):
            if isinstance(command, StringCommand):
                _as_root(command.get_raw_value(), env)
                continue
            assert command.remote_temp_filename == str(upload_file)
            assert not (upload_dir / "left-by-a-dropped-run").exists()
            assert _mode(upload_dir) == (0o700, "nobody") and _mode(upload_file) == (0o600, "nobody")
            # The shell's > opens as SFTP's server does: O_WRONLY|O_CREAT|O_TRUNC, 0666 less the umask.
            subprocess.run(
                ["runuser", "-u", "nobody", "--", "sh", "-c", 'umask 022; cat > "$1"', "sh", str(upload_file)],
                input=command.src.read(),
                check=True,
            )
            assert _mode(upload_file) == (0o600, "nobody")
            _as_root(f"cp {command.remote_temp_filename} {shlex.quote(command.dest)}", env)
            subprocess.run(["runuser", "-u", "nobody", "--", "rm", "-f", command.remote_temp_filename], check=True)
            assert _mode(Path(command.dest)) == (0o600, "root")
        assert dest.read_bytes() == DATA and _mode(dest) == (0o600, "root")
        assert not upload_dir.exists() and not (config / ".vllm.env.new").exists()
    finally:
        shutil.rmtree(base)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_connected_as_root_the_staging_directory_is_roots():
    base = Path(tempfile.mkdtemp(prefix="secret-file-"))
    try:
        env = {k: v for k, v in os.environ.items() if k != "SUDO_USER"}
        command = next(c for c in secret_file_commands("/x", DATA) if "install -d" in str(c))
        _as_root(command.get_raw_value().replace(UPLOAD_DIR, str(base / "upload")), env)
        assert _mode(base / "upload") == (0o700, "root")
    finally:
        shutil.rmtree(base)
