"""How a value is shown where a secret could leak (an error message, a plan, `vllm-fleet hosts`):
a secret by its length only, never its characters."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from vllm_fleet.settings.types import holds_secret
from vllm_fleet.vllm_flags import looks_secret, redact_args

if TYPE_CHECKING:
    from vllm_fleet.settings.model import Settings


def show_secret(value: Any) -> str:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if value is None:
        return "None"
    return "''" if value == "" else f"<secret, {len(str(value))} characters>"


def redacted(value: Any, secret: bool, secrets: Collection[str] = ()) -> str:
    """A value as an error may show it: a secret's by its length, and so one that looks like a key or
    equals one of secrets (the host's), or, in a list, <secret> in its place."""
    if secret:
        return show_secret(value)
    if isinstance(value, (list, tuple)):
        return repr(["<secret>" if str(v) in secrets else v for v in redact_args(value)])
    if looks_secret(value) or (value and str(value) in secrets):
        return show_secret(value)
    return repr(value)


def public_values(s: Settings) -> dict[str, Any]:
    """Settings as JSON-able data, each secret replaced by whether it is set."""
    fields = type(s).model_fields
    out = {}
    for name, value in s.values.items():
        if holds_secret(fields[name].annotation):
            value = "<set>" if value else None
        elif isinstance(value, Mapping):
            value = dict(value)
        elif isinstance(value, (list, tuple)):
            value = redact_args(value)
        out[name] = value
    return out


# What secrets_withheld puts in place of a secret that is set.
SET_ON_THE_HOST = "<set-on-the-host>"  # noqa: S105 (a marker, not a secret)


def secrets_withheld(s: Settings) -> Settings:
    """The settings with each secret that is set replaced by SET_ON_THE_HOST: what the verify suite
    holds, so that no test's argument, in any traceback or report, carries a secret (it reads the
    API key on the host when it needs one)."""
    fields = type(s).model_fields
    held = {
        name: SecretStr(SET_ON_THE_HOST)
        for name, value in s.values.items()
        if holds_secret(fields[name].annotation) and value
    }
    return s.model_copy(update=held)
