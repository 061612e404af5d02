"""The settings reference, made from the model: `vllm-fleet settings` and its documentation page."""

from __future__ import annotations

from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import SecretStr
from pydantic.fields import FieldInfo

from vllm_fleet.settings.host import Identity
from vllm_fleet.settings.model import KNOBS, Settings, allowed
from vllm_fleet.settings.types import holds_secret, types_in


def type_name(annotation: Any) -> str:
    """A field's type as a reader writes it: int, 'auto' | int, list of str, secret, ..."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return type_name(args[0])
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (Union, UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin in (tuple, list):
        return f"list of {type_name(args[0])}"
    if origin is dict:
        return "mapping"
    if annotation is SecretStr:
        return "secret"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def _inventory_type(info: FieldInfo) -> str:
    """The type an inventory may give: a knob that a validator fills in when it is None
    (fleet_address) takes None too."""
    name = type_name(info.annotation)
    if info.default is None and type(None) not in types_in(info.annotation):
        return f"{name} | None"
    return name


def _default(name: str) -> str:
    info = KNOBS[name]
    return "(required)" if name == "phase" else repr(info.get_default(call_default_factory=True))


def reference() -> str:
    """The settings reference, as text (vllm-fleet settings)."""
    lines = []
    for name, info in KNOBS.items():
        lines.append(
            f"{name}\n    type: {_inventory_type(info)}\n    default: {_default(name)}\n"
            f"    {info.description}\n    allowed: {allowed(name)}\n"
        )
    return "\n".join(lines)


def _components() -> str:
    """The component classes the knobs come from, in the order of KNOBS (the last base first)."""
    return ", ".join(f"`{base.__name__}`" for base in reversed(Settings.__bases__) if base is not Identity)


def reference_markdown() -> str:
    """The settings page of the documentation (docs/settings-reference.md), made from the model."""
    lines = [
        "# Settings reference",
        "",
        "<!-- Generated from vllm_fleet/settings/ by `vllm-fleet settings --format markdown`: edit the model. -->",
        "",
        "Every knob, component by component as `Settings` in `vllm_fleet/settings/model.py` takes them:",
        f"{_components()}. Rules across knobs are in `vllm_fleet/rules.py`; see [Settings](settings.md).",
        "",
    ]
    for name, info in KNOBS.items():
        secret = " Secret: never shown, read from the environment." if holds_secret(info.annotation) else ""
        lines += [
            f"## `{name}`",
            "",
            f"- type: `{_inventory_type(info)}`",
            f"- default: `{_default(name)}`",
            f"- allowed: {allowed(name)}",
            "",
            f"{info.description}{secret}",
            "",
        ]
    return "\n".join(lines)
