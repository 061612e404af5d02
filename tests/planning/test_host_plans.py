"""What the deploy needs on any host, planned against facts written by hand: the package manager's lock
waited for before the first package operation, and D-Bus, curl, jq and ss installed on a
minimal server. (The sandbox hosts are such servers: tests/integration does the same for real.)"""

from __future__ import annotations

import pytest

from tests.planning.harness import FakeHost, plan_each
from tests.planning.test_gpu_stack_plans import GPU80

HOLDER = "Host tools | Wait up to 900 s for the package manager (process 1234 unattended-upgr holds its lock)"
INSTALL_TOOLS = (
    "Host tools | Install what the deploy runs on the host (dbus: systemd-run --wait talks to systemd over it; "
    "ss: pre-flight's port check)"
)


@pytest.fixture(scope="module")
def planned(tmp_path_factory):
    minimal = {"dbus": "no", "ss": "no"}
    return plan_each(
        tmp_path_factory.mktemp("host"),
        [
            # A fresh Ubuntu host: unattended-upgrades holds dpkg's lock (apt-daily-upgrade.service).
            FakeHost(
                "ubuntu22-upgrading",
                "ubuntu22",
                probe={"lock_holder": "1234 unattended-upgr", **minimal},
                packages={"curl": "7.81", "jq": "1.6"},
                data=GPU80,
            ),
            FakeHost("rocky9-minimal", "rocky9", probe=minimal, packages={"curl": "7.76", "jq": "1.6"}, data=GPU80),
        ],
    )


def test_the_lock_is_waited_for_before_any_package_operation(planned):
    """apt's DPkg::Lock::Timeout (apt.conf(5), apt 1.9.11+) covers a lock taken later in the run."""
    assert planned.rc == 0, planned.output[-3000:]
    names = planned.names("ubuntu22-upgrading")
    conf = "Host tools | Make apt wait up to 900 s for the package lock (unattended-upgrades)"
    assert names.index(conf) < names.index(HOLDER) < names.index(INSTALL_TOOLS)
    first_package_op = min(i for i, n in enumerate(names) if "Install" in n or "Add" in n or "Refresh" in n)
    assert names.index(INSTALL_TOOLS) == first_package_op
    assert names.index(INSTALL_TOOLS) < names.index("NVIDIA driver | Install NVIDIA driver 580")
    [wait] = planned.ops[HOLDER]["@fake/ubuntu22-upgrading"]
    assert "/var/lib/dpkg/lock-frontend" in wait and "/proc/locks" in wait and "sleep 5" in wait
    assert "dbus" in " ".join(planned.ops[INSTALL_TOOLS]["@fake/ubuntu22-upgrading"])
    assert "iproute2" in " ".join(planned.ops[INSTALL_TOOLS]["@fake/ubuntu22-upgrading"])
    assert "Host tools | Start the D-Bus system bus" in names


def test_rhel_family_gets_its_package_names_and_no_apt_settings(planned):
    names = planned.names("rocky9-minimal")
    assert not [n for n in names if "Make apt wait" in n or "Wait up to" in n]
    install = " ".join(planned.ops[INSTALL_TOOLS]["@fake/rocky9-minimal"])
    assert "iproute" in install and "iproute2" not in install and "dnf" in install
