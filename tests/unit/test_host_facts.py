"""One resolver for a host's plan: the facts its tools report (read once, in the order the deploy
reads them), or its host data when they could not be read."""

from pyinfra.facts.server import Arch

from vllm_fleet.facts.gpus import AmdGpus, GpuVendors, NvidiaGpus
from vllm_fleet.facts.host import HostFacts
from vllm_fleet.plan import resolve_host
from vllm_fleet.rules import validate

MI300X = {"name": "AMD Instinct MI300X", "memory_mib": 196608}


def hybrid_host(answers: dict):
    """A fake read_fact: the bus shows both vendors; records which facts were read."""
    read = []

    def read_fact(fact):
        read.append(fact)
        return answers.get(fact)

    return read_fact, read


def test_the_accelerator_setting_picks_which_gpu_tool_is_read():
    read_fact, read = hybrid_host({GpuVendors: ["amd", "nvidia"], AmdGpus: [MI300X] * 2, Arch: "x86_64"})
    facts = HostFacts.read(read_fact, "amd")
    assert read == [GpuVendors, AmdGpus, Arch] and NvidiaGpus not in read
    assert facts.accelerator("amd") == "amd" and facts.accelerator("auto") == "nvidia"


def test_a_plan_from_facts_sizes_for_the_gpus_the_host_reports():
    settings = validate(
        "mi", {"phase": "enterprise", "accelerator": "amd", "vllm_api_key": "k" * 12 + "Zq7wPm2x"}, ["enterprise"]
    )
    plan = resolve_host(settings, {}, HostFacts(["amd"], [MI300X] * 2, "x86_64"))
    assert plan.accelerator == "amd" and plan.sizing.estimate is not None
    assert plan.sizing.estimate.as_dict()["gpus"] == {
        "count": 2,
        "memory_gib": 192.0,
        "name": "AMD Instinct MI300X",
        "source": "facts",
    }
    assert plan.manages_gpu_stack and plan.warnings == list(plan.sizing.warnings)


def test_without_facts_the_host_data_plans_and_says_what_it_assumed():
    settings = validate("ws", {"phase": "single_gpu", "gpu_count": 1, "gpu_memory_gib": 24}, ["single_gpu"])
    plan = resolve_host(settings, {}, None)
    assert plan.accelerator == "nvidia"
    assert plan.warnings[0].startswith("accelerator auto and no gpu_name: assumed nvidia")
    assert plan.settings.vllm_model != "auto"
