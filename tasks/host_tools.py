"""Host tools: the package manager waited for, then what the deploy itself runs on the host."""

from __future__ import annotations

from io import StringIO

from pyinfra import host
from pyinfra.operations import files, server, systemd

from vllm_fleet import paths, prerequisites
from vllm_fleet.facts.host_tools import HostTools
from vllm_fleet.operations import deploy
from vllm_fleet.settings import Settings


@deploy("Host tools")
def host_tools_setup(settings: Settings) -> None:
    tools = prerequisites.ROLE_TOOLS[settings.role]
    state = host.get_fact(HostTools, tools=",".join(tools))
    timeout = settings.package_lock_timeout
    if state.family == "apt":
        files.put(
            name=f"Make apt wait up to {timeout} s for the package lock (unattended-upgrades)",
            src=StringIO(prerequisites.apt_lock_conf(timeout)),
            dest=paths.APT_LOCK_CONF,
            mode="644",
        )
    if state.lock_holder:
        server.shell(
            name=f"Wait up to {timeout} s for the package manager (process {state.lock_holder} holds its lock)",
            commands=[prerequisites.wait_command(timeout)],
        )
    missing = prerequisites.missing(state.present, tools)
    if missing:
        reasons = "; ".join(f"{name}: {prerequisites.TOOLS[name].why}" for name in missing)
        server.packages(
            name=f"Install what the deploy runs on the host ({reasons})",
            packages=prerequisites.packages(missing, state.family or "apt"),
        )
    if "dbus" in tools:
        # Installing Debian's dbus does not start it.
        systemd.service(name="Start the D-Bus system bus", service="dbus.service", running=True)
