"""Rules that keep each secret one of its kind: no secret used for two jobs (the HF token as an
API key, the API key as the webhook token), on one host or across the inventory, and none put
inside another knob, where plan and every report would print it. Each refusal is a
SettingsError that shows no secret."""

from __future__ import annotations

from collections.abc import Mapping

from vllm_fleet.settings import Settings, SettingsError
from vllm_fleet.settings.secrets import redaction_of, secret_values


def check_host(s: Settings) -> None:
    """One host: its secrets differ from each other, and no other knob holds one of them."""
    secrets = secret_values(s)
    seen: dict[str, str] = {}
    for name, value in secrets.items():
        if value in seen:
            raise SettingsError(
                s.host, name, s.show(name), f"a secret of its own, not the value of {seen[value]}: each has its own job"
            )
        seen[value] = name
    redaction = redaction_of(secrets.values())
    for name, value in s.values.items():
        if name in secrets or value is None:
            continue
        text = repr(value)  # nested values too, each string as repr() writes it
        holder = next((k for k, v in secrets.items() if v in text or repr(v)[1:-1] in text), None)
        if holder:
            raise SettingsError(
                s.host,
                name,
                redaction.hide(s.show(name)),
                f"a value without the host's {holder} in it: a secret belongs in its own knob, which no output shows",
            )


def check_fleet(s: Settings, fleet: Mapping[str, Settings]) -> None:
    """Across the inventory: no secret of this host is another host's secret of another kind."""
    mine = secret_values(s)
    for other in fleet.values():
        for other_name, other_value in secret_values(other).items():
            for name, value in mine.items():
                if value == other_value and name != other_name:
                    raise SettingsError(
                        s.host,
                        name,
                        s.show(name),
                        f"a secret of its own, not the value of {other.host}'s {other_name}: each has its own job",
                    )
