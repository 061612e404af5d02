"""What the sandbox's hosts share: an image registry and an apt cache, each a Debian package in a
container of its own, one for every sandbox on this Docker engine (the tests', the benchmarks',
`make demo`'s).

- The registry (Debian's docker-registry): the vLLM image is pushed to it once, and every sandbox
  host but the first pulls it by digest (the first gets it as a `docker save` archive), so both
  ways an image reaches a host are exercised.
- The apt cache (Debian's apt-cacher-ng): every host's apt goes through it, so the packages a
  deploy installs are downloaded once for all the hosts of a run, and kept for the next.

Each joins a sandbox's network at a fixed address of it (.2, .3) and keeps what it holds in a
volume between runs. The registry's port on 127.0.0.1 is fixed, so the engine here remembers which
layers it pushed there already and a later push sends nothing again.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from sandbox.shell import image_exists, log, quiet, run


@dataclass(frozen=True)
class Service:
    name: str  # the container's, and its volume's
    package: str
    guest_port: int
    host_port: int  # on 127.0.0.1
    data_dir: str  # what the volume keeps
    command: tuple[str, ...]
    config_path: str = ""
    config: str = ""  # replaces the package's configuration at config_path
    octet: int = 2  # its address on each sandbox network: SUBNET.octet

    def image_tag(self, base: str, prefix: str) -> str:
        recipe = f"{base} {self.package} {self.command} {self.config}".encode()
        return f"{prefix}/{self.package}:{hashlib.sha256(recipe).hexdigest()[:12]}"

    def build_image(self, base: str, prefix: str) -> str:
        tag = self.image_tag(base, prefix)
        if image_exists(tag):
            return tag
        log(f"building {tag}: Debian's {self.package}")
        # One Dockerfile line each: printf makes the configuration's line breaks.
        config = self.config.replace("\n", "\\n")
        lines = [
            f"FROM {base}",
            f"RUN apt-get update -qq && apt-get install -y -qq {self.package} >/dev/null"
            " && rm -rf /var/lib/apt/lists/*",
            *([f"RUN printf {shlex.quote(config)} > {self.config_path}"] if self.config else []),
            f"ENTRYPOINT {json.dumps(list(self.command))}",
        ]
        run(["docker", "build", "-q", "-t", tag, "-"], input="\n".join(lines) + "\n", stdout=subprocess.DEVNULL)
        return tag

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.host_port}/", timeout=2):
                return True
        except urllib.error.HTTPError:
            return True  # an answer, if not a page
        except OSError:
            return False

    def start(self, base: str, prefix: str) -> None:
        """Running (started if need be, outside any one sandbox's lifetime) and answering."""
        if not quiet(["docker", "container", "inspect", self.name]):
            log(f"starting the sandbox's {self.package} ({self.name}, 127.0.0.1:{self.host_port})")
            run(
                ["docker", "run", "-d", "--name", self.name, "--restart", "unless-stopped"]
                + ["-v", f"{self.name}:{self.data_dir}", "-p", f"127.0.0.1:{self.host_port}:{self.guest_port}"]
                + [self.build_image(base, prefix)],
                stdout=subprocess.DEVNULL,
            )
        else:
            run(["docker", "start", self.name], stdout=subprocess.DEVNULL)
        for _ in range(60):
            if self._answers():
                return
            time.sleep(0.5)
        raise SystemExit(f"[sandbox] {self.name} did not answer on 127.0.0.1:{self.host_port} within 30 s")

    def join(self, network: str, subnet: str) -> str:
        """On a sandbox network; returns its address and port there."""
        address = f"{subnet}.{self.octet}"
        attached = subprocess.run(
            ["docker", "inspect", "-f", "{{json .NetworkSettings.Networks}}", self.name],
            capture_output=True,
            text=True,
        )
        if network not in json.loads(attached.stdout or "{}"):
            run(["docker", "network", "connect", "--ip", address, network, self.name], stdout=subprocess.DEVNULL)
        return f"{address}:{self.guest_port}"

    def leave(self, network: str) -> None:
        """Off a sandbox network, so that the network can be removed."""
        subprocess.run(["docker", "network", "disconnect", "-f", network, self.name], capture_output=True)


REGISTRY = Service(
    name="vllm-fleet-sandbox-registry",
    package="docker-registry",
    guest_port=5000,
    # Docker trusts registries on loopback over plain HTTP: this machine pushes here.
    host_port=17999,
    data_dir="/var/lib/docker-registry",
    command=("docker-registry", "serve", "/etc/docker/registry/config.yml"),
    config_path="/etc/docker/registry/config.yml",
    # Debian's configuration asks for htpasswd logins; this registry is reached only from this
    # machine and the sandbox networks, and holds test images: anonymous pulls and pushes.
    config="version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/docker-registry\nhttp:\n  addr: :5000\n",
    octet=2,
)
APT_CACHE = Service(
    name="vllm-fleet-sandbox-apt-cache",
    package="apt-cacher-ng",
    guest_port=3142,
    host_port=17998,
    data_dir="/var/cache/apt-cacher-ng",
    command=("/usr/sbin/apt-cacher-ng", "-c", "/etc/apt-cacher-ng", "ForeGround=1"),
    octet=3,
)
SERVICES = (REGISTRY, APT_CACHE)


def push(image: str, pull_from: str) -> str:
    """Push the image to the registry; returns its reference by digest as the hosts pull it (from
    `pull_from`, the registry's address on their network)."""
    local = f"127.0.0.1:{REGISTRY.host_port}/{image}"
    run(["docker", "tag", image, local])
    log(f"pushing {image} to the sandbox's registry (once: later pushes find its layers there)")
    run(["docker", "push", "--quiet", local], stdout=subprocess.DEVNULL)
    digests = run(["docker", "inspect", "-f", "{{json .RepoDigests}}", local], capture_output=True).stdout
    repository = image.rsplit(":", 1)[0]
    digest = next(d for d in json.loads(digests) if d.startswith(f"127.0.0.1:{REGISTRY.host_port}/{repository}@"))
    return f"{pull_from}/{repository}@{digest.rsplit('@', 1)[1]}"


def apt_proxy_conf(apt_cache: str) -> str:
    """A host's apt configuration for the cache at `apt_cache` (address:port on its network)."""
    return f'Acquire::http::Proxy "http://{apt_cache}";\n'
