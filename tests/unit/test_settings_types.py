"""The schema's building blocks (vllm_fleet/settings/types.py) on a model built by each test: the
settings' own models are built once, at import, so their knobs cannot show what each block does
alone (nor can a model built at this module's import, before a test runs)."""

from __future__ import annotations

from typing import Annotated, Literal

import pytest
from pydantic import ValidationError

from vllm_fleet.settings.types import Bounded, Knobs, _checked, bounded_allowed, knob, one_of, only


def example() -> type[Knobs]:
    class Example(Knobs):
        count: Annotated[int, Bounded(2, 5)] = knob(3, "How many.")
        name: Annotated[str, only(str), _checked(str.islower, "lowercase letters", str.upper)] = knob(
            "abc", "A name.", allowed="lowercase letters"
        )
        tags: tuple[str, ...] = knob(tuple, "Tags.", max_length=2)

    return Example


def valid(**data) -> Knobs:
    return example().model_validate(data)


def errors(**data) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        example().model_validate(data)
    return [(e["type"], e["msg"]) for e in caught.value.errors()]


def test_a_knob_carries_its_default_meaning_and_words():
    fields = example().model_fields
    assert (fields["count"].default, fields["count"].description, fields["count"].json_schema_extra) == (
        3,
        "How many.",
        {},
    )
    assert fields["name"].json_schema_extra == {"allowed": "lowercase letters"}
    assert fields["tags"].default_factory is tuple and fields["tags"].description == "Tags."
    assert valid().tags == () and valid().count == 3


def test_bounded_checks_both_bounds_inclusive():
    assert valid(count=2).count == 2 and valid(count=5).count == 5
    assert errors(count=1) == [("greater_than_equal", "Input should be greater than or equal to 2")]
    assert errors(count=6) == [("less_than_equal", "Input should be less than or equal to 5")]
    assert Bounded(2, 5).allowed == "an integer from 2 to 5"


def test_a_checked_value_is_normalised_or_refused_in_the_knobs_words():
    assert valid(name="abc").name == "ABC"
    assert errors(name="aBc") == [("value_error", "Value error, lowercase letters")]


def test_only_refuses_other_kinds_before_the_lax_checks():
    assert errors(name=b"abc") == [("wrong_kind", "not a (<class 'str'>,)")]


def test_constraints_pass_through_a_knob():
    assert errors(tags=("a", "b", "c"))[0][0] == "too_long"


def test_words_from_the_type():
    assert one_of(Literal["a", "b"]) == "one of a, b"
    assert bounded_allowed(Annotated[int, Bounded(1, 9)] | Literal["auto"] | None) == (
        "'auto' or an integer from 1 to 9 (or None)"
    )
    # A Literal without auto adds nothing.
    assert bounded_allowed(Annotated[int, Bounded(1, 9)] | Literal["all"]) == "an integer from 1 to 9"
