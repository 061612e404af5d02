"""HAProxy's `show stat` read by column name: by the verify suite and the tests (Python), and by
the drain helper on the gateway (awk), both on output recorded from a real HAProxy.

SHOW_STAT_2012 is recorded: DataDog/dd-agent issue 87, `echo show stats | socat stdio ...`,
cut after the first rows (its header starts "#pxname"; current releases print "# pxname").
"""

import os
import subprocess
from pathlib import Path

import jinja2
import pytest

from vllm_fleet import haproxy, paths

REPO = Path(__file__).resolve().parents[2]
SHOW_STAT_2012 = """\
#pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,
public,FRONTEND,,,537,904,2000,13853595,503908946957,3666729890,0,0,26517,,,,,OPEN,,,,,,,,,1,1,0,,,,0,18,0,713,
static-via-nginx,i-23518d45,0,0,0,3,,4398,1655717,153869053,,0,,0,0,0,0,UP,1,1,0,0,0,254029,0,,1,3,1,,4398,,2,0,,8,
static-via-nginx,i-6529e303,0,0,0,3,,4398,1659293,155868354,,0,,0,0,0,0,UP,1,1,0,0,0,254029,0,,1,3,2,,4398,,2,0,,8,
static-via-nginx,BACKEND,0,0,0,9,0,17591,6639501,617733563,0,0,,0,0,0,0,UP,4,4,0,,0,254029,0,,1,3,0,,17591,,1,0,,30,
dogweb,i-23518d45,0,0,0,5,,40093,67184288,99422227,,0,,0,2,0,0,UP,1,1,0,2,0,254029,0,,1,4,1,,40093,,2,0,,8,
"""
BACKEND = "static-via-nginx"


def test_servers_of_one_backend_by_column_name():
    servers = haproxy.parse_show_stat(SHOW_STAT_2012, BACKEND)
    assert set(servers) == {"i-23518d45", "i-6529e303"}
    assert servers["i-23518d45"]["status"] == "UP" and servers["i-23518d45"]["stot"] == "4398"
    # The current header's "# " prefix reads the same.
    modern = SHOW_STAT_2012.replace("#pxname", "# pxname", 1).replace(BACKEND, paths.HAPROXY_BACKEND)
    assert haproxy.server_status(modern) == {"i-23518d45": "UP", "i-6529e303": "UP"}


def test_output_that_is_not_show_stat_is_refused():
    with pytest.raises(ValueError, match="not HAProxy's show stat output"):
        haproxy.parse_show_stat("Unknown command. Please enter one of the following commands only :\n")


def test_output_that_is_not_show_stat_is_quoted_up_to_80_characters():
    text = "Unknown command. " + "x" * 92 + "Zq7wPm2x"
    with pytest.raises(ValueError) as caught:
        haproxy.parse_show_stat(text)
    assert str(caught.value) == f"not HAProxy's show stat output: {text[:80]!r}"


def test_a_listen_sections_own_rows_are_not_servers_and_the_first_row_counts():
    """A `listen` section prints FRONTEND and BACKEND rows under its own name; a server may be the
    first row after the header."""
    text = (
        "# pxname,svname,status\n"
        f"{paths.HAPROXY_BACKEND},gpu-1,UP\n"
        f"{paths.HAPROXY_BACKEND},FRONTEND,OPEN\n"
        f"{paths.HAPROXY_BACKEND},gpu-2,DOWN\n"
        f"{paths.HAPROXY_BACKEND},BACKEND,UP\n"
    )
    assert haproxy.server_status(text) == {"gpu-1": "UP", "gpu-2": "DOWN"}


@pytest.fixture
def helper(tmp_path):
    """The drain helper rendered for the recorded backend, its socat answering with the recording."""
    script = tmp_path / "vllm-gateway"
    template = jinja2.Template((REPO / "templates" / "vllm-gateway.sh.j2").read_text())
    script.write_text(template.render(haproxy_admin_socket=str(tmp_path / "admin.sock"), haproxy_backend=BACKEND))
    script.chmod(0o755)
    (tmp_path / "bin").mkdir()
    socat = tmp_path / "bin" / "socat"
    (tmp_path / "show-stat").write_text(SHOW_STAT_2012)
    socat.write_text(f"#!/bin/sh\ncat >/dev/null\ncat {tmp_path / 'show-stat'}\n")
    socat.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(script), *args], capture_output=True, text=True, env=env, timeout=20)

    return run


def test_the_drain_helper_reads_status_and_sessions_by_name(helper):
    ready = helper("ready", "2", "i-23518d45")
    assert ready.returncode == 0 and ready.stdout.endswith("i-23518d45 is back in rotation\n"), ready
    drained = helper("drain", "2", "i-6529e303")
    assert drained.returncode == 0 and drained.stdout.endswith("i-6529e303 drained\n"), drained
    missing = helper("ready", "2", "i-nowhere")
    assert missing.returncode == 2 and f"no server i-nowhere in backend {BACKEND}" in missing.stderr
