"""Operations pyinfra does not have in the form we need."""

from __future__ import annotations

import hashlib
import posixpath
from collections.abc import Callable
from io import BytesIO
from typing import ParamSpec, TypeVar, cast

from pyinfra import host
from pyinfra.api import FileUploadCommand, FunctionCommand, QuoteString, StringCommand, operation
from pyinfra.api.deploy import deploy as pyinfra_deploy
from pyinfra.facts.files import File, Sha256File
from pyinfra.operations import files

from vllm_fleet import paths

P = ParamSpec("P")
R = TypeVar("R")


def deploy(name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """pyinfra's @deploy, typed as what it does: the task called with its own arguments, returning
    what the task returns.

    pyinfra's stubs type a deploy as a PyinfraOperation, whose call takes pyinfra's global
    arguments (_sudo, ...) first and returns an OperationMeta. At run time the wrapper passes the
    task its arguments and hands back its return value (the operations a task returns for the next
    task's `_if`); the tasks take no global arguments, so the task's own signature is the true one.
    """

    def decorate(task: Callable[P, R]) -> Callable[P, R]:
        return cast(Callable[P, R], pyinfra_deploy(name)(task))

    return decorate


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


# The user pyinfra connects as: sudo names it in SUDO_USER; connected as root, there is no sudo.
_CONNECTING_USER = '"${SUDO_USER:-$(id -un)}"'


def secret_file_commands(dest: str, data: bytes) -> list[StringCommand | FileUploadCommand]:
    """What secret_file runs to write new content into dest (see secret_file).

    The staging directory is removed before the new content moves into place: a connection
    dropped earlier than that leaves dest's old content, so the next deploy writes it again and
    removes the leftover first.
    """
    staged = posixpath.join(posixpath.dirname(dest), f".{posixpath.basename(dest)}.new")
    upload_dir, upload_file = QuoteString(paths.UPLOAD_DIR), QuoteString(paths.UPLOAD_FILE)
    return [
        StringCommand("install", "-m", "600", "-o", "root", "-g", "root", "/dev/null", QuoteString(staged)),
        StringCommand("rm", "-rf", upload_dir),
        StringCommand("install", "-d", "-m", "700", "-o", _CONNECTING_USER, upload_dir),
        # SFTP's open truncates an existing file and keeps its mode: the upload never widens it.
        StringCommand("install", "-m", "600", "-o", _CONNECTING_USER, "/dev/null", upload_file),
        # Connected as root, pyinfra uploads straight into staged, which keeps its 0600 alike.
        FileUploadCommand(BytesIO(data), staged, remote_temp_filename=paths.UPLOAD_FILE),
        StringCommand("rm", "-rf", upload_dir),
        StringCommand("mv", "-f", QuoteString(staged), QuoteString(dest)),
    ]


@operation()
def secret_file(dest: str, content: str):
    """A root-only (0600) file holding secrets.

    Unlike files.put it never prints a diff (its content is secret), and the new
    content is written into the file's own directory, which must already be
    root-only (0700), then renamed into place: at no moment can anyone but root
    read it, and a dropped connection leaves the old file whole. Under _sudo the
    upload passes through UPLOAD_FILE, which only root and the SSH user can read.
    """
    data = content.encode()
    want = hashlib.sha256(data).hexdigest()
    current = host.get_fact(File, path=dest)
    changed_content = not current or host.get_fact(Sha256File, path=dest) != want
    if changed_content:
        yield from secret_file_commands(dest, data)
    elif not current or current["mode"] != 600 or current["user"] != "root" or current["group"] != "root":
        yield StringCommand("chown", "root:root", QuoteString(dest))
        yield StringCommand("chmod", "600", QuoteString(dest))


def content_differs(path: str, content: str) -> bool:
    """Whether the host's file at path holds other content (or none)."""
    return host.get_fact(Sha256File, path=path) != hashlib.sha256(content.encode()).hexdigest()
