"""One host's plan: resolved settings (with where each came from), arguments, memory, warnings.

deploy.py, `python -m vllm_fleet plan` and the verify suite all build it with resolve_host,
so what plan shows is what the deploy does and what the verify suite expects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from vllm_fleet import cluster, images, launch, vllm_flags
from vllm_fleet.catalogue import Gpus
from vllm_fleet.facts.host import HostFacts
from vllm_fleet.gpus import (
    gpus_from_data,
    gpus_from_facts,
    has_aiter_kernels,
    open_kernel_modules_for,
    vendor_from_name,
)
from vllm_fleet.rules import gateway_backends
from vllm_fleet.settings import Settings, public_values
from vllm_fleet.sizing import Sizing, size


@dataclass
class HostPlan:
    name: str
    settings: Settings  # resolved: no 'auto' left in model or tensor-parallel size
    accelerator: str
    sizing: Sizing
    sources: dict[str, str]
    warnings: list[str] = field(default_factory=list)
    machine: str = ""  # the host's `uname -m`, '' when it was not read
    cluster: cluster.Place | None = None  # its place in a cluster of hosts serving one model
    # Each GPU's name and NVIDIA compute capability ("7.0") as nvidia-smi reports them; before a
    # driver answers, the name sizing planned for and "" (or () when none is known).
    gpu_capabilities: tuple[tuple[str, str], ...] = ()

    @property
    def refusal(self) -> str | None:
        return self.sizing.refusal

    @property
    def manages_gpu_stack(self) -> bool:
        """This run installs and keeps the GPU driver and its container runtime."""
        return self.settings.manage_gpu_stack and self.accelerator in ("nvidia", "amd")

    def as_dict(self) -> dict:
        s = self.settings
        resolved = {
            name: {"value": value, "source": self.sources.get(name, "default")}
            for name, value in public_values(s).items()
        }
        return {
            "phase": s.phase,
            "accelerator": self.accelerator,
            "machine": self.machine,
            "serving_method": s.serving_method,
            "served_model_name": s.served_model_name,
            "vllm_args": launch.vllm_args(s, self.accelerator, self.cluster),
            "container_args": launch.container_args(s, self.accelerator, self.cluster),
            "cluster": _cluster_dict(self.cluster),
            "image": launch.image(s, self.accelerator),
            "memory": self.sizing.estimate.as_dict() if self.sizing.estimate else None,
            "warnings": self.warnings,
            "refused": self.refusal,
            "settings": resolved,
        }


def _cluster_dict(place: cluster.Place | None) -> dict | None:
    if place is None:
        return None
    return {
        "name": place.name,
        "rank": place.rank,
        "leader": place.leader.host,
        "members": [m.host for m in place.members],
        "tensor_parallel_size": place.tensor_parallel_size,
        "pipeline_parallel_size": place.pipeline_parallel_size,
    }


def plan_host(
    settings: Settings,
    sources: dict[str, str],
    accelerator: str,
    gpus: Gpus | None,
    machine: str = "",
    fleet: Mapping[str, Settings] | None = None,
) -> HostPlan:
    """machine: the host's `uname -m` ('' when not read: x86_64), which picks the default image.
    fleet: the inventory's hosts, for a member of a cluster."""
    place = cluster.place(settings, fleet, accelerator) if fleet else None
    split = (place.tensor_parallel_size, place.pipeline_parallel_size) if place else None
    sizing = size(settings, accelerator, gpus, split=split)
    chosen = {
        "vllm_model": sizing.model,
        "vllm_quantization": sizing.quantization,
        "vllm_tensor_parallel_size": sizing.tensor_parallel_size,
    }
    # A value sizing changed came from sizing; one it kept keeps its source.
    sized = {name: "sizing" for name, value in chosen.items() if value != settings.values[name]}
    defaults = {}
    if settings.vllm_rocm_aiter == "auto":
        chosen["vllm_rocm_aiter"] = accelerator == "amd" and gpus is not None and has_aiter_kernels(gpus.name)
        defaults["vllm_rocm_aiter"] = f"auto: {gpus.name if gpus else 'no GPU known'}"
    modules = open_kernel_modules_for(gpus.name if gpus else None)
    if settings.nvidia_open_kernel_modules == "auto" and accelerator == "nvidia" and modules is not None:
        chosen["nvidia_open_kernel_modules"] = modules
        defaults["nvidia_open_kernel_modules"] = f"auto: {gpus.name if gpus else ''}"
    if not settings.vllm_image and settings.role == "vllm" and settings.serving_method == "docker":
        try:
            chosen["vllm_image"] = images.default_image(accelerator, machine)
            defaults["vllm_image"] = f"default for {accelerator} on {machine or 'x86_64'}"
        except images.NoDefaultImage:
            pass  # pre-flight's image check refuses the host, saying why
    resolved = settings.replace(**chosen)
    sources = {**sources, **sized, **defaults}
    warnings = list(sizing.warnings)
    if place and settings.vllm_cluster_split == "tensor" and not launch.uses_rdma(settings, accelerator, place):
        warnings.append(
            f"vllm_cluster_split is tensor: every layer's all-reduce crosses the network between members, and NCCL "
            f"runs it over TCP sockets on {place.interface}: far slower than pipeline unless that network is very "
            "fast; set vllm_cluster_rdma = True where the hosts have InfiniBand or RoCE"
        )
    plan = HostPlan(settings.host, resolved, accelerator, sizing, sources, warnings, machine, place)
    # What a bare host's name says until its driver answers (nvidia-smi gives capabilities then).
    plan.gpu_capabilities = ((gpus.name, ""),) if gpus else ()
    return plan


def resolve_host(
    settings: Settings, sources: dict[str, str], facts: HostFacts | None, fleet: Mapping[str, Settings] | None = None
) -> HostPlan:
    """A vLLM host's plan from what its tools say, or, without facts (not read, or the host
    unreachable), from its host data alone."""
    if facts is None:
        accelerator, warnings = offline_accelerator(settings)
        gpus, machine = gpus_from_data(settings), ""
    else:
        accelerator, warnings = facts.accelerator(settings.accelerator), []
        gpus, machine = gpus_from_facts(facts.gpus) or gpus_from_data(settings), facts.machine
    plan = plan_host(settings, sources, accelerator, gpus, machine, fleet)
    plan.warnings[:0] = warnings + allowed_features(settings)
    listed = facts.gpus if facts else []
    read = tuple((gpu["name"], gpu.get("compute_capability", "")) for gpu in listed if "name" in gpu)
    if read:
        plan.gpu_capabilities = read
    return plan


def allowed_features(settings: Settings) -> list[str]:
    """What the host's vllm_allow lets its vLLM do, one line each feature its arguments turn on."""
    found = vllm_flags.risky_features(settings.vllm_extra_args)
    return [
        f"vllm_allow lets {found[name]} run: it {what}"
        for name, what, _ in vllm_flags.RISKY_FEATURES
        if name in found and name in settings.vllm_allow
    ]


def offline_accelerator(settings: Settings) -> tuple[str, list[str]]:
    """The accelerator when the PCI bus cannot be read: the setting, else gpu_name's vendor."""
    if settings.accelerator != "auto":
        return settings.accelerator, []
    vendor = vendor_from_name(settings.gpu_name)
    if vendor:
        return vendor, []
    return "nvidia", ["accelerator auto and no gpu_name: assumed nvidia (plan with --facts to read the PCI bus)"]


def gateway_plan(settings: Settings, fleet: dict[str, Settings]) -> dict:
    """What a gateway host serves: HAProxy on gateway_port in front of its backends."""
    return {
        "role": "gateway",
        "listen": f"{'https' if settings.gateway_tls_certificate else 'http'}://{settings.fleet_address}:"
        f"{settings.gateway_port}",
        "auth": settings.gateway_auth,
        "drain_timeout": settings.gateway_drain_timeout,
        "backends": {b.host: f"{b.fleet_address}:{b.vllm_port}" for b in gateway_backends(settings, fleet)},
        "warnings": [],
        "refused": None,
    }


def monitoring_plan(settings: Settings, fleet: dict[str, Settings]) -> dict:
    """What a monitoring host runs: Prometheus and Alertmanager, the targets they scrape, the
    alerts and where they go."""
    from vllm_fleet.monitoring.alerts import alert_names
    from vllm_fleet.monitoring.exporters import gpu_vendor
    from vllm_fleet.monitoring.prometheus import scrape_configs, scrapes_vllm, target

    receivers = [
        kind for kind, on in (("webhook", settings.alert_webhook_url), ("email", settings.alert_email_to)) if on
    ]
    return {
        "role": "monitoring",
        "listen": {
            "prometheus": f"http://{target(settings.prometheus_bind_address, settings.prometheus_port)}",
            "alertmanager": f"http://{target(settings.prometheus_bind_address, settings.alertmanager_port)}",
        },
        "targets": {
            job["job_name"]: [t for static in job["static_configs"] for t in static["targets"]]
            for job in scrape_configs(settings, fleet)
        },
        "alerts": sorted(alert_names(settings, fleet)),
        "receivers": receivers,
        "warnings": [
            f"{s.host}: vLLM is bound to loopback, so only its node metrics are scraped"
            for s in fleet.values()
            if s.role == "vllm" and s.is_loopback
        ]
        + [
            f"{s.host}: --disable-log-stats in vllm_extra_args turns vLLM's metrics off: no serving alert can fire"
            for s in fleet.values()
            if scrapes_vllm(s) and "--disable-log-stats" in s.vllm_extra_args
        ]
        + [
            f"{s.host}: accelerator auto and no vendor in gpu_name: its GPU exporter is neither run nor scraped "
            "(set accelerator, or gpu_name)"
            for s in fleet.values()
            if s.role == "vllm" and s.accelerator == "auto" and s.gpu_exporter and gpu_vendor(s) is None
        ],
        "refused": None,
    }


class NoSuchHost(LookupError):
    pass


def plan_inventory(path: str, only: str | None = None, read_facts: bool = False) -> dict[str, dict]:
    """Each host's plan as `vllm-fleet plan` shows it and the rollout reads it, in inventory order:
    a refused host's refusal, a gateway's and a monitoring host's service, a vLLM host's resolved
    settings (from the facts its tools give when read_facts, else from its data). only: that host
    alone (NoSuchHost when the inventory has none of that name). The inventory is checked whole,
    and every secret of it hidden wherever it appears."""
    from vllm_fleet.facts.host import read_over_ssh
    from vllm_fleet.inventory import load_inventory, sources, validate_inventory
    from vllm_fleet.repository import REPO

    inventory = load_inventory(path, REPO)
    hosts = [h for h in inventory if only in (None, h.name)]
    if not hosts:
        raise NoSuchHost(f"no host {only!r} in {path}")
    validation = validate_inventory(inventory)
    fleet = validation.settings
    facts = read_over_ssh(hosts, {n: s.accelerator for n, s in fleet.items()}) if read_facts else {}
    plans: dict[str, dict] = {}
    for host in hosts:
        if host.name in validation.refusals:
            plans[host.name] = {"refused": str(validation.refusals[host.name])}
            continue
        settings = fleet[host.name]
        if settings.role == "gateway":
            plans[host.name] = gateway_plan(settings, fleet)
            continue
        if settings.role == "monitoring":
            plans[host.name] = monitoring_plan(settings, fleet)
            continue
        plan = resolve_host(settings, sources(host), facts.get(host.name), fleet)
        if read_facts and host.name not in facts:
            plan.warnings.insert(0, "facts could not be read from this host (unreachable?): planned from host data")
        plans[host.name] = plan.as_dict()
    return validation.redaction.hide_in(plans)
