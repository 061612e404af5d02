"""How a probe field is printed on the host and read back: the shell of each field, and the
`key=value` lines it prints (vllm_fleet/facts/probe.py declares the fields themselves)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any


class ProbeError(ValueError):
    """What a host printed does not fit Probe (a key or a value of another probe than this one)."""


@dataclass(frozen=True)
class Where:
    """What a probe script is written for: HostProbe's arguments."""

    port: int
    hf_cache_dir: str
    model_dir: str  # the model's directory in the hub cache
    accelerators: tuple[str, ...]  # whose Nix builds to report
    image: str = ""  # the image the host serves with Docker ('' served by Nix)


# Shell text, or shell text that depends on where the probe runs.
Shell = str | Callable[[Where], str]


@dataclass(frozen=True)
class Printed:
    """How the script prints a field.

    value: for a bool, a shell test (yes when it succeeds); otherwise text inside double quotes
    whose expansion is the value. before: shell run first (what later lines read too). only_if:
    a shell test without which the line is left out (the field keeps its default); a bool with
    say_no=False prints only when true, and says `true` then.
    """

    value: Shell
    before: Shell = ""
    only_if: Shell = ""
    true: str = "yes"
    say_no: bool = True

    @property
    def always(self) -> bool:
        """Every run of the script prints this field's line."""
        return self.say_no and not self.only_if


@dataclass(frozen=True)
class PrintedEach:
    """A mapping field, one line per item: `<prefix><item>=<value>`; each(where) gives each item
    and its value (text inside double quotes)."""

    prefix: str
    each: Callable[[Where], Iterable[tuple[str, str]]]


def shell_text(shell: Shell, where: Where) -> str:
    return shell(where) if callable(shell) else shell


@dataclass(frozen=True)
class Field:
    """A field of Probe, as its annotation defines it."""

    name: str
    type: Any  # bool, int, str, tuple[str, ...] or Mapping[str, str]
    printed: Printed | PrintedEach

    @property
    def always(self) -> bool:
        return isinstance(self.printed, Printed) and self.printed.always

    def read(self, text: str) -> Any:
        """The value of this field's line as the host printed it."""
        assert isinstance(self.printed, Printed)
        if self.type is bool:
            if text not in (self.printed.true, "no"):
                raise ProbeError(f"probe key {self.name}: {text!r} is neither {self.printed.true!r} nor 'no'")
            return text == self.printed.true
        if self.type is int:
            if text and not text.isdigit():
                raise ProbeError(f"probe key {self.name}: {text!r} is not a whole number")
            return int(text or 0)
        if self.type == tuple[str, ...]:
            return tuple(item for item in text.split(",") if item)
        return text

    def lines(self, where: Where) -> list[str]:
        """The shell that prints this field's line(s)."""
        p = self.printed
        if isinstance(p, PrintedEach):
            return [f'echo "{p.prefix}{item}={value}"' for item, value in p.each(where)]
        if self.type is bool:
            line = f"{shell_text(p.value, where)} && echo {self.name}={p.true}"
            if p.say_no:
                line += f" || echo {self.name}=no"
        else:
            line = f'echo "{self.name}={shell_text(p.value, where)}"'
            if p.only_if:
                line = f"{shell_text(p.only_if, where)} && {line}"
        return [shell for shell in (shell_text(p.before, where), line) if shell]


def key_values(lines: Iterable[str]) -> dict[str, str]:
    """The probe's `key=value` lines as a mapping (a line that is not one is ignored)."""
    values = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if sep and key.isidentifier():
            values[key] = value.strip()
    return values
