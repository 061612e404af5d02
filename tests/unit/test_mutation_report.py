"""The kill rate `make mutation` prints (tests/mutation_report.py), from mutmut's results."""

from tests.mutation_report import parse, report

RESULTS = """\
    vllm_fleet.settings.parsing.x_suggest__mutmut_1: killed
    vllm_fleet.settings.types.xǁBoundedǁ__get_pydantic_core_schema____mutmut_1: survived
    vllm_fleet.settings.reference.x_reference__mutmut_2: no tests
    vllm_fleet.sizing.xǁEstimateǁas_dict__mutmut_2: timeout
    vllm_fleet.sizing.x__nearest__mutmut_3: killed
    vllm_fleet.sizing.x__nearest__mutmut_4: not checked
    vllm_fleet.firewall.x_rules__mutmut_1: skipped
    vllm_fleet.firewall.x_rules__mutmut_2: killed
"""


def test_mutants_are_counted_per_module_with_timeouts_killed_and_no_tests_surviving():
    results = parse(RESULTS)
    assert results[:2] == [
        ("vllm_fleet.settings", "vllm_fleet.settings.parsing.x_suggest__mutmut_1", "killed"),
        (
            "vllm_fleet.settings",
            "vllm_fleet.settings.types.xǁBoundedǁ__get_pydantic_core_schema____mutmut_1",
            "survived",
        ),
    ]
    text, ok = report(results, 85.0)
    assert text.splitlines() == [
        "module                    killed  counted    rate  survivors, left out",
        "vllm_fleet.settings            1        3   33.3%  1 no tests, 1 survived",
        "vllm_fleet.sizing              2        2  100.0%  1 not checked",
        "vllm_fleet.firewall            1        1  100.0%  1 skipped",
        "gated modules                  4        6   66.7%  (minimum 85%)",
        "all modules                    4        6   66.7%  (not gated)",
        "1 mutants not checked: the run was cut short; run `make mutation` again",
    ]
    assert not ok
    assert report(results, 66.0)[1]


def test_only_the_gated_modules_decide_and_the_others_are_shown():
    """rollout and facts are mutated and reported, and a survivor there does not fail the gate."""
    results = parse(
        "    vllm_fleet.rules.x_validate__mutmut_1: killed\n"
        "    vllm_fleet.rollout.run.x_main__mutmut_1: survived\n"
        "    vllm_fleet.rollout.run.x_main__mutmut_2: survived\n"
    )
    text, ok = report(results, 85.0)
    assert ok
    assert "vllm_fleet.rollout             0        2    0.0%  2 survived" in text
    assert "gated modules                  1        1  100.0%  (minimum 85%)" in text
    assert "all modules                    1        3   33.3%  (not gated)" in text
    assert not report(parse("    vllm_fleet.rules.x_validate__mutmut_1: survived\n"), 85.0)[1]
