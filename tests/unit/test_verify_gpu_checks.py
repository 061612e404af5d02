"""The verify suite's GPU checks (vllm_fleet/verify/test_gpu.py), run as `vllm-fleet verify` runs
them, against this machine as an inventory's `@local` host whose PATH holds stand-in `nvidia-smi`,
`rocm-smi`, `docker`, `id` and `journalctl`.

Each stand-in answers only the exact command lines the deploy's facts and the checks run, with an
output from tests/unit/data/gpu-tools/: each file's first line says where it was recorded (or that
it was written by hand, and from what). Any other arguments fail and are logged, so a changed
command is noticed. pyinfra allows one `@local` per inventory and all of them would share this
machine's PATH, so each case is an inventory and a pytest of its own, all started at once.

Not faked: /dev/kfd, the amdgpu driver's character device. This machine has no amdgpu, so the AMD
host's /dev/kfd check is seen to fail here, and its passing case is skipped with why.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vllm_fleet import launch, paths

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data" / "gpu-tools"
SUITE = REPO / "vllm_fleet" / "verify" / "test_gpu.py"


# The exact command lines the facts and the checks run, written out: a stand-in answers these
# alone, so a changed command is noticed (the recorded outputs answer these commands, not others).
NVIDIA_QUERY = "--query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader,nounits"
ROCM_JSON = "--showproductname --showmeminfo vram --json"
TOOLKIT = f"run --rm --gpus all --entrypoint nvidia-smi {launch.default_image('nvidia')} -L"
LIVE = f"exec {paths.CONTAINER_NAME} nvidia-smi -L"
HEALTH = {  # the health queries (vllm_fleet/facts/probe.py), written out
    name: f"{query} --format=csv,noheader,nounits"
    for name, query in (
        ("ecc", "--query-gpu=index,ecc.errors.uncorrected.volatile.total,retired_pages.pending"),
        ("reset", "--query-gpu=index,reset_status.reset_required,reset_status.drain_and_reset_recommended"),
        ("remap", "--query-remapped-rows=gpu_bus_id,remapped_rows.pending,remapped_rows.failure"),
    )
}
KERNEL_LOG = "-k -b -o cat"
ROCM_CONTAINER = (
    "run --rm --device /dev/kfd --device /dev/dri --group-add video --security-opt seccomp=unconfined "
    f"--entrypoint rocm-smi {launch.default_image('amd')}"
)

# (output file, exit status) per tool and argument line. Exit statuses are not in the recordings:
# nvidia-smi's man page (RETURN VALUE) gives 9 for "NVIDIA driver is not loaded" and 255 for other
# errors such as NVML's "Unknown Error"; docker exec passes the command's status on.
Answers = dict[str, dict[str, tuple[str, int]]]

A10_T4: Answers = {
    "nvidia-smi": {
        NVIDIA_QUERY: ("nvidia-smi-query.a10-t4.txt", 0),
        **{query: (f"nvidia-smi-health-{name}.a10-t4.txt", 0) for name, query in HEALTH.items()},
    },
    "docker": {TOOLKIT: ("nvidia-smi-L.a10-t4.txt", 0), LIVE: ("nvidia-smi-L.a10-t4.txt", 0)},
    "journalctl": {KERNEL_LOG: ("journalctl-k.quiet.txt", 0)},
}
# A row remap pending on the first A10, and the T4s' GPU fell off the bus since boot (Xid 79).
UNHEALTHY: Answers = {
    **A10_T4,
    "nvidia-smi": {**A10_T4["nvidia-smi"], HEALTH["remap"]: ("nvidia-smi-health-remap.a10-pending.txt", 0)},
    "journalctl": {KERNEL_LOG: ("journalctl-k.xid79.txt", 0)},
}
NVML_LOST: Answers = {**A10_T4, "docker": {**A10_T4["docker"], LIVE: ("nvidia-smi-L.nvml-unknown-error.txt", 255)}}
DRIVER_FAILED: Answers = {"nvidia-smi": {NVIDIA_QUERY: ("nvidia-smi.driver-failed.txt", 9)}}
RX_7900_XT: Answers = {
    "rocm-smi": {ROCM_JSON: ("rocm-smi-json.rx-7900-xt.txt", 0)},
    "docker": {ROCM_CONTAINER: ("rocm-smi.vega10.txt", 0)},
    "id": {"-nG alice": ("id-nG.rocm-user.txt", 0), "-nG bob": ("id-nG.user-without-render.txt", 0)},
}

NVIDIA_HOST = {"accelerator": "nvidia", "gpu_count": 4, "nvidia_driver_branch": "570", "manage_gpu_stack": True}
# alice is in render and video, bob only in video.
AMD_HOST = {"accelerator": "amd", "gpu_count": 1, "manage_gpu_stack": True, "rocm_users": ["alice", "bob"]}


@dataclass
class Case:
    answers: Answers = field(repr=False)
    host_data: dict
    select: str = ""  # pytest -k: only the checks the case is about
    outcomes: dict[str, str] = field(default_factory=dict)  # check -> passed / failed / skipped
    messages: dict[str, str] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)  # what the stand-ins were asked
    output: str = field(default="", repr=False)


CASES = {
    # Four GPUs as gpu_count says, driver 570.133.20 of the pinned branch 570, the toolkit and the
    # live container both list the GPUs.
    "nvidia-healthy": Case(A10_T4, NVIDIA_HOST),
    # The same host, its inventory wrong: two GPUs expected, branch 580 pinned.
    "nvidia-count-and-older-driver": Case(
        A10_T4, {**NVIDIA_HOST, "gpu_count": 2, "nvidia_driver_branch": "580"}, "gpu_visible or driver_branch"
    ),
    # A driver of a newer branch than pinned is not "at least" good enough: the branch is exact.
    "nvidia-newer-driver": Case(A10_T4, {**NVIDIA_HOST, "nvidia_driver_branch": "565"}, "driver_branch"),
    # The serving container cut off its GPUs (a daemon-reload, toolkit issue 1227); new ones still get them.
    "nvidia-container-lost-gpus": Case(NVML_LOST, NVIDIA_HOST),
    # The driver is not loaded: nvidia-smi's own message instead of GPUs.
    "nvidia-driver-failed": Case(DRIVER_FAILED, NVIDIA_HOST, "gpu_visible or driver_branch"),
    "amd": Case(RX_7900_XT, AMD_HOST),
    "nvidia-unhealthy": Case(UNHEALTHY, NVIDIA_HOST, "gpu_health"),
    # The same, with the pending remap accepted knowingly: the Xid still refuses.
    "nvidia-remap-accepted": Case(UNHEALTHY, {**NVIDIA_HOST, "gpu_health_accept": ["row_remap_pending"]}, "gpu_health"),
}

STANDIN = """#!/bin/sh
# Stand-in {tool}: recorded outputs for the exact commands the verify suite runs.
printf '%s\\n' "{tool} $*" >> {log}
case "$*" in
{branches}
esac
printf 'UNEXPECTED %s\\n' "{tool} $*" >> {log}
echo "stand-in {tool}: nothing recorded for: $*" >&2
exit 97
"""


def _standins(bin_dir: Path, answers: Answers, log: Path) -> None:
    bin_dir.mkdir()
    for tool in ("nvidia-smi", "rocm-smi", "docker", "id", "journalctl"):
        branches = "\n".join(
            f"  {shlex.quote(args)}) tail -n +2 {shlex.quote(str(DATA / name))}; exit {rc} ;;"
            for args, (name, rc) in answers.get(tool, {}).items()
        )
        script = bin_dir / tool
        script.write_text(STANDIN.format(tool=tool, log=shlex.quote(str(log)), branches=branches))
        script.chmod(0o755)


def _run(name: str, case: Case, root: Path) -> None:
    work = root / name
    work.mkdir()
    log, junit = work / "calls.log", work / "report.xml"
    log.touch()
    _standins(work / "bin", case.answers, log)
    inventory = work / "inventory.py"
    inventory.write_text(f"single_gpu = [('@local', {case.host_data!r})]\n")
    env = {**os.environ, "PATH": f"{work / 'bin'}:/usr/bin:/bin"}  # not /usr/local/bin: no real docker
    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(SUITE), "--inventory", str(inventory), "-p", "no:cacheprovider"]
        + ["-c", str(REPO / "pyproject.toml"), "--junit-xml", str(junit), "-q", "--tb=line"]
        + (["-k", case.select] if case.select else []),
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    case.output = done.stdout[-4000:] + done.stderr[-2000:]
    case.calls = log.read_text().splitlines()
    if not junit.exists():
        return
    for test in ET.parse(junit).iter("testcase"):
        check = test.get("name", "").split("[")[0]
        problem = next((test.find(tag) for tag in ("failure", "error", "skipped") if test.find(tag) is not None), None)
        outcome = (
            {"failure": "failed", "error": "error", "skipped": "skipped"}.get(problem.tag, "")
            if problem is not None
            else "passed"
        )
        case.outcomes[check] = outcome
        if problem is not None:
            case.messages[check] = (problem.get("message") or "") + "\n" + (problem.text or "")


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[str, Case]:
    root = tmp_path_factory.mktemp("verify-gpu")
    with ThreadPoolExecutor(len(CASES)) as pool:
        list(pool.map(lambda item: _run(*item, root), CASES.items()))
    return CASES


def outcome(cases, name: str, check: str) -> str:
    case = cases[name]
    assert check in case.outcomes, f"{check} did not run in {name}:\n{case.output}"
    return case.outcomes[check]


def message(cases, name: str, check: str) -> str:
    assert outcome(cases, name, check) == "failed", cases[name].output
    return cases[name].messages[check]


def test_the_stand_ins_were_asked_only_what_they_recorded(cases):
    for name, case in cases.items():
        assert case.calls, f"{name}: no stand-in was run:\n{case.output}"
        assert not [c for c in case.calls if c.startswith("UNEXPECTED")], (name, case.calls)


def test_a_healthy_nvidia_host_passes_every_nvidia_check(cases):
    outcomes = cases["nvidia-healthy"].outcomes
    assert outcomes == {
        "test_gpu_visible": "passed",
        "test_amd_kfd_present": "skipped",
        "test_nvidia_smi_inside_a_container_proves_the_toolkit": "passed",
        "test_the_live_vllm_container_still_reaches_its_gpus": "passed",
        "test_nvidia_driver_branch_as_pinned": "passed",
        "test_rocm_smi_inside_a_container": "skipped",
        "test_rocm_users_are_in_render_and_video": "skipped",
        "test_nix_built_server_finds_the_host_driver": "skipped",
        "test_gpu_health": "passed",
    }, cases["nvidia-healthy"].output
    assert sorted(set(cases["nvidia-healthy"].calls)) == sorted(
        {f"nvidia-smi {NVIDIA_QUERY}", f"docker {TOOLKIT}", f"docker {LIVE}", f"journalctl {KERNEL_LOG}"}
        | {f"nvidia-smi {query}" for query in HEALTH.values()}
    )


def test_an_unhealthy_gpu_fails_naming_each_condition_and_what_to_do(cases):
    text = message(cases, "nvidia-unhealthy", "test_gpu_health")
    assert "@local has an unhealthy GPU: 00000000:17:00.0: row remap pending (row_remap_pending); " in text
    assert "0000:2b:00: Xid 79 (GPU has fallen off the bus) since boot (xid)" in text
    assert "Xid 13" not in text  # the catalog answers it by restarting the application
    assert "reset the GPU (nvidia-smi -r) or reboot" in text
    assert "add row_remap_pending, xid to gpu_health_accept" in text


def test_an_accepted_condition_is_served_with_and_the_others_still_refuse(cases):
    text = message(cases, "nvidia-remap-accepted", "test_gpu_health")
    assert "row remap" not in text and "Xid 79" in text and "add xid to gpu_health_accept" in text


def test_a_wrong_gpu_count_and_an_older_driver_branch_fail_naming_the_host(cases):
    name = "nvidia-count-and-older-driver"
    count = message(cases, name, "test_gpu_visible")
    assert "@local: gpu_count says 2, nvidia-smi shows 4" in count and "Tesla T4" in count
    branch = message(cases, name, "test_nvidia_driver_branch_as_pinned")
    assert "@local runs NVIDIA driver ['570.133.20'], not of the pinned branch 580" in branch


def test_a_driver_of_a_newer_branch_is_not_the_pinned_one(cases):
    branch = message(cases, "nvidia-newer-driver", "test_nvidia_driver_branch_as_pinned")
    assert "@local runs NVIDIA driver ['570.133.20'], not of the pinned branch 565" in branch


def test_a_container_that_lost_its_gpus_is_caught_while_new_ones_still_get_them(cases):
    name = "nvidia-container-lost-gpus"
    live = message(cases, name, "test_the_live_vllm_container_still_reaches_its_gpus")
    assert "the serving container on @local has lost its GPUs: Failed to initialize NVML: Unknown Error" in live
    for check in ("test_gpu_visible", "test_nvidia_smi_inside_a_container_proves_the_toolkit"):
        assert outcome(cases, name, check) == "passed"


def test_a_driver_that_does_not_answer_fails_with_nvidia_smis_own_words(cases):
    name = "nvidia-driver-failed"
    visible = message(cases, name, "test_gpu_visible")
    assert "nvidia-smi lists no GPU on @local: NVIDIA-SMI has failed because it couldn't communicate" in visible
    branch = message(cases, name, "test_nvidia_driver_branch_as_pinned")
    assert "@local runs NVIDIA driver none (nvidia-smi lists no GPU), not of the pinned branch 570" in branch


def test_an_amd_host_lists_its_gpu_and_reaches_it_from_a_container(cases):
    name = "amd"
    for check in ("test_gpu_visible", "test_rocm_smi_inside_a_container"):
        assert outcome(cases, name, check) == "passed", cases[name].messages.get(check)
    for check in ("test_nvidia_driver_branch_as_pinned", "test_the_live_vllm_container_still_reaches_its_gpus"):
        assert outcome(cases, name, check) == "skipped"


def test_an_amd_host_without_dev_kfd_fails_naming_it(cases):
    """Measured on this machine, which has no /dev/kfd: the check fails as on a host without amdgpu."""
    if os.path.exists("/dev/kfd"):
        pytest.skip("this machine has a /dev/kfd: the failing case cannot be seen here")
    assert "@local: /dev/kfd is missing (amdgpu not loaded?)" in message(cases, "amd", "test_amd_kfd_present")


# Not tested here: an AMD host WITH /dev/kfd passing that check. /dev/kfd is the amdgpu driver's
# character device and this machine has none; a node made in its /dev would have no driver behind
# it and only fake the check.


def test_a_rocm_user_outside_render_fails_naming_user_host_and_group(cases):
    """alice, asked first, is in both groups; bob is not in render."""
    text = message(cases, "amd", "test_rocm_users_are_in_render_and_video")
    assert "bob on @local is not in render (only in ['bob', 'adm', 'video', 'plugdev'])" in text
    assert "alice" not in text
    asked = [call for call in cases["amd"].calls if call.startswith("id ")]
    assert asked == ["id -nG alice", "id -nG bob"]
