"""Every name vllm-fleet keeps on a host, in one place: the tasks, pre-flight's probe, the
helpers rendered from templates/ and the tests all read them from here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# The vLLM service and its container.
SERVICE = "vllm.service"
UNIT_DIR = "/etc/systemd/system"


def unit_path(service: str) -> str:
    """Where a unit of ours is installed."""
    return f"{UNIT_DIR}/{service}"


UNIT_PATH = unit_path(SERVICE)
CONTAINER_NAME = "vllm"
# vLLM's own default port, inside the container; the host publishes it on vllm_port.
CONTAINER_PORT = 8000

# Configuration, root-only. Each deploy's unit, env file and readiness parameters form a
# release; current and previous are links in RELEASES_DIR, and ENV_FILE links to the current
# release's env file.
CONFIG_DIR = "/etc/vllm-fleet"
RELEASES_DIR = f"{CONFIG_DIR}/releases"
ENV_FILE = f"{CONFIG_DIR}/vllm.env"
RELEASE_FILES = ("vllm.service", "vllm.env", "release.conf")
# Present while an activation has not yet ended on a release that serves (it was killed, or
# nothing served): the host is then not settled on its current release.
ACTIVATE_PENDING = f"{RELEASES_DIR}/.activating"
FIREWALL_RULES = f"{CONFIG_DIR}/firewall.nft"
FIREWALL_SERVICE = "vllm-fleet-firewall.service"
GATEWAY_STAGED_CONFIG = f"{CONFIG_DIR}/haproxy.cfg"
GATEWAY_CERTIFICATE = f"{CONFIG_DIR}/gateway.pem"

# State: images, shipped models, the Nix server, the activation's log.
STATE_DIR = "/var/lib/vllm-fleet"
IMAGE_DIR = f"{STATE_DIR}/images"
MODELS_DIR = f"{STATE_DIR}/models"
# Written beside the hub's files when our download finished; a partial download has none.
DOWNLOADED_MARK = ".vllm-fleet-downloaded"
NIX_DIR = f"{STATE_DIR}/nix"
NIX_INSTALLER_DIR = f"{STATE_DIR}/nix-installer"
ACTIVATE_LOG = f"{STATE_DIR}/activate.log"
ACTIVATE_OUTCOME = f"{STATE_DIR}/activate.json"  # what the last activation did (releases.Outcome)
# What amdgpu-install last installed for us, "<use case> <ROCm version>": the dkms use case
# installs the kernel driver alone, and leaves no /opt/rocm/.info/version to read.
ROCM_INSTALLED = f"{STATE_DIR}/rocm-installed"

# Helpers the deploy installs and runs (rendered from templates/ with these names).
HELPER_DIR = "/usr/local/lib/vllm-fleet"
READY_SCRIPT = f"{HELPER_DIR}/vllm-ready"
ACTIVATE_SCRIPT = f"{HELPER_DIR}/vllm-activate"
NIX_INSTALL_SCRIPT = f"{HELPER_DIR}/vllm-nix-install"
GATEWAY_SCRIPT = f"{HELPER_DIR}/vllm-gateway"
# The transient unit the activation runs in, and its journal tag.
ACTIVATE_UNIT = "vllm-fleet-activate"

# Cluster members (one model across hosts): the watch that restarts a member when the cluster
# lost one, its settings, and what it last saw (read by the readiness check and the verify suite).
CLUSTER_WATCH_SERVICE = "vllm-cluster-watch.service"
CLUSTER_WATCH_SCRIPT = f"{HELPER_DIR}/vllm-cluster-watch"
CLUSTER_CONF = f"{CONFIG_DIR}/cluster.conf"
RUN_DIR = "/run/vllm-fleet"
CLUSTER_STATUS = f"{RUN_DIR}/cluster.status"

# HAProxy on gateway hosts.
HAPROXY_CONFIG = "/etc/haproxy/haproxy.cfg"
HAPROXY_ADMIN_SOCKET = "/run/haproxy/admin.sock"
HAPROXY_BACKEND = "vllm"  # the backend (and frontend) haproxy.cfg.j2 names


# Monitoring: Debian's Prometheus, Alertmanager and node exporter read these; staged copies are
# checked by promtool and amtool before they replace the live ones.
PROMETHEUS_DIR = "/etc/prometheus"
PROMETHEUS_CONFIG = f"{PROMETHEUS_DIR}/prometheus.yml"
PROMETHEUS_RULES = f"{PROMETHEUS_DIR}/vllm-fleet-rules.yml"
PROMETHEUS_DEFAULTS = "/etc/default/prometheus"
ALERTMANAGER_CONFIG = f"{PROMETHEUS_DIR}/alertmanager.yml"
ALERTMANAGER_DEFAULTS = "/etc/default/prometheus-alertmanager"
NODE_EXPORTER_DEFAULTS = "/etc/default/prometheus-node-exporter"
MONITORING_STAGE_DIR = f"{CONFIG_DIR}/monitoring"
PROMETHEUS_STAGED_CONFIG = f"{MONITORING_STAGE_DIR}/prometheus.yml"
PROMETHEUS_STAGED_RULES = f"{MONITORING_STAGE_DIR}/vllm-fleet-rules.yml"
# The staged configuration again, naming the staged rules: the copy promtool checks.
PROMETHEUS_CHECKED_CONFIG = f"{MONITORING_STAGE_DIR}/prometheus-checked.yml"
ALERTMANAGER_STAGED_CONFIG = f"{MONITORING_STAGE_DIR}/alertmanager.yml"
# Exporters run as containers (the GPU vendors', and node metrics where the OS has no package).
GPU_EXPORTER_SERVICE = "vllm-fleet-gpu-exporter.service"
GPU_EXPORTER_CONTAINER = "vllm-fleet-gpu-exporter"
NODE_EXPORTER_SERVICE = "vllm-fleet-node-exporter.service"
NODE_EXPORTER_CONTAINER = "vllm-fleet-node-exporter"
NODE_EXPORTER_MARK = f"{CONFIG_DIR}/node-exporter-installed"  # the distribution's node exporter is ours
DCGM_COUNTERS = f"{CONFIG_DIR}/dcgm-counters.csv"
DCGM_COUNTERS_IN_CONTAINER = "/etc/dcgm-exporter/vllm-fleet-counters.csv"
# The Grafana dashboard and the provisioning files that load it, for a Grafana on the host.
GRAFANA_DIR = f"{STATE_DIR}/grafana"
GRAFANA_DASHBOARD = f"{GRAFANA_DIR}/dashboards/vllm-fleet.json"
GRAFANA_DASHBOARD_PROVIDER = f"{GRAFANA_DIR}/provisioning/dashboards/vllm-fleet.yaml"
GRAFANA_DATASOURCE = f"{GRAFANA_DIR}/provisioning/datasources/vllm-fleet.yaml"


# Files of the host's own that the GPU stack, Docker and Nix read: written whole by the deploy,
# merged into (daemon.json, nix.conf) or generated by a vendor's tool on its behalf (the CDI spec).
NOUVEAU_BLACKLIST = "/etc/modprobe.d/blacklist-nouveau.conf"
CDI_SPEC = "/etc/cdi/nvidia.yaml"
# NVIDIA's workaround for containers losing their GPUs on `systemctl daemon-reload`: the rule
# keeps /dev/char links to the NVIDIA device nodes.
DEV_CHAR_RULE = "/lib/udev/rules.d/71-nvidia-dev-char.rules"
DOCKER_DAEMON_JSON = "/etc/docker/daemon.json"
# Ours, included from the host's nix.conf (Debian's and the installer's settings stay there).
NIX_CONF = "/etc/nix/nix.conf"
OUR_NIX_CONF = "/etc/nix/vllm-fleet.conf"
# Nix-built CUDA programs look for the driver in /run/opengl-driver (NixOS's convention): a link,
# made again at every boot by systemd-tmpfiles, to where the host's driver libraries are linked.
OPENGL_DRIVER = "/run/opengl-driver"
TMPFILES_CONF = "/etc/tmpfiles.d/vllm-fleet-opengl-driver.conf"
DRIVER_LINKS_DIR = f"{NIX_DIR}/opengl-driver"
FLAKE_DIR = f"{NIX_DIR}/flake"

# Package sources the deploy adds, and how the package managers behave for it.
APT_KEYRINGS_DIR = "/etc/apt/keyrings"
APT_SOURCES_DIR = "/etc/apt/sources.list.d"
YUM_REPOS_DIR = "/etc/yum.repos.d"
# apt waits for dpkg's lock by itself when told to (apt 1.9.11 and later: Debian 11+, Ubuntu 20.04+).
APT_LOCK_CONF = "/etc/apt/apt.conf.d/90vllm-fleet-lock-timeout"
DOCKER_KEYRING = f"{APT_KEYRINGS_DIR}/docker.asc"
DOCKER_APT_SOURCE = f"{APT_SOURCES_DIR}/docker.sources"
DOCKER_APT_PIN = "/etc/apt/preferences.d/docker-ce"
DOCKER_DNF_REPO = f"{YUM_REPOS_DIR}/docker-ce.repo"
NONFREE_SOURCE = f"{APT_SOURCES_DIR}/vllm-fleet-nonfree.sources"
TOOLKIT_KEYRING = f"{APT_KEYRINGS_DIR}/nvidia-container-toolkit.asc"
TOOLKIT_APT_SOURCE = f"{APT_SOURCES_DIR}/nvidia-container-toolkit.sources"
TOOLKIT_DNF_REPO = f"{YUM_REPOS_DIR}/nvidia-container-toolkit.repo"


def cuda_dnf_repo(cuda_repo: str) -> str:
    """NVIDIA's CUDA repository file for a release (Distro.cuda_repo: rhel9), as NVIDIA names it."""
    return f"{YUM_REPOS_DIR}/cuda-{cuda_repo}.repo"


def template_names() -> dict[str, str]:
    """The names above, as the templates that render helpers and units read them."""
    return {name.lower(): value for name, value in globals().items() if name.isupper() and isinstance(value, str)}


# Where secret_file stages its content under _sudo. pyinfra's SFTP writes as the SSH user, so
# the file has to be one that user owns; only root creates entries in /run (a tmpfs: a leftover
# is gone at reboot), and the directory is that user's alone, 0700.
UPLOAD_DIR = "/run/vllm-fleet-upload"
UPLOAD_FILE = f"{UPLOAD_DIR}/content"


@dataclass(frozen=True)
class Held:
    """Something on a host the deploy holds, and how: "owned" is ours alone (gone on removal, a
    directory with all under it), "merged" is another's file the deploy adds its keys or lines to
    (ours taken out on removal), "replaced" is a package's file whose content the deploy writes
    whole (the package's own put back on removal)."""

    name: str  # an absolute path, a systemd unit or a container
    how: Literal["owned", "merged", "replaced"]
    kind: Literal["file", "directory", "unit", "container"] = "file"  # a file may be a link

    @property
    def path(self) -> str | None:
        """Where it lies on the host; a container lies in Docker's own state."""
        if self.kind == "unit":
            return unit_path(self.name)
        return None if self.kind == "container" else self.name


# Everything the deploy leaves on a host, for a `remove` to take away. Left out, as a package
# manager's to remove: the packages the deploy installs and what comes with them (their units,
# the repositories cuda-keyring and amdgpu-install add, Nix and its store, the initramfs rebuilt
# without nouveau), images Docker pulled or loaded, and the groups rocm_users were added to.
# hf_cache_dir and vllm_cache_dir lie in STATE_DIR unless a host's settings move them.
HELD = (
    *(Held(directory, "owned", "directory") for directory in (CONFIG_DIR, STATE_DIR, HELPER_DIR, RUN_DIR, UPLOAD_DIR)),
    *(
        Held(path, "owned")
        for path in (
            PROMETHEUS_RULES,
            NOUVEAU_BLACKLIST,
            CDI_SPEC,
            DEV_CHAR_RULE,
            OUR_NIX_CONF,
            OPENGL_DRIVER,
            TMPFILES_CONF,
            APT_LOCK_CONF,
            DOCKER_KEYRING,
            DOCKER_APT_SOURCE,
            DOCKER_APT_PIN,
            DOCKER_DNF_REPO,
            NONFREE_SOURCE,
            cuda_dnf_repo("rhel9"),  # EL 9, the one EL release the GPU stack installs on (its EPEL is 9's)
            TOOLKIT_KEYRING,
            TOOLKIT_APT_SOURCE,
            TOOLKIT_DNF_REPO,
        )
    ),
    Held(DOCKER_DAEMON_JSON, "merged"),
    Held(NIX_CONF, "merged"),
    *(
        Held(path, "replaced")
        for path in (HAPROXY_CONFIG, PROMETHEUS_CONFIG, PROMETHEUS_DEFAULTS, ALERTMANAGER_CONFIG, ALERTMANAGER_DEFAULTS)
    ),
    *(
        Held(unit, "owned", "unit")
        for unit in (SERVICE, FIREWALL_SERVICE, CLUSTER_WATCH_SERVICE, GPU_EXPORTER_SERVICE, NODE_EXPORTER_SERVICE)
    ),
    *(
        Held(container, "owned", "container")
        for container in (CONTAINER_NAME, GPU_EXPORTER_CONTAINER, NODE_EXPORTER_CONTAINER)
    ),
)
