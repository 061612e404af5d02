"""Operations pyinfra does not have in the form we need."""

from __future__ import annotations

import hashlib
import posixpath
from io import BytesIO

from pyinfra import host
from pyinfra.api import FileUploadCommand, FunctionCommand, StringCommand, operation
from pyinfra.facts.files import File, Sha256File
from pyinfra.operations import files


def root_only_directory(path: str, name: str):
    """A directory only root can enter (it holds secrets)."""
    return files.directory(name=name, path=path, user="root", group="root", mode="700")


@operation(is_idempotent=False)
def stop_host(reasons: list[str]):
    """Fails the host with the reasons given; pyinfra runs nothing more on it, the others go on."""

    def report(state, host):
        for reason in reasons:
            host.log_styled(f"stopped: {reason}", fg="red")
        return False

    yield FunctionCommand(report, (), {})


@operation()
def barrier():
    """Does nothing on the host. Called from the same line for several hosts, it is one step
    in pyinfra's order of operations that every later step of theirs waits for."""
    yield from ()


@operation()
def secret_file(dest: str, content: str):
    """A root-only (0600) file holding secrets.

    Unlike files.put it never prints a diff (its content is secret), and the new
    content is written into the file's own directory, which must already be
    root-only (0700), then renamed into place: at no moment can anyone but root
    read it, and a dropped connection leaves the old file whole.
    """
    data = content.encode()
    want = hashlib.sha256(data).hexdigest()
    current = host.get_fact(File, path=dest)
    changed_content = not current or host.get_fact(Sha256File, path=dest) != want
    staged = posixpath.join(posixpath.dirname(dest), f".{posixpath.basename(dest)}.new")
    if changed_content:
        yield StringCommand("install", "-m", "600", "-o", "root", "-g", "root", "/dev/null", staged)
        # Only used under _sudo: pyinfra's default staging file is in /tmp under the SSH
        # user's umask; a relative path puts it in that user's home, and pyinfra removes it.
        yield FileUploadCommand(BytesIO(data), staged, remote_temp_filename=".vllm-fleet-upload.tmp")
        yield StringCommand("mv", "-f", staged, dest)
    elif not current or current["mode"] != 600 or current["user"] != "root" or current["group"] != "root":
        yield StringCommand("chown", "root:root", dest)
        yield StringCommand("chmod", "600", dest)
