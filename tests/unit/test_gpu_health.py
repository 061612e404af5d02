"""GPU health as the probe reads it: each tool's output to conditions, and what refuses a host.

Outputs are hand-written from the tools' own documentation: nvidia-smi --help-query-gpu and
--help-query-remapped-rows (CSV, noheader, nounits: "[N/A]" where a GPU lacks the counter), the
kernel log's "NVRM: Xid (PCI:<bus>): <code>, ..." lines, amdgpu_ras.c's "ue: N" counts and
gpu_vram_bad_pages' "pfn : size : flag" lines as the probe sums them.
"""

from hypothesis import given
from hypothesis import strategies as st

from vllm_fleet import gpu_health
from vllm_fleet.facts.probe import Probe
from vllm_fleet.settings.types import GPU_CONDITIONS


def conditions(accelerator="nvidia", **probe) -> list[tuple[str, str]]:
    return [(p.condition, p.gpu) for p in gpu_health.problems(Probe.of(probe), accelerator)]


def test_a_healthy_nvidia_host_and_gpus_without_the_counters_show_nothing():
    assert (
        conditions(
            nvidia_ecc="0, 0, [N/A];1, 0, No;",
            nvidia_reset="0, No, No;1, [N/A], [N/A];",
            nvidia_remap="00000000:17:00.0, No, No;00000000:CA:00.0, [N/A], [N/A];",
            nvidia_xid="NVRM: Xid (PCI:0000:2b:00): 13;NVRM: Xid (PCI:0000:2b:00): 94;",
        )
        == []
    )


def test_each_nvidia_condition_is_named_with_its_gpu():
    assert conditions(
        nvidia_ecc="0, 3, No;1, 0, Yes;",
        nvidia_reset="0, No, Yes;1, Yes, No;",
        nvidia_remap="00000000:17:00.0, 1, 0;00000000:65:00.0, No, Yes;",
        nvidia_xid="NVRM: Xid (PCI:0000:2b:00): 79;NVRM: Xid (0000:01:00): 119;",
    ) == [
        ("ecc_uncorrected", "GPU 0"),
        ("retired_pages_pending", "GPU 1"),
        ("reset_required", "GPU 0"),
        ("reset_required", "GPU 1"),
        ("row_remap_pending", "00000000:17:00.0"),
        ("row_remap_failed", "00000000:65:00.0"),
        ("xid", "0000:2b:00"),
        ("xid", "0000:01:00"),  # the older drivers' line has no "PCI:"
    ]


def test_an_older_driver_refusing_a_field_is_no_row_and_no_condition():
    """A driver before reset_status answers with an error line instead of CSV rows."""
    said = 'Field "reset_status.reset_required" is not a valid field to query.;'
    assert conditions(nvidia_reset=said, nvidia_ecc="No devices were found;") == []


def test_amd_ras_counts_and_bad_pages_by_card():
    assert conditions(
        "amd",
        amd_ras=(
            "card0/device/ras/umc_err_count ue: 0;card1/device/ras/umc_err_count ue: 2;"
            "card1/device/ras/gfx_err_count ue: 0;"
        ),
        amd_bad_pages="card0/device/ras/gpu_vram_bad_pages 0 0;card1/device/ras/gpu_vram_bad_pages 1 4;",
    ) == [("ras_uncorrectable", "card1"), ("bad_pages_pending", "card1"), ("bad_pages_failed", "card1")]
    assert conditions("cpu", amd_ras="card1/device/ras/umc_err_count ue: 2;") == []


PROBLEMS = st.lists(
    st.builds(gpu_health.Problem, st.sampled_from(GPU_CONDITIONS), st.sampled_from(["GPU 0", "card1"]), st.just("x")),
    max_size=6,
)


@given(PROBLEMS, st.lists(st.sampled_from(GPU_CONDITIONS), unique=True).map(tuple))
def test_a_host_is_refused_exactly_for_the_conditions_not_accepted(found, accepted):
    refused = {p.condition for p in found} - set(accepted)
    message = gpu_health.refusal(found, accepted)
    assert (message is None) == (not refused)
    for condition in GPU_CONDITIONS:
        assert (f"({condition})" in (message or "")) == (condition in refused)
    note = gpu_health.accepted_note(found, accepted)
    assert (note is None) == (not {p.condition for p in found} & set(accepted))


def test_the_verify_suite_runs_only_its_vendors_lines():
    nvidia, amd = gpu_health.script_for("nvidia"), gpu_health.script_for("amd")
    assert "nvidia-smi --query-remapped-rows" in nvidia and "journalctl -k -b" in nvidia and "ras" not in nvidia
    assert "gpu_vram_bad_pages" in amd and "nvidia-smi" not in amd
    assert gpu_health.script_for("cpu").strip() == ""


def test_an_nvidia_smi_that_fails_or_hangs_with_the_module_loaded_is_unresponsive():
    """The probe prints `exit=<status>` after the ECC query's lines when it fails; 124 is timeout's."""
    assert conditions(nvidia_driver="580.95.05", nvidia_ecc="exit=124;") == [("unresponsive", "nvidia-smi")]
    [problem] = gpu_health.problems(Probe.of({"nvidia_driver": "580.95.05", "nvidia_ecc": "exit=124;"}), "nvidia")
    assert problem.seen == "the ECC query did not answer within 30 s"
    said = "Unable to determine the device handle for GPU0000:3B:00.0: Unknown Error;exit=15;"
    assert conditions(nvidia_driver="580.95.05", nvidia_ecc=said) == [("unresponsive", "nvidia-smi")]
    assert conditions(nvidia_ecc="exit=9;") == []  # no module loaded: a bare host, the driver comes next
