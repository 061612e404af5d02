"""How a value is shown where a secret could leak (an error message, a plan, `vllm-fleet hosts`):
a secret by its length only, never its characters."""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from vllm_fleet.settings.types import holds_secret
from vllm_fleet.vllm_flags import TOKEN_PREFIXES, looks_secret, redact_args

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


# What a hidden secret reads as wherever it is hidden.
HIDDEN = "<secret>"
# Secrets of fewer characters are not hidden inside text (a refused short secret is shown by its
# length only; hiding "abc" everywhere would garble the rest).
SHORTEST_HIDDEN = 8
# Credentials inside a URL (scheme://user:password@host), and the tokens operators paste, by prefix.
URL_CREDENTIALS = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^\s/@'\"]*:[^\s/@'\"]*@", re.IGNORECASE)
PASTED_TOKEN = re.compile(rf"\b(?:{'|'.join(re.escape(p) for p in TOKEN_PREFIXES)})[A-Za-z0-9_-]{{16,}}")


@dataclass(frozen=True)
class Redaction:
    """The one way a command's output is cleaned before it is printed: each of the inventory's
    secret values hidden whole wherever it appears (as written, and as JSON and repr() escape
    it), then credentials in URLs and pasted tokens."""

    values: frozenset[str] = frozenset()

    def hide(self, text: str) -> str:
        for value in sorted(self.values, key=len, reverse=True):
            for form in {value, json.dumps(value)[1:-1], repr(value)[1:-1]}:
                text = text.replace(form, HIDDEN)
        text = URL_CREDENTIALS.sub(rf"\1{HIDDEN}@", text)
        return PASTED_TOKEN.sub(HIDDEN, text)

    def hide_in(self, data: Any) -> Any:
        """Every string inside JSON-able data hidden, keys included."""
        if isinstance(data, str):
            return self.hide(data)
        if isinstance(data, Mapping):
            return {self.hide_in(k): self.hide_in(v) for k, v in data.items()}
        if isinstance(data, (list, tuple)):
            return [self.hide_in(v) for v in data]
        return data

    def __or__(self, other: Redaction) -> Redaction:
        return Redaction(self.values | other.values)


def secret_values(s: Settings) -> dict[str, str]:
    """Each secret knob that is set, with its value."""
    fields = type(s).model_fields
    return {
        name: value.get_secret_value()
        for name, value in s.values.items()
        if holds_secret(fields[name].annotation) and isinstance(value, SecretStr)
    }


def redaction_of(values: Collection[Any]) -> Redaction:
    """A Redaction of these values (SecretStr or str), those long enough to hide inside text."""
    raw = [v.get_secret_value() if isinstance(v, SecretStr) else v for v in values]
    return Redaction(frozenset(v for v in raw if isinstance(v, str) and len(v) >= SHORTEST_HIDDEN))
