"""The settings schema: every knob, defined once, as a typed field with its default and meaning.

types: the kinds of value a knob takes and the words of what each allows; vllm, cluster, gateway,
monitoring, nix, host, gpu_stack, docker: each component's knobs; model: Settings, all of them;
parsing: host data into Settings, and SettingsError; secrets: showing values without a secret;
reference: the settings reference. The rules across settings (a public address needs a key, ...)
are in vllm_fleet/rules.py.
"""

from vllm_fleet.settings.model import KNOBS, SECRET_KNOBS, Settings, allowed
from vllm_fleet.settings.parsing import SettingsError, parse, require_ip_fleet_address
from vllm_fleet.settings.reference import reference, reference_markdown
from vllm_fleet.settings.secrets import public_values
from vllm_fleet.settings.types import (
    GATEWAY_GROUP,
    MONITORING_GROUP,
    PHASES,
    PREFLIGHT_CHECKS,
    SERVING_METHODS,
    SIZE_PATTERN,
)

__all__ = [
    "GATEWAY_GROUP",
    "KNOBS",
    "MONITORING_GROUP",
    "SECRET_KNOBS",
    "PHASES",
    "PREFLIGHT_CHECKS",
    "SERVING_METHODS",
    "SIZE_PATTERN",
    "Settings",
    "SettingsError",
    "allowed",
    "parse",
    "public_values",
    "reference",
    "reference_markdown",
    "require_ip_fleet_address",
]
