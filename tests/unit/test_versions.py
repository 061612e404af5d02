"""One reading of version strings for ROCm, NVIDIA, Docker and Nix comparisons."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vllm_fleet.versions import numbers


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("6.4.1-89", (6, 4, 1)),  # /opt/rocm/.info/version
        ("7.14", (7, 14)),  # not a prefix of 7.1 as a string is
        ("580.95.05", (580, 95, 5)),  # nvidia-smi's driver_version
        ("2.24.9pre20240101", (2, 24, 9)),  # nix --version of a pre-release
        ("nix (Nix) 2.18.1", (2, 18, 1)),
        ("5:28.0.1-1~debian.12~bookworm", (28, 0, 1)),  # Docker's package version, epoch first
        ("20.10.24+dfsg1", (20, 10, 24)),
        ("8.9", (8, 9)),  # a compute capability
        ("", ()),
        ("[N/A]", ()),
    ],
)
def test_a_version_reads_as_its_leading_numbers(text, expected):
    assert numbers(text) == expected


@given(st.lists(st.integers(0, 10**6), min_size=1, max_size=4), st.sampled_from(["", "-1", "pre3", "+dfsg", "~rc1"]))
def test_numbers_round_trip_and_order_as_tuples(parts, suffix):
    assert numbers(".".join(map(str, parts)) + suffix) == tuple(parts)
