"""Host data (inventory, group_data) parsed into Settings before any operation is planned. A bad
value raises SettingsError, one line that names the host, the key, the value and what is allowed;
secrets are never echoed back."""

from __future__ import annotations

import difflib
import ipaddress
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from pydantic import SecretStr, ValidationError

from vllm_fleet.settings.model import KNOBS, Settings, allowed
from vllm_fleet.settings.secrets import redacted
from vllm_fleet.settings.types import HOST_NAME, INVENTORY_NAME_PATTERN, holds_secret, or_none
from vllm_fleet.settings.vllm import SSH_HOSTNAME_ERROR

# Connection and pyinfra keys, never typos of ours.
FOREIGN_PREFIXES = ("ssh_", "_", "winrm_", "docker_ssh", "local_", "chroot_", "terraform_")
# An unknown key with one of these in its name may hold a secret: its value is never shown.
SECRET_WORDS = ("key", "token", "secret", "password", "passwd", "credential")
# pyinfra's connection keys the settings check (Identity): the firewall and the verify suite use them.
CONNECTION_KEYS = ("ssh_port", "ssh_user", "ssh_key")
NO_CONTROL = (
    "a value without control characters (newline, tab, NUL, escapes): it is written into unit files and commands"
)


class SettingsError(ValueError):
    """A host's data breaks the schema. The message is one clean line."""

    def __init__(self, host: str, key: str, shown_value: str, allowed: str):
        self.host, self.key, self.allowed = host, key, allowed
        super().__init__(f"host {host}: {key} = {shown_value} is not allowed: {allowed}")


def suggest(key: str) -> str | None:
    match = difflib.get_close_matches(key, KNOBS.keys(), n=1, cutoff=0.8)
    return match[0] if match else None


def is_secret(key: str) -> bool:
    """Whether a key of host data holds a secret: a secret knob, a likely typo of one, or an unknown
    key whose name says so."""
    info = Settings.model_fields.get(key)
    if info is not None:
        return holds_secret(info.annotation)
    close = suggest(key)
    return bool(close and is_secret(close)) or any(word in key.lower() for word in SECRET_WORDS)


def show_value(key: str, value: Any, data: Mapping[str, Any] | None = None) -> str:
    """A value as an error may show it: never a secret's, nor one that looks like a key or equals
    one of the host's secrets (data), whatever the key it was put under."""
    secrets = {
        str(v.get_secret_value() if isinstance(v, SecretStr) else v)
        for k, v in (data or {}).items()
        if v and is_secret(k)
    }
    return redacted(value, is_secret(key), secrets)


def control_characters(value: Any) -> bool:
    """Whether a value holds, anywhere inside it, a character that ends a line or a field of the
    formats settings are written into (newline, carriage return, tab, NUL, escapes, line and
    paragraph separators, invisible format characters)."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, str):
        return any(unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") for c in value)
    if isinstance(value, Mapping):
        return any(control_characters(k) or control_characters(v) for k, v in value.items())
    if isinstance(value, (list, tuple, set)):
        return any(control_characters(v) for v in value)
    return False


def _ours(key: str) -> bool:
    """A key the model reads: a knob, or an unknown key that looks like one (which it refuses)."""
    if key in KNOBS:
        return True
    if key.startswith(FOREIGN_PREFIXES):
        return False
    return (
        bool(suggest(key))
        or key.startswith(("vllm_", "hf_", "docker_", "gateway_", "nix_", "alert_", "prometheus_", "monitoring_"))
        or key
        in (
            "accelerator",
            "phase",
        )
    )


def _error(host: str, data: Mapping[str, Any], error: Mapping[str, Any]) -> SettingsError:
    key = str(error["loc"][0])
    if error["type"] == SSH_HOSTNAME_ERROR:
        return SettingsError(
            host, "ssh_hostname", show_value("ssh_hostname", data.get("ssh_hostname"), data), error["msg"]
        )
    shown = show_value(key, data.get(key), data)
    if error["type"] == "extra_forbidden":
        close = suggest(key)
        hint = f"did you mean {close}?" if close else "see the settings reference (vllm-fleet settings)"
        return SettingsError(host, key, shown, f"{key} is not a setting; {hint}")
    if error["type"] == "value_error":
        words = str(error["ctx"]["error"])
        return SettingsError(host, key, shown, or_none(words) if allowed(key).endswith("(or None)") else words)
    return SettingsError(host, key, shown, allowed(key))


def parse(host: str, data: Mapping[str, Any], role: str = "vllm") -> Settings:
    """One host's data as Settings, or SettingsError naming the first bad key (unknown keys first,
    an ssh_hostname that cannot be the fleet_address last)."""
    if not re.fullmatch(INVENTORY_NAME_PATTERN, host):
        raise SettingsError(repr(host), "name", repr(host), HOST_NAME)
    knob_data = {key: value for key, value in data.items() if _ours(key)}
    for key, value in [*knob_data.items(), *((k, data.get(k)) for k in CONNECTION_KEYS)]:
        if (key in KNOBS or key in CONNECTION_KEYS) and control_characters(value):
            raise SettingsError(host, key, show_value(key, value, data), NO_CONTROL)
    connection = {key: data[key] for key in CONNECTION_KEYS if data.get(key) is not None}
    try:
        return Settings.model_validate(
            {**knob_data, **connection, "host": host, "role": role},
            context={"ssh_hostname": data.get("ssh_hostname")},
        )
    except ValidationError as exc:
        errors = sorted(exc.errors(), key=lambda e: (e["type"] != "extra_forbidden", e["type"] == SSH_HOSTNAME_ERROR))
        raise _error(host, data, errors[0]) from None


def require_ip_fleet_address(s: Settings, allowed: str) -> None:
    """Refuse a fleet_address that is not an IP address (a firewall admits the host by address)."""
    try:
        ipaddress.ip_address(s.fleet_address)
    except ValueError:
        raise SettingsError(s.host, "fleet_address", s.show("fleet_address"), allowed) from None
