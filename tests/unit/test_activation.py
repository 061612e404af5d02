"""The activation helper, run for real on a directory laid out like a host: systemctl and the
readiness check are stand-ins that record what they were asked; jq is the real one. Each way
out writes its outcome as one JSON object, which the rollout reads (releases.outcomes_in)."""

import subprocess

import pytest

from vllm_fleet import launch, releases, templates


@pytest.fixture
def host(tmp_path):
    root = tmp_path / "host"
    names = {
        "config_dir": root / "etc",
        "releases_dir": root / "etc" / "releases",
        "unit_path": root / "unit",
        "models_dir": root / "models",
        "ready_script": root / "bin" / "vllm-ready",
        "activate_outcome": root / "activate.json",
    }
    (root / "bin").mkdir(parents=True)
    names["releases_dir"].mkdir(parents=True)
    # Serves: the releases named in the file `serving` (one per line).
    ready = names["ready_script"]
    ready.write_text(
        f'#!/bin/sh\ngrep -qx "$(basename "$(readlink {names["releases_dir"]}/current)")" {root}/serving\n'
    )
    for stub in ("systemctl", "logger"):
        (root / "bin" / stub).write_text(f'#!/bin/sh\necho "{stub} $*" >> {root}/calls\n')
    for script in (root / "bin").iterdir():
        script.chmod(0o755)
    activate = root / "vllm-activate"
    activate.write_text(templates.render("vllm-activate.sh.j2", **{k: str(v) for k, v in names.items()}))
    activate.chmod(0o755)

    def release(name: str) -> None:
        directory = names["releases_dir"] / name
        directory.mkdir()
        (directory / "vllm.service").write_text(f"[Unit]\n# {name}\n")
        (directory / "vllm.env").write_text("")
        (directory / "release.conf").write_text("MODEL=m\nURL=http://127.0.0.1:8000\nTIMEOUT=5\n")

    def activate_(name: str, serving: list[str]) -> tuple[int, releases.Outcome, str]:
        (root / "serving").write_text("".join(f"{s}\n" for s in serving))
        env = {"PATH": f"{root / 'bin'}:/usr/bin:/bin"}
        done = subprocess.run([str(activate), "gpu-01", name], capture_output=True, text=True, env=env, timeout=30)
        written = names["activate_outcome"].read_text()
        outcome = releases.outcomes_in(f"{releases.OUTCOME_MARK} {written}")["gpu-01"]
        return done.returncode, outcome, done.stderr

    return release, activate_, names


def test_a_release_that_serves_becomes_current(host):
    release, activate, names = host
    release("r1")
    status, outcome, _ = activate("r1", serving=["r1"])
    assert status == 0 and outcome.outcome == releases.SERVING and outcome.release == "r1"
    assert (names["releases_dir"] / "current").resolve().name == "r1"
    assert names["unit_path"].read_text() == "[Unit]\n# r1\n"


def test_a_release_that_does_not_serve_is_rolled_back_and_says_so(host):
    release, activate, names = host
    release("r1")
    activate("r1", serving=["r1"])
    release("r2")
    status, outcome, log = activate("r2", serving=["r1"])
    assert status == 3 and outcome.outcome == releases.ROLLED_BACK, log
    assert (outcome.release, outcome.fallback) == ("r2", "r1")
    assert outcome.message == (
        "gpu-01 ROLLED BACK to release r1, which serves; release r2 is kept for inspection until the next deploy"
    )
    assert f"vllm-fleet: {outcome.message}" in log
    assert (names["releases_dir"] / "current").resolve().name == "r1"


def test_nothing_to_go_back_to_is_a_failure_with_its_reason(host):
    release, activate, _ = host
    release("r1")
    status, outcome, _ = activate("r1", serving=[])
    assert status == 1 and outcome.outcome == releases.FAILED
    assert outcome.message == "release r1 did not come up on gpu-01 and there is no earlier release to go back to"
    status, outcome, _ = activate("r9", serving=[])
    assert status == 1 and outcome.message == "gpu-01 has no release 'r9' to activate"


def test_the_activation_command_prints_the_outcome_after_the_log():
    command = launch.activate_command("gpu-01", "r1")
    assert command.startswith("rm -f /var/lib/vllm-fleet/activate.json; systemd-run ")
    assert command.endswith(
        'echo "vllm-fleet-outcome $(cat /var/lib/vllm-fleet/activate.json 2>/dev/null)" >&2; exit $status'
    )
