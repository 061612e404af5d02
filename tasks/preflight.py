"""Pre-flight: refuse a host that would fail, before anything is installed on it (also in --dry)."""

from __future__ import annotations

from pyinfra import host

from vllm_fleet import gpu_health, launch, nix
from vllm_fleet.checks import Context, run_checks, verdict
from vllm_fleet.distro import Distro
from vllm_fleet.facts.probe import HostProbe, Probe
from vllm_fleet.operations import deploy, stop_host
from vllm_fleet.plan import HostPlan
from vllm_fleet.settings import Settings


@deploy("Pre-flight checks")
def preflight(
    plan: HostPlan,
    fleet: dict[str, Settings],
    vendors: list[str],
    distro: Distro | None,
    unsupported_os: str | None,
) -> Probe | None:
    """Runs every check that applies; returns the host probe when the host may be deployed, else None.
    fleet: the inventory's hosts, for the Nix builds a builder host makes for others too."""
    s = plan.settings
    image = launch.image(s, plan.accelerator)
    probe = host.get_fact(
        HostProbe,
        port=s.vllm_port,
        hf_cache_dir=s.hf_cache_dir,
        model_dir=launch.hub_cache_name(s.vllm_model),
        accelerators=",".join(nix.builds_for(s, plan.accelerator, fleet)),
        image=image if s.serving_method == "docker" else "",
    )
    context = Context(
        probe,
        vendors,
        s,
        plan.accelerator,
        plan.sizing,
        image,
        distro,
        unsupported_os,
        plan.machine,
        plan.gpu_capabilities,
    )
    failures, warnings = verdict(run_checks(context), s.preflight_warn_only)
    for warning in warnings:
        host.log_styled(f"pre-flight warning (in preflight_warn_only): {warning}", fg="yellow")
    for warning in plan.warnings:
        host.log_styled(f"sizing: {warning}", fg="yellow")
    accepted = gpu_health.accepted_note(gpu_health.problems(probe, plan.accelerator), s.gpu_health_accept)
    if accepted:
        host.log_styled(f"GPU health: {accepted}", fg="yellow")
    if failures:
        for failure in failures:
            host.log_styled(f"pre-flight refused: {failure}", fg="red")
        stop_host(name="Refuse the host: pre-flight checks failed", reasons=failures)
        return None
    return probe
