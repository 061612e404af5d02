"""The example workflow users copy (.github/workflows/rollout.yml): a pull request's code never runs
where the fleet's secrets or hosts are, and a failing command in a pipeline fails its step.

Each rule is a function returning what breaks it, checked against the workflow and against a
workflow written to break it (the example as it was before these rules), so each check can fail.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "rollout.yml"

# Labels of GitHub's own runners: a fresh machine per job, discarded after it.
HOSTED = re.compile(r"(ubuntu|windows|macos)-(latest|\d[\w.-]*)")
EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.S)
# A pipe is one |, not || (or); |& pipes too.
PIPE = re.compile(r"(?<!\|)\|(?!\|)")
SETS_PIPEFAIL = re.compile(r"^\s*set\s+(-[a-z]*o\s+pipefail|-o\s+pipefail)\b", re.M)
# Conditions under which a pull_request event cannot run the job (its ref is refs/pull/N/merge).
NOT_A_PULL_REQUEST = (
    re.compile(r"github\.event_name\s*!=\s*['\"]pull_request['\"]"),
    re.compile(r"github\.event_name\s*==\s*['\"](push|workflow_dispatch|schedule)['\"]"),
    re.compile(r"github\.ref\s*==\s*['\"]refs/(heads|tags)/[^'\"]+['\"]"),
)
FULL_SHA = re.compile(r"[^@]+@[0-9a-f]{40}")

BEFORE = """
on:
  pull_request:
  push: {branches: [main]}
concurrency: {group: vllm-rollout}
jobs:
  plan:
    if: github.event_name == 'pull_request' && vars.VLLM_FLEET_INVENTORY != ''
    runs-on: [self-hosted, linux]
    steps:
      - uses: actions/checkout@v4
      - env:
          VLLM_API_KEY: ${{ secrets.VLLM_API_KEY }}
        run: .venv/bin/python -m vllm_fleet plan "$INVENTORY" | tee plan.txt
  rollout:
    if: github.event_name != 'pull_request' && vars.VLLM_FLEET_INVENTORY != ''
    runs-on: [self-hosted, linux]
    environment: production
    steps:
      - run: .venv/bin/python -m vllm_fleet rollout "$INVENTORY"
        env: {VLLM_API_KEY: "${{ secrets.VLLM_API_KEY }}"}
"""


def load(text: str) -> dict:
    return yaml.safe_load(text)


def triggers(workflow: dict) -> set[str]:
    # YAML 1.1 reads the key `on` as True.
    on = workflow.get("on", workflow.get(True))
    if isinstance(on, str):
        return {on}
    return set(on or ())


def strings(node) -> list[str]:
    if isinstance(node, dict):
        return [s for key, value in node.items() for s in (*strings(key), *strings(value))]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return [node] if isinstance(node, str) else []


def excludes_pull_requests(condition) -> bool:
    if not isinstance(condition, str):
        return False
    inner = condition.strip()
    if inner.startswith("${{") and inner.endswith("}}"):
        inner = inner[3:-2]
    # Each clause of an `a && b && c` must hold; one that rules pull requests out is enough.
    # Anything with || or parentheses is not read: such a job counts as run on pull requests.
    if "||" in inner or "(" in inner:
        return False
    return any(rule.search(clause) for clause in inner.split("&&") for rule in NOT_A_PULL_REQUEST)


def pull_request_jobs(workflow: dict) -> dict[str, dict]:
    if not triggers(workflow) & {"pull_request", "pull_request_target"}:
        return {}
    return {name: job for name, job in workflow["jobs"].items() if not excludes_pull_requests(job.get("if"))}


def uses_secrets(job: dict) -> bool:
    """A `secrets.` anywhere in the job's expressions or conditions, or secrets handed to a reusable workflow."""
    if "secrets" in job:
        return True
    expressions = [e for s in strings(job) for e in EXPRESSION.findall(s)]
    conditions = [job.get("if")] + [step.get("if") for step in job.get("steps", [])]
    return any(re.search(r"\bsecrets\b", e) for e in expressions + [c for c in conditions if isinstance(c, str)])


def runner_labels(job: dict) -> list:
    runs_on = job.get("runs-on")
    if isinstance(runs_on, dict):  # a runner group: not one of GitHub's own machines
        return [runs_on]
    return runs_on if isinstance(runs_on, list) else [runs_on]


def on_a_hosted_runner(job: dict) -> bool:
    labels = runner_labels(job)
    return bool(labels) and all(isinstance(label, str) and HOSTED.fullmatch(label) for label in labels)


def effective_shell(workflow: dict, job: dict, step: dict) -> str | None:
    for scope in (step, job.get("defaults", {}).get("run", {}), workflow.get("defaults", {}).get("run", {})):
        if scope.get("shell"):
            return scope["shell"]
    return None


def pipefail(workflow: dict, job: dict, step: dict) -> bool:
    """Whether a failing command in one of the step's pipelines fails the step."""
    script = step["run"]
    shell = effective_shell(workflow, job, step)
    # GitHub runs `shell: bash` as `bash --noprofile --norc -eo pipefail {0}`, and no shell
    # given as `bash -e {0}`, without pipefail.
    if shell == "bash" or (shell and "pipefail" in shell and shell.split()[0] in ("bash", "zsh")):
        return True
    text = EXPRESSION.sub("", script)
    first_pipe, setting = PIPE.search(text), SETS_PIPEFAIL.search(text)
    return bool(setting and first_pipe and setting.start() < first_pipe.start())


def steps(workflow: dict):
    for name, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            yield name, job, step


def unsafe(workflow: dict) -> list[str]:
    """Every way the workflow breaks the rules."""
    found = []
    for trigger in triggers(workflow) & {"pull_request_target", "workflow_run"}:
        found.append(f"triggered on {trigger}, which runs with the repository's secrets")
    for name, job in pull_request_jobs(workflow).items():
        if uses_secrets(job):
            found.append(f"{name}: runs on pull requests and references secrets")
        if not on_a_hosted_runner(job):
            found.append(f"{name}: runs on pull requests on runner {job.get('runs-on')!r}, not a GitHub-hosted one")
        if job.get("environment"):
            found.append(f"{name}: runs on pull requests in environment {job['environment']!r}")
    for name, job in workflow["jobs"].items():
        if uses_secrets(job) and not job.get("environment"):
            found.append(f"{name}: references secrets outside an environment (deployment branches guard those)")
    for name, job, step in steps(workflow):
        run = step.get("run")
        if isinstance(run, str) and PIPE.search(EXPRESSION.sub("", run)) and not pipefail(workflow, job, step):
            found.append(f"{name}: a pipeline in {run.strip().splitlines()[0]!r} runs without pipefail")
        action = step.get("uses", "")
        if action and not action.startswith(("./", "docker://")) and not FULL_SHA.fullmatch(action):
            found.append(f"{name}: {action} is not pinned to a commit")
        if action.startswith("actions/checkout@") and step.get("with", {}).get("persist-credentials") is not False:
            found.append(f"{name}: checkout leaves the job's token in .git/config")
    return found


@pytest.fixture(scope="module")
def workflow() -> dict:
    return load(WORKFLOW.read_text())


def test_the_example_breaks_no_rule(workflow):
    assert unsafe(workflow) == []


def test_the_rules_catch_the_example_as_it_was():
    found = unsafe(load(BEFORE))
    for expected in (
        "plan: runs on pull requests and references secrets",
        "plan: runs on pull requests on runner ['self-hosted', 'linux'], not a GitHub-hosted one",
        "plan: a pipeline in '.venv/bin/python -m vllm_fleet plan \"$INVENTORY\" | tee plan.txt' runs without pipefail",
        "plan: actions/checkout@v4 is not pinned to a commit",
        "plan: checkout leaves the job's token in .git/config",
    ):
        assert expected in found
    # The rollout job is ruled out for pull requests by its condition; it keeps its secrets.
    assert not [f for f in found if f.startswith("rollout:")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("on: pull_request_target\njobs: {}", "triggered on pull_request_target"),
        ("on: [pull_request_target, push]\njobs: {}", "triggered on pull_request_target"),
        # A condition this reader cannot prove false for pull requests counts as true.
        (
            "on: [pull_request, push]\njobs:\n  j:\n    if: github.event_name == 'push' || true\n"
            "    runs-on: ubuntu-24.04\n    environment: e\n    steps: [{run: 'echo ${{ secrets.K }}'}]",
            "j: runs on pull requests and references secrets",
        ),
        (
            "on: pull_request\njobs:\n  j:\n    runs-on: ubuntu-24.04\n    uses: ./x.yml\n    secrets: inherit",
            "j: runs on pull requests and references secrets",
        ),
        (
            "on: pull_request\njobs:\n  j:\n    runs-on: {group: fleet}\n    steps: [{run: 'true'}]",
            "j: runs on pull requests on runner {'group': 'fleet'}, not a GitHub-hosted one",
        ),
        (
            "on: push\njobs:\n  j:\n    runs-on: ubuntu-24.04\n    steps: [{run: 'a |& b', shell: 'bash -e {0}'}]",
            "j: a pipeline in 'a |& b' runs without pipefail",
        ),
        (
            'on: push\njobs:\n  j:\n    runs-on: ubuntu-24.04\n    steps: [{run: "a | b\\nset -o pipefail"}]',
            "j: a pipeline in 'a | b' runs without pipefail",
        ),
        (
            "on: push\njobs:\n  j:\n    runs-on: x\n    steps: [{run: 'echo ${{ secrets.K }}'}]",
            "j: references secrets outside an environment (deployment branches guard those)",
        ),
    ],
)
def test_each_rule_can_fail(text, expected):
    assert any(f.startswith(expected) for f in unsafe(load(text))), unsafe(load(text))


@pytest.mark.parametrize(
    "run",
    ["a || b", "set -euo pipefail\na | b", "set -o pipefail\na | b", "echo ${{ a || b }}", "true"],
)
def test_steps_whose_pipelines_fail_when_a_command_fails_pass(run):
    workflow = {"on": "push", "jobs": {"j": {"runs-on": "ubuntu-24.04", "steps": [{"run": run}]}}}
    assert unsafe(workflow) == []


def test_the_rollout_runs_only_from_main_with_the_secrets_in_production(workflow):
    rollout = workflow["jobs"]["rollout"]
    assert "pull_request" in triggers(workflow) and "rollout" not in pull_request_jobs(workflow)
    assert "github.ref == 'refs/heads/main'" in rollout["if"]
    assert rollout["environment"] == "production" and uses_secrets(rollout)
    assert "self-hosted" in runner_labels(rollout)


def test_the_pull_request_jobs_contact_no_host(workflow):
    jobs = pull_request_jobs(workflow)
    assert list(jobs) == ["plan"]
    scripts = [step["run"] for job in jobs.values() for step in job["steps"] if "run" in step]
    commands = re.findall(r"vllm_fleet (\w+)", "\n".join(scripts))
    # `plan` reads facts over SSH only with --facts.
    assert commands == ["plan"] and "--facts" not in "\n".join(scripts)


def test_the_plan_step_plans_an_inventory_that_needs_keys_with_none_given(workflow, tmp_path):
    [script] = [step["run"] for step in workflow["jobs"]["plan"]["steps"] if "plan.txt" in step.get("run", "")]
    inventory = tmp_path / "inventory.py"
    inventory.write_text(
        "enterprise = [('a', {'ssh_hostname': '192.0.2.10', 'accelerator': 'nvidia', 'gpu_count': 2, "
        "'gpu_memory_gib': 80})]\n"
        "gateway = [('gw', {'ssh_hostname': '192.0.2.9', 'gateway_auth': 'gateway'})]\n"
    )
    secrets = ("VLLM_API_KEY", "HF_TOKEN", "GATEWAY_API_KEY")
    env = {k: v for k, v in os.environ.items() if k not in secrets} | {"INVENTORY": str(inventory)}
    script = script.replace(".venv/bin/python", sys.executable).replace("plan.txt", str(tmp_path / "plan.txt"))
    # As GitHub runs `shell: bash`.
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    masked = re.findall(r"::add-mask::(\S+)", done.stdout)
    assert len(masked) == 2 and all(re.fullmatch(r"[0-9a-f]{48}", m) for m in masked)
    assert "REFUSED" not in (tmp_path / "plan.txt").read_text()
    # Without the placeholders the same inventory is refused, and the step fails despite `| tee`.
    bare = script.replace('export "$name=$value"', "true")
    failed = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", bare], cwd=REPO, env=env, capture_output=True
    )
    assert failed.returncode != 0
