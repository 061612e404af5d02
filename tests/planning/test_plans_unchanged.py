"""The same inventories plan the same as before the restructuring of issue 25.

tests/planning/data/plans-bcf6af1.jsonl.gz was recorded on main at bcf6af1, before settings,
monitoring, rollout and the facts were split by job: every inventory the planning tests deployed
(VLLM_FLEET_RECORD_PLANS, see harness._record) with the commands each operation ran and its
outcome per host, and `plan`/`hosts` of the repository's inventories. Each is run again here and
must come out the same. Only what differs between two runs of the same code is left out: the new
release's name (its time and a random suffix) and the order of hosts in an operation that pyinfra
announces for several hosts at once.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.planning import harness
from vllm_fleet import paths

RECORDED = Path(__file__).parent / "data" / "plans-bcf6af1.jsonl.gz"
_RELEASE = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")
_TEMP = re.compile(r"/tmp/pyinfra-[0-9a-f]{40}")
# Knobs added since the recording, and what they print at their defaults: left out of today's output
# (every other line must be the same).
ADDED_SINCE = {
    "vllm_allow": "[]",
    "gpu_health_accept": "[]",
    "vllm_cluster_rdma": "False",
    "nix_installer_archive": "None",
}
_ENV = {"VLLM_API_KEY": "recorded-api-key-0123456789", "HF_TOKEN": "hf_recordedtoken0123456789"}


# Hosts whose plan changed on purpose since the recording, and why: each is now refused in
# pre-flight, and the rest of its deploy must plan as it did.
REFUSED_SINCE = {
    "@fake/ubuntu22-v100": "a pre-Turing GPU under the default CUDA 13.0 image (issue 27, test_gpu_stack_plans)",
    "@fake/rocky9-nix-arm": "an arm64 host the x86_64-only Nix installer would serve (issue 27, test_nix_plans)",
}
REFUSED = ["Pre-flight checks | Refuse the host: pre-flight checks failed"]
NIX_HOST = "'serving_method': 'nix'"
# Operations whose commands grew on purpose since the recording: what each adds to the recorded ones.
ROCM_INSTALL = re.compile(r"AMD ROCm \| Install the amdgpu driver and ROCm (\S+) \(use case (\w+)\)")


HEADERS = "NVIDIA driver | Install kernel headers for DKMS"
CUDA_KEYRING = "NVIDIA driver | Add NVIDIA's CUDA repository (cuda-keyring)"
DRIVER = re.compile(r"NVIDIA driver \| Install NVIDIA driver (\d+)")


# ROCm's default moved from 6.4.1 to 7.2.1 (issue 27: 6.4's driver is outside the default image's
# user space and has no MI350): what the recorded AMD operations become at the new default.
ROCM_DEFAULT = [
    ("ROCm 6.4.1", "ROCm 7.2.1"),
    ("amdgpu-install/6.4.1/rhel/", "amdgpu-install/7.2.1/el/"),  # Rocky: AMD's el/ path
    ("amdgpu-install/6.4.1/", "amdgpu-install/7.2.1/"),
    ("6.4.60401", "7.2.1.70201"),
]


# A host installed at the old default: the new one upgrades it, and it reboots into the new driver.
ROCM_UPGRADED = {"@fake/ubuntu22-amd-installed"}
ROCM_UPGRADE = "AMD ROCm | Install the amdgpu driver and ROCm 7.2.1 (use case rocm)"
GPU_REBOOT = "Reboot for the GPU driver | Reboot to load the GPU driver"


def _without_the_rocm_upgrade(hosts: dict) -> dict:
    """Today's plans of ROCM_UPGRADED hosts less the upgrade and its reboot, each seen to happen."""
    for host in ROCM_UPGRADED & hosts.keys():
        operations = hosts[host]
        [upgrade] = [op for op in operations if op[0] == ROCM_UPGRADE]
        assert upgrade[2] == "Success", upgrade
        operations.remove(upgrade)
        [reboot] = [op for op in operations if op[0] == GPU_REBOOT]
        assert reboot[2] == "Success", reboot
        reboot[1:] = [[], "No changes"]
    return hosts


def _at_new_rocm_default(hosts: dict) -> dict:
    text = json.dumps(hosts)
    for old, new in ROCM_DEFAULT:
        text = text.replace(old, new)
    return json.loads(text)


def _amended(hosts: dict) -> dict:
    """The recorded plans with what was added on purpose (issue 27): the install of ROCm writes what
    it installed (the dkms use case leaves no version file of ROCm's own); a driver from NVIDIA's
    CUDA repository (apt) installs its branch's pinning package after the headers, as they are."""
    for operations in hosts.values():
        names = [name for name, _, _ in operations]
        branch = next((m[1] for m in map(DRIVER.fullmatch, names) if m), "")
        if CUDA_KEYRING in names and HEADERS in names:
            at = names.index(HEADERS)
            _, commands, outcome = operations[at]
            pinning = f"nvidia-driver-pinning-{branch}"
            pinned = [re.sub(r"install linux-headers-\S+$", f"install {pinning}", c) for c in commands]
            name = f"NVIDIA driver | Keep apt on driver branch {branch} ({pinning})"
            operations.insert(at + 1, [name, pinned, outcome])
        for index, (name, commands, outcome) in enumerate(operations):
            rocm = ROCM_INSTALL.fullmatch(name)
            if rocm and commands:
                mark = f"mkdir -p {paths.STATE_DIR} && echo '{rocm[2]} {rocm[1]}' > {paths.ROCM_INSTALLED}"
                operations[index] = [name, [*commands, mark], outcome]
    return hosts


# Secrets of the recording that the secret floor of issue 26 refuses, and the ones of the same length
# that replace them, in the inventories and in what was recorded alike.
STRONGER = {"hf_" + "t" * 34: "hf_" + "t" * 26 + "Zq7wPm2x"}


def _records() -> list[dict]:
    with gzip.open(RECORDED, "rt") as lines:
        texts = list(lines)
    for weak, strong in STRONGER.items():
        texts = [text.replace(weak, strong) for text in texts]
    return [json.loads(text) for text in texts]


def _per_host(ops: dict, status: dict) -> dict[str, list]:
    """Each host's operations in order: (name, commands, outcome). pyinfra joins the names of
    operations that run together on several hosts in the order it met the hosts: sorted here."""
    hosts: dict[str, list] = {}
    for name, outcomes in status.items():
        for host, outcome in outcomes.items():
            label = ", ".join(sorted(name.split(", ")))
            hosts.setdefault(host, []).append((label, ops.get(name, {}).get(host, []), outcome))
    # pyinfra names a download's temporary file by a hash of its URL (the URL itself is compared).
    return json.loads(_TEMP.sub("/tmp/pyinfra-TEMP", _RELEASE.sub("RELEASE", json.dumps(hosts))))


RECORDS = _records()
DEPLOYS = [r for r in RECORDS if r["kind"] == "deploy"]
COMMANDS = [r for r in RECORDS if r["kind"] == "cli"]


@pytest.fixture(scope="module")
def replayed(tmp_path_factory) -> list[harness.Plan]:
    """Every recorded deploy planned again, two at a time: xdist keeps this module on one worker
    (loadscope), and the other finishes its modules long before this one would, one at a time."""
    inventories = []
    for index, record in enumerate(DEPLOYS):
        inventory = tmp_path_factory.mktemp(f"deploy-{index}") / "fake_inventory.py"
        # The Nix way's hosts plan the repository's flake, which pre-flight now refuses for its old
        # vLLM (nix_vllm, issue 27): replayed with that refusal as a warning, the rest must match.
        inventory.write_text(record["inventory"].replace(NIX_HOST, f"{NIX_HOST}, 'preflight_warn_only': ['nix_vllm']"))
        inventories.append(str(inventory))
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(harness.plan, inventories))


@pytest.mark.parametrize("index", range(len(DEPLOYS)), ids=[f"deploy-{i}" for i in range(len(DEPLOYS))])
def test_a_recorded_deploy_plans_the_same(replayed, index):
    record, again = DEPLOYS[index], replayed[index]
    before = _amended(_at_new_rocm_default(_per_host(record["ops"], record["status"])))
    now = _without_the_rocm_upgrade(_per_host(again.ops, again.status))
    refused = [host for host in REFUSED_SINCE if host in now]
    for host in refused:
        before.pop(host, None)  # a host stopped while its operations were planned has none recorded
        assert [name for name, _, _ in now.pop(host)] == REFUSED, REFUSED_SINCE[host]
    assert again.rc == (1 if refused else record["rc"])
    assert now == before


@pytest.mark.parametrize("record", COMMANDS, ids=[" ".join(r["cli"]) for r in COMMANDS])
def test_a_recorded_plan_command_prints_the_same(record):
    done = subprocess.run(
        [str(Path(sys.executable).parent / "vllm-fleet"), *record["cli"]],
        cwd=harness.REPO,
        env={**os.environ, **_ENV},
        capture_output=True,
        text=True,
    )
    assert (done.returncode, _without_added_knobs(done.stdout, record["cli"]), done.stderr) == (
        record["rc"],
        record["stdout"],
        record["stderr"],
    )


def _without_added_knobs(stdout: str, cli: list[str]) -> str:
    """The output as it was before the knobs of ADDED_SINCE, each seen at its default, and with
    rocm_version at its recorded default."""
    stdout = re.sub(r"""(rocm_version\W+(?:value": )?)(['"])7\.2\.1\2""", r"\g<1>\g<2>6.4.1\g<2>", stdout)
    if "--format" in cli and cli[cli.index("--format") + 1] == "table":
        kept = []
        for line in stdout.splitlines(keepends=True):
            words = line.split()
            if words and words[0] in ADDED_SINCE:
                assert words[1] == ADDED_SINCE[words[0]], line
                continue
            kept.append(line)
        return "".join(kept)
    data = json.loads(stdout)
    for host in data["hosts"].values():
        if "settings" not in host:  # a refused host
            continue
        for name, default in ADDED_SINCE.items():
            value = host["settings"].pop(name)
            assert repr(value["value"] if isinstance(value, dict) else value).replace("'", '"') == default, value
    return json.dumps(data, indent=2) + "\n"
