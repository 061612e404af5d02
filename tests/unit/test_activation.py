"""The activation helper, run for real on a directory laid out like a host: systemctl, logger and
the readiness check are stand-ins that record what they were asked; jq and the file tools are the
real ones. Every command the helper runs is counted as a step, so a test can kill it (SIGKILL, as
systemd or a power cut would) before any of them. Each way out writes its outcome as one JSON
object, which the rollout reads (releases.outcomes_in).

Also here: what the vLLM service's task runs around the activation (tasks/vllm_service.py): the
directory of the activation's log made before it runs, and the image's pull and load commands,
run for real with a stand-in docker."""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

from vllm_fleet import launch, paths, releases, templates
from vllm_fleet.facts import probe as host_probe
from vllm_fleet.facts.probe import Probe

# The helper's external commands besides the stand-ins: each call is a step it can be killed before.
STEPPED = ("ln", "mv", "cp", "rm", "mkdir", "readlink", "basename", "grep", "sed", "jq")
REAL = {name: shutil.which(name) for name in STEPPED}


@dataclass(frozen=True)
class State:
    """What a host would run, read after an activation (or a kill)."""

    current: str | None
    previous: str | None
    unit: str | None  # the release whose unit is installed
    env: str | None  # the release whose env file ENV_FILE names
    running: tuple[str, str]  # (unit, env) of the server the last restart started
    pending: bool


class Host:
    """A directory laid out like a host, with the helper rendered for it. A release's unit and env
    file each carry a line `# release NAME`, so the stand-ins tell which release systemd runs."""

    def __init__(self, root: Path, lay_out: bool = True):
        """lay_out False: a host laid out already at root (a copy of one), taken as it is."""
        self.root = root
        here = root / "etc"
        self.names = {
            "config_dir": here,
            "releases_dir": here / "releases",
            "unit_path": root / "unit",
            "models_dir": root / "models",
            "ready_script": root / "bin" / "vllm-ready",
            "activate_outcome": root / "activate.json",
            "activate_pending": Path(paths.ACTIVATE_PENDING.replace(paths.CONFIG_DIR, str(here))),
        }
        self.script = root / "vllm-activate"
        if lay_out:
            self._lay_out()

    def _lay_out(self) -> None:
        root, here = self.root, self.names["config_dir"]
        bin_ = root / "bin"
        bin_.mkdir(parents=True)
        self.names["releases_dir"].mkdir(parents=True)
        for name in ("steps", "trace", "calls", "running", "verified", "serving"):
            (root / name).write_text("0\n" if name == "steps" else "")

        def prologue(name: str) -> str:
            """Counts the step, and kills the whole activation (its process group) before the step
            numbered KILL_AT; only builtins, so the counting itself is no step."""
            return (
                f'read n < {root}/steps; n=$((n + 1)); echo "$n" > {root}/steps\n'
                f'echo "$n {name} $*" >> {root}/trace\n'
                '[ "$n" != "${KILL_AT:-0}" ] || kill -9 0\n'
            )

        release_of = f"{REAL['sed']} -n 's/^# release //p'"
        unit, env, loaded = self.names["unit_path"], here / "vllm.env", root / "loaded"
        stubs = {
            # daemon-reload loads the installed unit; restart starts what was loaded with the env
            # file as it is then, as systemd does.
            "systemctl": f'echo "systemctl $*" >> {root}/calls\n'
            f'case "$1" in\n'
            f"daemon-reload) {REAL['cp']} {unit} {loaded} ;;\n"
            f'restart) echo "$({release_of} {loaded} 2>/dev/null) $({release_of} {env} 2>/dev/null)" '
            f"> {root}/running ;;\nesac\n",
            "logger": f'echo "logger $*" >> {root}/calls\n',
            # Serves when the server runs one release's unit and env file and that release is in `serving`.
            "vllm-ready": f"read unit env < {root}/running\n"
            f'[ -n "$unit" ] && [ "$unit" = "$env" ] && {REAL["grep"]} -qx "$unit" {root}/serving '
            f'&& echo "$unit" >> {root}/verified\n',
        }
        for name, body in stubs.items():
            (bin_ / name).write_text(f"#!/bin/sh\n{prologue(name)}{body}")
        for name in STEPPED:
            (bin_ / name).write_text(f'#!/bin/sh\n{prologue(name)}exec {REAL[name]} "$@"\n')
        for script in bin_.iterdir():
            script.chmod(0o755)
        self.script.write_text(templates.render("vllm-activate.sh.j2", **{k: str(v) for k, v in self.names.items()}))
        self.script.chmod(0o755)

    def release(self, name: str, like: str | None = None) -> None:
        """A new release directory; like: with another release's files (the deploy staging the same
        wanted contents again)."""
        directory = self.names["releases_dir"] / name
        directory.mkdir()
        if like:
            for file in paths.RELEASE_FILES:
                text = (self.names["releases_dir"] / like / file).read_text()
                (directory / file).write_text(text.replace(f"# release {like}\n", f"# release {name}\n"))
            return
        (directory / "vllm.service").write_text(f"[Unit]\n# release {name}\n")
        (directory / "vllm.env").write_text(f"# release {name}\n")
        (directory / "release.conf").write_text("MODEL=m\nURL=http://127.0.0.1:8000\nTIMEOUT=5\n")

    def legacy(self) -> None:
        """A host deployed before releases: its own unit and env file, loaded and serving."""
        unit = "# Model: m served as m on 0.0.0.0:8000 (docker)\n[Unit]\n# release legacy\n"
        self.names["unit_path"].write_text(unit)
        (self.root / "loaded").write_text(unit)
        (self.names["config_dir"] / "vllm.env").write_text("# release legacy\n")
        (self.root / "running").write_text("legacy legacy\n")
        (self.root / "verified").write_text("legacy\n")

    def run(
        self, name: str, serving: list[str], kill_at: int = 0, result: str | None = None
    ) -> subprocess.CompletedProcess:
        """result: systemd's SERVICE_RESULT, as an ExecStopPost gets it."""
        (self.root / "serving").write_text("".join(f"{s}\n" for s in serving))
        (self.root / "steps").write_text("0\n")
        (self.root / "trace").write_text("")
        env = {"PATH": f"{self.root / 'bin'}:/usr/bin:/bin", "KILL_AT": str(kill_at)}
        if result:
            env["SERVICE_RESULT"] = result
        # A session of its own: the kill takes its process group, never the test's.
        return subprocess.run(
            [str(self.script), "gpu-01", name],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            start_new_session=True,
        )

    def activate(self, name: str, serving: list[str]) -> tuple[int, releases.Outcome, str]:
        done = self.run(name, serving)
        written = self.names["activate_outcome"].read_text()
        outcome = releases.outcomes_in(f"{releases.OUTCOME_MARK} {written}")["gpu-01"]
        return done.returncode, outcome, done.stderr

    def trace(self) -> list[str]:
        return (self.root / "trace").read_text().splitlines()

    def verified(self) -> set[str]:
        """The releases that served: the readiness check said so for them at some point."""
        return set((self.root / "verified").read_text().split())

    def _link(self, name: str) -> str | None:
        link = self.names["releases_dir"] / name
        return os.readlink(link) if link.is_symlink() else None

    def _release_in(self, path: Path) -> str | None:
        if not path.exists():
            return None
        names = [line.removeprefix("# release ") for line in path.read_text().splitlines() if line.startswith("# ")]
        return names[-1] if names else None

    def state(self) -> State:
        unit, env = ((self.root / "running").read_text().split() + ["", ""])[:2]
        return State(
            current=self._link("current"),
            previous=self._link("previous"),
            unit=self._release_in(self.names["unit_path"]),
            env=self._release_in(self.names["config_dir"] / "vllm.env"),
            running=(unit, env),
            pending=self.names["activate_pending"].exists(),
        )

    def settled(self) -> bool:
        """Whether the deploy's probe takes the host as on its current release, wanting the current
        release's own files: then a deploy does nothing to it."""
        current = self._link("current")
        if current is None:
            return False
        lines = (
            host_probe.script(
                host_probe.Where(0, "", "", ()), [f for f in host_probe.FIELDS if f.name.startswith("release_")]
            )
            .replace(paths.CONFIG_DIR, str(self.names["config_dir"]))
            .replace(paths.UNIT_PATH, str(self.names["unit_path"]))
        )
        out = subprocess.run(["sh", "-c", lines], capture_output=True, text=True, check=True).stdout
        wanted = {f: (self.names["releases_dir"] / current / f).read_text() for f in paths.RELEASE_FILES}
        return releases.is_current(Probe.parse(out.splitlines()), wanted)


@pytest.fixture
def host(tmp_path):
    return Host(tmp_path / "host")


def test_a_release_that_serves_becomes_current(host):
    host.release("r1")
    status, outcome, _ = host.activate("r1", serving=["r1"])
    assert status == 0 and outcome.outcome == releases.SERVING and outcome.release == "r1"
    assert host.state() == State("r1", None, "r1", "r1", ("r1", "r1"), pending=False)
    assert host.settled()


def test_a_release_that_does_not_serve_is_rolled_back_and_says_so(host):
    host.release("r1")
    host.activate("r1", serving=["r1"])
    host.release("r2")
    status, outcome, log = host.activate("r2", serving=["r1"])
    assert status == 3 and outcome.outcome == releases.ROLLED_BACK, log
    assert (outcome.release, outcome.fallback) == ("r2", "r1")
    assert outcome.message == (
        "gpu-01 ROLLED BACK to release r1, which serves; release r2 is kept for inspection until the next deploy"
    )
    assert f"vllm-fleet: {outcome.message}" in log
    assert host.state() == State("r1", None, "r1", "r1", ("r1", "r1"), pending=False)
    assert host.settled()


def test_nothing_to_go_back_to_is_a_failure_with_its_reason(host):
    host.release("r1")
    status, outcome, _ = host.activate("r1", serving=[])
    assert status == 1 and outcome.outcome == releases.FAILED
    assert outcome.message == "release r1 did not come up on gpu-01 and there is no earlier release to go back to"
    # A release that never served is not current, and the next deploy tries again.
    assert host.state().current is None and host.state().pending
    status, outcome, _ = host.activate("r9", serving=[])
    assert status == 1 and outcome.message == "gpu-01 has no release 'r9' to activate"


def test_a_failed_restart_goes_back_to_previous_and_stays_unsettled_when_nothing_serves(host):
    for name in ("r0", "r1"):
        host.release(name)
        host.activate(name, serving=["r0", "r1"])
    status, outcome, _ = host.activate("current", serving=["r0"])
    assert (status, outcome.release, outcome.fallback) == (3, "r1", "r0")
    assert host.state() == State("r0", "r0", "r0", "r0", ("r0", "r0"), pending=False)
    status, outcome, _ = host.activate("current", serving=[])
    assert status == 4 and outcome.outcome == releases.FAILED
    assert host.state().current == "r0" and not host.settled()


def test_the_activation_command_prints_the_outcome_after_the_log():
    command = launch.activate_command("gpu-01", "r1", 2100)
    # The log is emptied once, by the wrapper: systemd appends to it for the script and its recovery.
    assert command.startswith(
        "rm -f /var/lib/vllm-fleet/activate.json; : > /var/lib/vllm-fleet/activate.log; systemd-run "
    )
    assert "StandardOutput=append:/var/lib/vllm-fleet/activate.log" in command
    # A oneshot unit would otherwise wait forever; its log is root's alone.
    assert " --property TimeoutStartSec=2100 --property UMask=0077 " in command
    # Killed halfway, the unit starts current again (launch.recovery, run in test_format_checkers).
    assert f"--property 'ExecStopPost={launch.recovery('gpu-01')}' --property TimeoutStopSec=2100 " in command
    assert command.endswith(
        'echo "vllm-fleet-outcome $(cat /var/lib/vllm-fleet/activate.json 2>/dev/null)" >&2; exit $status'
    )


def test_the_activation_command_whole():
    """systemd-run's flags: a oneshot unit that is collected even when it fails, waited for and
    quiet, so that the wrapper prints the log itself; its limits are the activation limit."""
    assert launch.activate_command("gpu-01", "r1", 2100) == (
        "rm -f /var/lib/vllm-fleet/activate.json; : > /var/lib/vllm-fleet/activate.log; "
        "systemd-run --unit=vllm-fleet-activate --service-type=oneshot --collect --wait --quiet "
        "--property StandardOutput=append:/var/lib/vllm-fleet/activate.log --property TimeoutStartSec=2100 "
        "--property UMask=0077 --property 'ExecStopPost=/usr/local/lib/vllm-fleet/vllm-activate gpu-01 --recover' "
        "--property TimeoutStopSec=2100 /usr/local/lib/vllm-fleet/vllm-activate gpu-01 r1; status=$?; "
        "cat /var/lib/vllm-fleet/activate.log >&2; "
        'echo "vllm-fleet-outcome $(cat /var/lib/vllm-fleet/activate.json 2>/dev/null)" >&2; exit $status'
    )


def test_an_activation_may_take_two_ready_timeouts_and_a_margin():
    """Twice vllm_ready_timeout, and five minutes besides."""
    from vllm_fleet.rules import validate

    s = validate("h", {"phase": "laptop", "vllm_ready_timeout": 700}, ["laptop"])
    assert launch.activation_limit(s) == 2 * 700 + 300


# Interrupted activations. Each scenario: how the host is set up, the release activated, the
# releases that serve during it.
def _two_releases(host: Host) -> None:
    for name in ("r0", "r1"):
        host.release(name)
        host.activate(name, serving=["r0", "r1"])
    host.release("r2")


def _legacy(host: Host) -> None:
    host.legacy()
    host.release("r1")


def _fresh(host: Host) -> None:
    host.release("r1")


SCENARIOS = {
    "new-release-serves": (_two_releases, "r2", ["r0", "r1", "r2"]),
    "new-release-rolled-back": (_two_releases, "r2", ["r0", "r1"]),
    "restart-back-to-previous": (_two_releases, "current", ["r0"]),
    "legacy-host-first-release": (_legacy, "r1", ["legacy", "r1"]),
    "fresh-host-first-release": (_fresh, "r1", ["r1"]),
}


def _steps(scenario: str) -> list[str]:
    """The steps of a scenario's activation run through once: 'NUMBER COMMAND ARGS...'."""
    setup, name, serving = SCENARIOS[scenario]
    with tempfile.TemporaryDirectory() as tmp:
        host = Host(Path(tmp) / "host")
        setup(host)
        done = host.run(name, serving)
        assert done.returncode in (0, 3), done.stderr
        return host.trace()


def pytest_generate_tests(metafunc):
    if "kill_at" in metafunc.fixturenames:
        cases, ids = [], []
        for scenario in SCENARIOS:
            for line in _steps(scenario):
                number, command, *args = line.split()
                cases.append((scenario, int(number)))
                ids.append(f"{scenario}-{int(number):02d}-{command}{'-' + args[0] if command == 'systemctl' else ''}")
        metafunc.parametrize("scenario, kill_at", cases, ids=ids)


@pytest.fixture
def scenario_host(tmp_path_factory, scenario) -> Host:
    """The scenario's host before its activation: set up once per test process and copied back for
    each kill point. The helper and its stand-ins name the host's directory, so every copy is laid
    at the same place; the release links are relative and survive the copy."""
    base = tmp_path_factory.getbasetemp()
    place, pristine = base / "scenario-host", base / f"scenario-{scenario}"
    if not pristine.exists():
        shutil.rmtree(place, ignore_errors=True)
        SCENARIOS[scenario][0](Host(place))
        shutil.copytree(place, pristine, symlinks=True)
    shutil.rmtree(place, ignore_errors=True)
    shutil.copytree(pristine, place, symlinks=True)
    return Host(place, lay_out=False)


def test_killed_before_any_step_the_host_keeps_a_release_that_served(scenario_host, scenario, kill_at):
    _, name, serving = SCENARIOS[scenario]
    host = scenario_host
    before = host.state()
    trying = before.current if name == "current" else name
    killed = host.run(name, serving, kill_at=kill_at)
    assert killed.returncode == -signal.SIGKILL, (killed.returncode, killed.stderr)
    step = host.trace()[-1]
    after, served = host.state(), host.verified()

    # current and previous only ever name releases that served; current never disappears.
    assert after.current in served or (after.current is None and before.current is None), (step, after, served)
    assert after.previous in served or after.previous is None, (step, after, served)
    # What systemd would start is the release that served, or the one being tried (or gone back to).
    tried = {after.current, before.current, before.unit, trying, before.previous}
    assert {after.unit, after.env} <= tried | {None}, (step, after)

    if host.settled():
        # The next deploy does nothing here: so the host must run its current release already.
        assert after.current in served and not after.pending, (step, after)
        assert after.unit == after.env == after.current and after.running == (after.current, after.current), (
            step,
            after,
        )
        return
    # Not settled: the next deploy stages the wanted files again (those of the release tried) and
    # activates them, going back to current if they do not serve.
    host.release("again", like=trying)
    again_serves = trying in serving
    status, outcome, log = host.activate("again", serving=[*serving, *(["again"] if again_serves else [])])
    final, served = host.state(), host.verified()
    if again_serves or after.current in serving:
        assert status in (0, 3), (step, log)
    if status in (0, 3):
        assert final.current in served and final.unit == final.env == final.current, (step, final)
        assert final.running == (final.current, final.current) and not final.pending and host.settled(), (step, final)
    else:
        assert final.current == after.current and not host.settled(), (step, final)


# The vLLM service's task, its operations recorded instead of planned (tests/planning plans whole
# deploys; this looks at one task's order and commands).
class _Recorder:
    def __init__(self, ops: list, module: str):
        self._ops, self._module = ops, module

    def __getattr__(self, kind: str):
        def op(*args, **kwargs):
            self._ops.append((f"{self._module}.{kind}", kwargs))
            return SimpleNamespace(did_change=lambda: False)

        return op


def _planned(monkeypatch, settings) -> list[tuple[str, dict]]:
    from tasks import vllm_service

    ops: list[tuple[str, dict]] = []
    for module in ("files", "server", "systemd"):
        monkeypatch.setattr(vllm_service, module, _Recorder(ops, module))
    monkeypatch.setattr(
        vllm_service, "root_only_directory", lambda path, name: ops.append(("root_only", {"path": path}))
    )
    monkeypatch.setattr(vllm_service, "secret_file", lambda **kwargs: ops.append(("secret_file", kwargs)))
    monkeypatch.setattr(vllm_service, "any_changed", lambda *ops: None)
    fake_host = SimpleNamespace(
        name="gpu-01",
        data={},
        get_fact=lambda *a, **k: None,
        get_temp_filename=lambda dest, temp_directory=None: "/tmp/pyinfra-0123",
    )
    monkeypatch.setattr(vllm_service, "host", fake_host)
    vllm_service.vllm_service.__wrapped__(settings, "nvidia", Probe())
    return ops


def _index(ops, predicate) -> int:
    return next(i for i, (kind, kwargs) in enumerate(ops) if predicate(kind, kwargs))


def test_the_activation_log_has_its_directory_and_is_root_only_before_the_activation(monkeypatch, settings_for):
    ops = _planned(monkeypatch, settings_for("single_gpu"))
    activation = _index(ops, lambda k, kw: k == "server.shell" and paths.ACTIVATE_SCRIPT in " ".join(kw["commands"]))
    for directory in {os.path.dirname(paths.ACTIVATE_LOG), os.path.dirname(paths.ACTIVATE_OUTCOME)}:
        made = _index(ops, lambda k, kw, d=directory: k == "files.directory" and kw["path"] == d)
        assert made < activation and ops[made][1]["user"] == "root" and ops[made][1].get("present", True)
    log = _index(ops, lambda k, kw: k == "files.file" and kw["path"] == paths.ACTIVATE_LOG)
    assert log < activation and (ops[log][1]["user"], ops[log][1]["mode"]) == ("root", "600")


def test_the_image_pull_and_the_weights_download_have_time_limits(monkeypatch, settings_for):
    settings = settings_for("single_gpu", vllm_download_timeout=1234)
    ops = _planned(monkeypatch, settings)
    [pull] = [kw["commands"][0] for k, kw in ops if k == "server.shell" and kw["name"].startswith("Pull ")]
    assert pull.startswith(f"timeout 1234 docker pull --quiet {launch.image(settings, 'nvidia')} || ")
    [download] = [kw["commands"][0] for k, kw in ops if k == "server.shell" and kw["name"].startswith("Download ")]
    assert download.startswith("{ timeout 1234 ") and "did not finish within 1234s" in download


def test_a_shipped_archive_is_loaded_after_an_upload_whose_failure_the_load_cleans_up(
    monkeypatch, settings_for, make_archive, tmp_path
):
    archive = make_archive(tmp_path, "registry.local/vllm:1")
    settings = settings_for("single_gpu", vllm_image="registry.local/vllm:1", vllm_image_archive=archive)
    ops = _planned(monkeypatch, settings)
    shipped = _index(ops, lambda k, kw: k == "files.put" and kw["src"] == archive)
    loaded = _index(ops, lambda k, kw: k == "server.shell" and kw["name"].startswith("Load "))
    assert shipped + 1 == loaded and ops[shipped][1]["_ignore_errors"] is True
    remote = ops[shipped][1]["dest"]
    from tasks.vllm_service import load_command

    expected = load_command(remote, "/tmp/pyinfra-0123", os.path.getsize(archive), "registry.local/vllm:1", 7200)
    assert ops[loaded][1]["commands"] == [expected]


# The commands themselves, run for real; docker is a stand-in that does what it is told.
@pytest.fixture
def docker(tmp_path):
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    stub = bin_ / "docker"
    stub.write_text(
        f'#!/bin/sh\necho "docker $*" >> {tmp_path}/docker-calls\n'
        f'case "$(cat {tmp_path}/docker-does)" in\nhang) exec sleep 30 ;;\nfail) exit 1 ;;\nesac\n'
    )
    stub.chmod(0o755)

    def run(command: str, does: str) -> subprocess.CompletedProcess:
        (tmp_path / "docker-does").write_text(does)
        env = {"PATH": f"{bin_}:/usr/bin:/bin"}
        return subprocess.run(["sh", "-c", command], capture_output=True, text=True, env=env, timeout=30)

    return run


@pytest.fixture
def shipped(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    archive = images / "vllm.tar"
    archive.write_bytes(b"x" * 1000)
    staged = tmp_path / "pyinfra-0123"
    staged.write_bytes(b"x" * 1000)
    return archive, staged


@pytest.mark.parametrize(
    "does, size, status, said",
    [
        ("load", 1000, 0, ""),
        ("fail", 1000, 1, ""),
        ("hang", 1000, 124, "docker load of vllm.tar (r/vllm:1) did not finish within 1 s (vllm_download_timeout)"),
        ("load", 2000, 1, "the image archive vllm.tar reached the host incomplete (1000 of 2000 bytes): not loaded"),
    ],
)
def test_the_archive_is_removed_whatever_the_load_did(docker, shipped, tmp_path, does, size, status, said):
    from tasks.vllm_service import load_command

    archive, staged = shipped
    done = docker(load_command(str(archive), str(staged), size, "r/vllm:1", 1), does)
    assert done.returncode == status, done.stderr
    assert said in done.stderr
    assert not archive.exists() and not staged.exists() and not archive.parent.exists()
    calls = (tmp_path / "docker-calls").read_text() if (tmp_path / "docker-calls").exists() else ""
    assert calls == ("" if size != 1000 else f"docker load --quiet --input {archive}\n")


def test_the_archive_is_removed_when_the_load_is_stopped(docker, shipped, tmp_path):
    from tasks.vllm_service import load_command

    archive, staged = shipped
    # timeout runs docker in a process group of its own: a signal to the session reaches the shell
    # only, which cleans up once the load has ended (here: at its limit).
    command = load_command(str(archive), str(staged), 1000, "r/vllm:1", 2)
    (tmp_path / "docker-does").write_text("hang")
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"}
    load = subprocess.Popen(["sh", "-c", command], env=env, start_new_session=True, stderr=subprocess.PIPE)
    for _ in range(100):
        if (tmp_path / "docker-calls").exists():
            break
        time.sleep(0.05)
    os.killpg(load.pid, signal.SIGTERM)  # what systemd, or a hangup, sends the whole session
    assert load.wait(timeout=20) == 143
    assert not archive.exists() and not staged.exists()


@pytest.mark.parametrize("does, status", [("pull", 0), ("fail", 1), ("hang", 124)])
def test_a_pull_past_its_time_is_stopped_and_says_what(docker, does, status):
    from tasks.vllm_service import pull_command

    done = docker(pull_command("r/vllm:1", 1), does)
    assert done.returncode == status
    timed_out = "docker pull of r/vllm:1 did not finish within 1 s (vllm_download_timeout) and was stopped"
    assert (timed_out in done.stderr) == (does == "hang"), done.stderr


def test_the_commands_quote_what_they_are_given():
    from tasks.vllm_service import load_command, pull_command

    assert shlex.split(pull_command("r/vllm:1", 5))[:5] == ["timeout", "5", "docker", "pull", "--quiet"]
    assert "'/images/a b.tar'" in load_command("/images/a b.tar", "/tmp/s", 1, "r:1", 5)


def test_killed_midway_its_recovery_starts_the_current_release_again(host):
    """launch.recovery runs `vllm-activate HOST --recover` as the activation unit's ExecStopPost."""
    host.release("r0")
    host.activate("r0", serving=["r0", "r1"])
    host.release("r1")
    restart = next(i for i, line in enumerate(trace_of(host, "r1"), 1) if "systemctl restart" in line)
    host.run("r1", serving=["r0", "r1"], kill_at=restart + 1)
    assert host.state().running == ("r1", "r1") and host.state().pending  # left on the trial
    for clean in ("success", "exit-code"):  # the script ended by itself: nothing to do
        assert host.run("--recover", serving=["r0", "r1"], result=clean).returncode == 0
        assert host.state().running == ("r1", "r1")
    done = host.run("--recover", serving=["r0", "r1"], result="oom-kill")
    assert done.returncode == 0, done.stderr
    assert host.state() == State("r0", None, "r0", "r0", ("r0", "r0"), pending=False)
    assert "stopped halfway (oom-kill): starting its current release again" in done.stderr


def test_the_recovery_does_nothing_when_no_attempt_was_left_unfinished(host):
    host.release("r0")
    host.activate("r0", serving=["r0"])
    before = host.state()
    assert host.run("--recover", serving=["r0"], result="timeout").returncode == 0
    assert host.state() == before and "systemctl restart" not in " ".join(host.trace())


def trace_of(host: Host, name: str) -> list[str]:
    """The steps an uninterrupted activation of this release takes (then undone: the host is copied)."""
    copy = Host(host.root.parent / f"{host.root.name}-trace")
    shutil.copytree(host.root / "etc", copy.root / "etc", symlinks=True, dirs_exist_ok=True)
    for name_ in ("running", "loaded", "verified"):
        if (host.root / name_).exists():
            shutil.copy(host.root / name_, copy.root / name_)
    copy.run(name, serving=["r0", "r1"])
    return copy.trace()
