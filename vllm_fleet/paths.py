"""Every name vllm-fleet keeps on a host, in one place: the tasks, pre-flight's probe, the
helpers rendered from templates/ and the tests all read them from here."""

from __future__ import annotations

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
CLUSTER_STATUS = "/run/vllm-fleet/cluster.status"

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


def template_names() -> dict[str, str]:
    """The names above, as the templates that render helpers and units read them."""
    return {name.lower(): value for name, value in globals().items() if name.isupper() and isinstance(value, str)}


# Where secret_file stages its content under _sudo. pyinfra's SFTP writes as the SSH user, so
# the file has to be one that user owns; only root creates entries in /run (a tmpfs: a leftover
# is gone at reboot), and the directory is that user's alone, 0700.
UPLOAD_DIR = "/run/vllm-fleet-upload"
UPLOAD_FILE = f"{UPLOAD_DIR}/content"
