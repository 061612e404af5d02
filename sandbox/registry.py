"""The sandbox's image registry: Debian's docker-registry in a container of its own, which the
vLLM image is pushed to once and which every sandbox host but the first pulls it from (the first
gets it as a `docker save` archive), so both ways an image reaches a host are exercised.

One registry serves every sandbox on this Docker engine (the tests', the benchmarks', `make
demo`'s): it joins each sandbox's network at that network's .2 and keeps its blobs in a volume
between runs. Its port on 127.0.0.1 is fixed, so the engine here remembers which layers it pushed
there already and a later push sends nothing again.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import time
import urllib.request

from sandbox.shell import image_exists, log, quiet, run

NAME = "vllm-fleet-sandbox-registry"
VOLUME = "vllm-fleet-sandbox-registry"
PUSH_PORT = 17999  # on 127.0.0.1, where this machine pushes (Docker trusts loopback registries over HTTP)
PORT = 5000  # docker-registry's own, where the hosts pull from on their network
RECIPE = "apt-get install docker-registry, no auth v2"
# Debian's configuration asks for htpasswd logins; the sandbox's registry is reached only from this
# machine and the sandbox networks, and serves test images: it takes anonymous pulls and pushes.
CONFIG = """version: 0.1
storage:
  filesystem:
    rootdirectory: /var/lib/docker-registry
http:
  addr: :5000
"""
# One Dockerfile line: printf makes the configuration's line breaks.
CONFIG_LINE = CONFIG.replace("\n", "\\n")


def image_tag(base: str, prefix: str) -> str:
    return f"{prefix}/registry:{hashlib.sha256(f'{base} {RECIPE}'.encode()).hexdigest()[:12]}"


def build_image(base: str, prefix: str) -> str:
    tag = image_tag(base, prefix)
    if not image_exists(tag):
        log(f"building {tag}: Debian's docker-registry")
        run(
            ["docker", "build", "-q", "-t", tag, "-"],
            input=(
                f"FROM {base}\n"
                "RUN apt-get update -qq && apt-get install -y -qq docker-registry >/dev/null "
                "&& rm -rf /var/lib/apt/lists/*\n"
                f"RUN printf {shlex.quote(CONFIG_LINE)} > /etc/docker/registry/config.yml\n"
                'ENTRYPOINT ["docker-registry", "serve", "/etc/docker/registry/config.yml"]\n'
            ),
            stdout=subprocess.DEVNULL,
        )
    return tag


def _answers() -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{PUSH_PORT}/v2/", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def start(base: str, prefix: str) -> None:
    """The registry running (started if need be, outside any one sandbox's lifetime)."""
    if not quiet(["docker", "container", "inspect", NAME]):
        log(f"starting the sandbox's image registry {NAME} (127.0.0.1:{PUSH_PORT})")
        run(
            ["docker", "run", "-d", "--name", NAME, "--restart", "unless-stopped"]
            + ["-v", f"{VOLUME}:/var/lib/docker-registry", "-p", f"127.0.0.1:{PUSH_PORT}:{PORT}"]
            + [build_image(base, prefix)],
            stdout=subprocess.DEVNULL,
        )
    else:
        run(["docker", "start", NAME], stdout=subprocess.DEVNULL)
    for _ in range(60):
        if _answers():
            return
        time.sleep(0.5)
    raise SystemExit(f"[sandbox] the image registry {NAME} did not answer on 127.0.0.1:{PUSH_PORT} within 30 s")


def join(network: str, address: str) -> str:
    """The registry on a sandbox network at `address`; returns where that network's hosts pull from."""
    attached = subprocess.run(
        ["docker", "inspect", "-f", "{{json .NetworkSettings.Networks}}", NAME], capture_output=True, text=True
    )
    if network not in json.loads(attached.stdout or "{}"):
        run(["docker", "network", "connect", "--ip", address, network, NAME], stdout=subprocess.DEVNULL)
    return f"{address}:{PORT}"


def leave(network: str) -> None:
    """Off a sandbox network, so that the network can be removed."""
    subprocess.run(["docker", "network", "disconnect", "-f", network, NAME], capture_output=True)


def push(image: str, pull_from: str) -> str:
    """Push the image; returns its reference by digest as the hosts pull it (from `pull_from`)."""
    local = f"127.0.0.1:{PUSH_PORT}/{image}"
    run(["docker", "tag", image, local])
    log(f"pushing {image} to the sandbox's registry (once: later pushes find its layers there)")
    run(["docker", "push", "--quiet", local], stdout=subprocess.DEVNULL)
    digests = run(["docker", "inspect", "-f", "{{json .RepoDigests}}", local], capture_output=True).stdout
    repository = image.rsplit(":", 1)[0]
    digest = next(d for d in json.loads(digests) if d.startswith(f"127.0.0.1:{PUSH_PORT}/{repository}@"))
    return f"{pull_from}/{repository}@{digest.rsplit('@', 1)[1]}"
