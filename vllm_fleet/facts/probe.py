"""Pre-flight's host probe: what the deploy needs to know of a host, read in one round trip.

Probe is the one definition of it: each field's annotation holds its type and the shell that
prints it, and both the script that runs on the host (script) and the reading of what it
printed (Probe.parse) are derived from those fields, so no key is printed and not read, or read
and never printed. The host prints `key=value` lines: a bool as yes/no, a list comma-separated,
a number in digits, '' when the host had nothing to say.
"""

import dataclasses
import shlex
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated, Any

from pyinfra.api import FactBase

from vllm_fleet import paths
from vllm_fleet.facts.docker import DaemonJsonError, parse_daemon_json
from vllm_fleet.facts.printed import Field, Printed, PrintedEach, ProbeError, Where, key_values
from vllm_fleet.nix import NIX, NVIDIA_LIBS, out_link, stamp


def release_key(name: str) -> str:
    """A release file's name as a probe key (a key is an identifier)."""
    return name.replace(".", "_")


def _listeners(where: Where) -> str:
    return f"""if command -v ss >/dev/null 2>&1; then
listeners=$(ss -Hltnp "sport = :{where.port}" 2>/dev/null | grep -o 'users:(("[^"]*",pid=[0-9]*' | sort -u)
else
# No iproute2 yet (the deploy installs it): /proc/net/tcp tells that the port listens, not who.
listeners=$(awk 'NR > 1 && $4 == "0A" && $2 ~ /:{where.port:04X}$/ {{print "users:((\\042?\\042,pid="; exit}}' \\
    /proc/net/tcp /proc/net/tcp6 2>/dev/null)
fi"""


def _model(where: Where) -> str:
    return f"{shlex.quote(where.hf_cache_dir)}/hub/{shlex.quote(where.model_dir)}"


_FREE_KIB = (
    'free_kib() { p=$1; while [ ! -e "$p" ]; do p=$(dirname "$p"); done; df -Pk "$p" | awk \'NR==2 {print $4}\'; }'
)
_CURRENT = f"{paths.RELEASES_DIR}/current"
# nvidia-smi's health queries (its --help-query-gpu and --help-query-remapped-rows name the fields).
# Three runs, not one: a field an older driver lacks fails its whole query (reset_status: R550+).
NVIDIA_ECC = "--query-gpu=index,ecc.errors.uncorrected.volatile.total,retired_pages.pending"
NVIDIA_RESET = "--query-gpu=index,reset_status.reset_required,reset_status.drain_and_reset_recommended"
NVIDIA_REMAP = "--query-remapped-rows=gpu_bus_id,remapped_rows.pending,remapped_rows.failure"
NVIDIA_CSV = "--format=csv,noheader,nounits"
# amdgpu's RAS directory of each card (the kernel's amdgpu_ras.c: *_err_count, gpu_vram_bad_pages).
AMD_RAS = "/sys/class/drm/card*/device/ras"
# A GPU that fell off the bus hangs nvidia-smi: the probe waits this long for each query.
HEALTH_TIMEOUT = 30


def _nvidia_smi(query: str) -> str:
    """The query's CSV lines, then `exit=<status>` when it failed or timed out (124)."""
    return (
        f"$(command -v nvidia-smi >/dev/null 2>&1 && {{ timeout -k 5 {HEALTH_TIMEOUT} nvidia-smi {query} "
        f"{NVIDIA_CSV} 2>/dev/null || echo \"exit=$?\"; }} | tr '\\n' ';')"
    )


_UNIT = paths.UNIT_PATH


@dataclass(frozen=True)
class Probe:
    # The kernel and the GPU stack
    kernel: Annotated[str, Printed("$k", before="k=$(uname -r)")] = ""
    headers: Annotated[bool, Printed("[ -e /lib/modules/$k/build ]")] = False
    reboot_required: Annotated[
        bool,
        Printed(
            "{ [ -e /var/run/reboot-required ] || "
            "{ command -v needs-restarting >/dev/null 2>&1 && ! needs-restarting -r >/dev/null 2>&1; }; }",
            say_no=False,
        ),
    ] = False
    held: Annotated[tuple[str, ...], Printed(r"$(apt-mark showhold 2>/dev/null | tr '\n' ',')")] = ()  # by apt
    nvidia_rpm: Annotated[
        str, Printed("$(rpm -q --qf '%{VERSION}' nvidia-driver)", only_if="rpm -q nvidia-driver >/dev/null 2>&1")
    ] = ""
    epel: Annotated[bool, Printed("rpm -q epel-release >/dev/null 2>&1", say_no=False)] = False
    rocm_installed: Annotated[str, Printed("$(cat /opt/rocm/.info/version 2>/dev/null)")] = ""
    rocm_marked: Annotated[str, Printed(f"$(cat {paths.ROCM_INSTALLED} 2>/dev/null)")] = ""  # ours, see paths
    secure_boot: Annotated[str, Printed("$(mokutil --sb-state 2>/dev/null | head -n1)")] = ""
    nouveau: Annotated[bool, Printed("[ -d /sys/module/nouveau ]")] = False  # loaded
    nvidia_driver: Annotated[str, Printed("$v", before="v=$(cat /sys/module/nvidia/version 2>/dev/null)")] = ""
    # The driver libraries' version (NVML's file name): an update since boot leaves the loaded module
    # older, and every container start fails with "Driver/library version mismatch" until a reboot.
    nvidia_libraries: Annotated[
        str,
        Printed(
            r"""$(readlink -f "$(ldconfig -p 2>/dev/null | awk '/libnvidia-ml\.so\.1 / {print $NF; exit}')" """
            r"""2>/dev/null | sed -n 's/.*libnvidia-ml\.so\.//p')"""
        ),
    ] = ""
    cdi_spec: Annotated[  # the CDI spec names the loaded driver
        bool,
        Printed(f'[ -n "$v" ] && grep -qF "$v" {paths.CDI_SPEC} 2>/dev/null', true="current", say_no=False),
    ] = False
    toolkit: Annotated[bool, Printed("command -v nvidia-container-runtime-hook nvidia-ctk >/dev/null 2>&1")] = False
    kfd: Annotated[bool, Printed("[ -e /dev/kfd ]")] = False
    nvidia_pci_devices: Annotated[  # NVIDIA display controllers' PCI device IDs, as sysfs says ('0x1db4')
        tuple[str, ...],
        Printed(
            r"""$(for d in /sys/bus/pci/devices/*; do case "$(cat "$d/class" 2>/dev/null)" in (0x03*) """
            r"""[ "$(cat "$d/vendor")" = 0x10de ] && cat "$d/device";; esac; done 2>/dev/null | tr '\n' ',')"""
        ),
    ] = ()
    infiniband: Annotated[bool, Printed("[ -d /dev/infiniband ]")] = False  # RDMA devices (InfiniBand, RoCE)
    render_group: Annotated[bool, Printed("getent group render >/dev/null")] = False
    gfx: Annotated[
        tuple[str, ...], Printed(r"$(rocminfo 2>/dev/null | awk '/Name: *gfx/ {print $2}' | sort -u | tr '\n' ',')")
    ] = ()
    # GPU health (vllm_fleet/gpu_health.py reads it): each tool's lines, joined by ';'.
    nvidia_ecc: Annotated[str, Printed(_nvidia_smi(NVIDIA_ECC))] = ""
    nvidia_reset: Annotated[str, Printed(_nvidia_smi(NVIDIA_RESET))] = ""
    nvidia_remap: Annotated[str, Printed(_nvidia_smi(NVIDIA_REMAP))] = ""
    nvidia_xid: Annotated[  # each GPU's Xid codes in the kernel log since boot
        str,
        Printed(
            # Read only where NVIDIA's driver is (or its tools are): no journal scan on every other host.
            r"$({ [ -d /sys/module/nvidia ] || command -v nvidia-smi >/dev/null 2>&1; } && "
            r"{ journalctl -k -b -o cat 2>/dev/null; dmesg 2>/dev/null; } "
            r"| grep -oE 'NVRM: Xid \([^)]*\): [0-9]+' | sort -u | tr '\n' ';')"
        ),
    ] = ""
    amd_ras: Annotated[  # '<card>/device/ras/<block>_err_count ue: <n>' per block amdgpu counts errors of
        str,
        Printed(
            f'$(for f in {AMD_RAS}/*_err_count; do [ -r "$f" ] && '
            f"""echo "${{f#/sys/class/drm/}} $(grep -o 'ue: *[0-9]*' "$f")"; done 2>/dev/null | tr '\\n' ';')"""
        ),
    ] = ""
    amd_bad_pages: Annotated[  # '<card>/... <pages pending> <pages that failed to retire>'
        str,
        Printed(
            f'$(for f in {AMD_RAS}/gpu_vram_bad_pages; do [ -r "$f" ] && echo "${{f#/sys/class/drm/}} '
            f"""$(grep -cE ': *P *$' "$f") $(grep -cE ': *F *$' "$f")"; done 2>/dev/null | tr '\\n' ';')"""
        ),
    ] = ""
    # Docker
    docker: Annotated[bool, Printed("command -v docker >/dev/null 2>&1")] = False
    # Installed rpm packages that need the distribution's runc (podman, buildah): Docker's
    # containerd.io obsoletes and conflicts with runc, so dnf cannot install it beside them.
    runc_needed_by: Annotated[
        tuple[str, ...],
        Printed(
            "$(rpm -q --whatrequires runc --qf '%{NAME},' 2>/dev/null)",
            only_if="rpm -q --whatrequires runc >/dev/null 2>&1 && ! rpm -q containerd.io >/dev/null 2>&1",
        ),
    ] = ()
    docker_snap: Annotated[bool, Printed("command -v snap >/dev/null 2>&1 && snap list docker >/dev/null 2>&1")] = False
    docker_runtimes: Annotated[
        tuple[str, ...], Printed("$(docker info --format '{{range $k, $v := .Runtimes}}{{$k}},{{end}}' 2>/dev/null)")
    ] = ()
    daemon_json: Annotated[str, Printed(rf"$(cat {paths.DOCKER_DAEMON_JSON} 2>/dev/null | tr -d '\n')")] = ""
    dockerd_version: Annotated[  # '20.10.24' of "Docker version 20.10.24+dfsg1, build 297e128"
        str, Printed(r"$(dockerd --version 2>/dev/null | sed -n 's/^Docker version \([0-9][0-9.]*\).*/\1/p')")
    ] = ""
    image_id: Annotated[  # the local ID of the image to serve ('' when not loaded, or served by Nix)
        str,
        Printed(
            lambda w: (
                f"$([ -n {shlex.quote(w.image)} ] && "
                f"docker image inspect --format '{{{{.Id}}}}' {shlex.quote(w.image)} 2>/dev/null)"
            )
        ),
    ] = ""
    # Room, in KiB (0: not read)
    shm_kib: Annotated[int, Printed("$(df -Pk /dev/shm 2>/dev/null | awk 'NR==2 {print $2}')")] = 0
    docker_root_free_kib: Annotated[int, Printed("$(free_kib /var/lib/docker)", before=_FREE_KIB)] = 0
    nix_store_free_kib: Annotated[int, Printed("$(free_kib /nix/store)")] = 0
    hf_cache_free_kib: Annotated[int, Printed(lambda w: f"$(free_kib {shlex.quote(w.hf_cache_dir)})")] = 0
    models_free_kib: Annotated[int, Printed(f"$(free_kib {paths.MODELS_DIR})")] = 0
    # The model and the port
    shipped_models: Annotated[tuple[str, ...], Printed(rf"$(ls {paths.MODELS_DIR} 2>/dev/null | tr '\n' ',')")] = ()
    hf_cache_has_model: Annotated[bool, Printed(lambda w: f"[ -d {_model(w)} ]")] = False
    hf_cache_downloaded: Annotated[bool, Printed(lambda w: f"[ -e {_model(w)}/{paths.DOWNLOADED_MARK} ]")] = False
    port_listeners: Annotated[  # who listens on vllm_port: ss's users:(("name",pid=N items, space-separated
        str, Printed(r"""$(echo "$listeners" | tr '\n' ' ')""", before=_listeners)
    ] = ""
    vllm_main_pid: Annotated[  # 0: vllm.service is not running
        int, Printed(f"$(systemctl show -p MainPID --value {paths.SERVICE} 2>/dev/null)")
    ] = 0
    vllm_container_port: Annotated[  # where our container's port is published
        str, Printed(f"$(docker port {paths.CONTAINER_NAME} {paths.CONTAINER_PORT}/tcp 2>/dev/null | head -n1)")
    ] = ""
    vllm_container_pid: Annotated[  # our container's main process as the host sees it; 0: not running
        int, Printed(f"$(docker inspect -f '{{{{.State.Pid}}}}' {paths.CONTAINER_NAME} 2>/dev/null)")
    ] = 0
    firewall: Annotated[bool, Printed(f"systemctl is-active --quiet {paths.FIREWALL_SERVICE}")] = False  # active
    # How vLLM is served now, and the Nix way
    unit_method: Annotated[  # docker or nix, from the installed unit
        str, Printed(f"$(grep -q '/usr/bin/docker run' {_UNIT} && echo docker || echo nix)", only_if=f"[ -f {_UNIT} ]")
    ] = ""
    nix: Annotated[bool, Printed(f"{{ command -v nix || ls {NIX}; }} >/dev/null 2>&1")] = False
    nix_version: Annotated[
        str, Printed(f"$({{ nix --version || {NIX} --version; }} 2>/dev/null | head -n1 | awk '{{print $NF}}')")
    ] = ""
    selinux: Annotated[str, Printed("$(getenforce 2>/dev/null)")] = ""
    nix_links: Annotated[
        tuple[str, ...],
        Printed(rf'$(ls -d {paths.NIX_DIR}/vllm-server-* 2>/dev/null | grep -v flake-sha256 | tr "\n" ,)'),
    ] = ()
    driver_libs: Annotated[
        tuple[str, ...],
        Printed(rf"$(ldconfig -p 2>/dev/null | awk '{NVIDIA_LIBS} {{print $1}}' | sort -u | tr '\n' ,)"),
    ] = ()
    linked_driver_libs: Annotated[
        tuple[str, ...], Printed(rf'$(ls {paths.DRIVER_LINKS_DIR}/lib 2>/dev/null | sort -u | tr "\n" ,)')
    ] = ()
    nix_builds: Annotated[  # accelerator -> "<store path> <flake hash>"
        Mapping[str, str],
        PrintedEach(
            "nix_build_",
            lambda w: (
                (a, f"$(readlink {out_link(a)} 2>/dev/null) $(cat {stamp(a)} 2>/dev/null)") for a in w.accelerators
            ),
        ),
    ] = field(default_factory=dict)
    # Releases
    release_current: Annotated[str, Printed(f"$(readlink {_CURRENT} 2>/dev/null)")] = ""
    release_previous: Annotated[str, Printed(f"$(readlink {paths.RELEASES_DIR}/previous 2>/dev/null)")] = ""
    # An activation cut off while it tried a release may have left that release's unit or env file
    # in place, or its server running: no unit is vouched for until one ends serving.
    release_unit_sha: Annotated[
        str, Printed(f"$(test -e {paths.ACTIVATE_PENDING} || sha256sum {_UNIT} 2>/dev/null | cut -d' ' -f1)")
    ] = ""
    release_sha: Annotated[  # release_key(release file) -> its sha256
        Mapping[str, str],
        PrintedEach(
            "release_sha_",
            lambda w: (
                (release_key(n), f"$(sha256sum {_CURRENT}/{n} 2>/dev/null | cut -d' ' -f1)")
                for n in paths.RELEASE_FILES
            ),
        ),
    ] = field(default_factory=dict)

    @classmethod
    def parse(cls, lines: Iterable[str], *, strict: bool = False) -> "Probe":
        """From the script's `key=value` lines (a line that is not one is ignored); see of()."""
        return cls.of(key_values(lines), strict=strict)

    @classmethod
    def of(cls, values: Mapping[str, str], *, strict: bool = False) -> "Probe":
        """From key -> text as the host prints it (a recorded probe, a test's). A value that does not
        fit its field's type is refused. Unless strict, a key this probe does not print (an older
        probe's, a hand-written extra) is left out and a missing one keeps its default; strict
        refuses both, as the script's own output never has either."""
        typed: dict[str, Any] = {name: {} for name in EACH.values()}
        unknown = []
        for key, text in values.items():
            prefix = next((prefix for prefix in EACH if key.startswith(prefix)), None)
            if prefix is not None:
                typed[EACH[prefix]][key.removeprefix(prefix)] = text
            elif key in BY_NAME:
                typed[key] = BY_NAME[key].read(text)
            else:
                unknown.append(key)
        if strict:
            missing = [f.name for f in FIELDS if f.always and f.name not in values]
            if unknown or missing:
                raise ProbeError(
                    f"the probe's output does not fit Probe: keys it has no field for: {unknown or 'none'}; "
                    f"fields it did not print: {missing or 'none'}"
                )
        return cls(**typed)

    @cached_property
    def daemon_config(self) -> dict[str, Any] | DaemonJsonError:
        """daemon.json as it stands: its keys, {} when absent, or why it cannot be read."""
        return parse_daemon_json(self.daemon_json)

    @property
    def nvidia_mismatch(self) -> bool:
        """The loaded NVIDIA module and the installed libraries are different releases (a reboot loads
        the new module)."""
        return bool(self.nvidia_driver and self.nvidia_libraries and self.nvidia_driver != self.nvidia_libraries)

    def nix_build(self, accelerator: str) -> tuple[str, str]:
        """The Nix build of an accelerator's server on this host: (its store path, the hash of the
        flake it was built from); ('', '') when there is none."""
        target, _, digest = self.nix_builds.get(accelerator, "").partition(" ")
        return target.strip(), digest.strip()


def _fields() -> tuple[Field, ...]:
    hints = typing.get_type_hints(Probe, include_extras=True)
    found = []
    for f in dataclasses.fields(Probe):
        hint = hints[f.name]
        printed = [m for m in getattr(hint, "__metadata__", ()) if isinstance(m, Printed | PrintedEach)]
        if len(printed) != 1:
            raise TypeError(f"Probe.{f.name} says how it is printed {len(printed)} times, not once")
        found.append(Field(f.name, typing.get_args(hint)[0], printed[0]))
    return tuple(found)


FIELDS = _fields()
BY_NAME = {f.name: f for f in FIELDS if isinstance(f.printed, Printed)}
EACH = {f.printed.prefix: f.name for f in FIELDS if isinstance(f.printed, PrintedEach)}  # prefix -> field


def script(where: Where, fields: Iterable[Field] = FIELDS) -> str:
    """The probe that runs on the host: the lines of every field (or of these), in Probe's order."""
    return "\n" + "\n".join(line for f in fields for line in f.lines(where)) + "\n"


class HostProbe(FactBase[Probe]):
    """Probe, read in one round trip: pre-flight's checks and every task read this one."""

    def command(self, port: int, hf_cache_dir: str, model_dir: str, accelerators: str, image: str = "") -> str:
        return script(Where(port, hf_cache_dir, model_dir, tuple(accelerators.split(",")), image))

    def process(self, output: list[str]) -> Probe:
        return Probe.parse(output)
