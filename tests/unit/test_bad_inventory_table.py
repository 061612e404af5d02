"""The bad-inventory table (tests/bad_inventories.py), validated as `plan` and the deploy
validate it: every case refused with its own line, and no secret in any of them, as
`vllm-fleet hosts` prints it to an operator. tests/integration/test_bad_inventories.py runs the
same table through `plan` and the real pyinfra deploy."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from tests.bad_inventories import (
    CASES,
    FLEET_CASES,
    NAME_CASES,
    expected_line,
    fleet_inventory,
    single_host_inventory,
)
from tests.hostile_inventories import HOSTILE_FLEET_CASES
from vllm_fleet import cli

CONNECTION = {"ssh_hostname": "192.0.2.1"}


def refusal(path: Path) -> str:
    """`vllm-fleet hosts` run in this process (as the property tests run it), so that mutation
    testing sees which rules the table holds."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(["hosts", str(path)])
    assert rc == 2, out.getvalue() + err.getvalue()
    assert out.getvalue() == ""
    return err.getvalue()


@pytest.fixture(scope="module")
def single_host(tmp_path_factory, make_archive) -> tuple[str, str]:
    tmp = tmp_path_factory.mktemp("bad")
    archive = make_archive(tmp, "a/b:1")
    path = tmp / "inventory.py"
    path.write_text(single_host_inventory(CONNECTION, archive))
    return refusal(path), archive


@pytest.mark.parametrize("case_id, expected", [(c[0], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_each_case_is_refused_with_its_own_line(single_host, case_id, expected):
    message, archive = single_host
    lines = [line.strip() for line in message.splitlines()]
    mine = [line for line in lines if line.startswith(f"host {case_id}: ")]
    assert len(mine) == 1, f"{case_id}: {mine}"
    assert expected_line(case_id, expected, archive) in mine[0]


@pytest.mark.parametrize("case_id, name, expected", NAME_CASES, ids=[c[0] for c in NAME_CASES])
def test_names_that_formats_would_split_are_refused(single_host, case_id, name, expected):
    assert expected in single_host[0]


def test_every_host_of_the_table_is_refused_and_no_secret_is_shown(single_host):
    message, _ = single_host
    refused = [line for line in message.splitlines() if line.strip().startswith("host ")]
    assert len(refused) == len(CASES) + len(NAME_CASES)
    assert "hunter2" not in message


ACROSS_HOSTS = FLEET_CASES + HOSTILE_FLEET_CASES


@pytest.mark.parametrize("case_id, groups, expected", ACROSS_HOSTS, ids=[c[0] for c in ACROSS_HOSTS])
def test_rules_across_hosts(tmp_path, case_id, groups, expected):
    path = tmp_path / "inventory.py"
    path.write_text(fleet_inventory(groups, CONNECTION))
    message = refusal(path)
    assert expected in message
    assert "hunter2" not in message
