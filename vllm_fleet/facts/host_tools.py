"""What the deploy itself runs on a host (prerequisites.TOOLS) and who holds its package lock."""

from __future__ import annotations

from dataclasses import dataclass

from pyinfra.api import FactBase

from vllm_fleet.prerequisites import LOCK_HOLDER, TOOLS


@dataclass(frozen=True)
class ToolState:
    present: frozenset[str]  # the asked-for tools the host has
    family: str  # the package family: apt or dnf
    lock_holder: str  # "pid name" of a process holding the package manager's lock, '' when none


def tools_script(tools: tuple[str, ...]) -> str:
    """name=yes/no per tool, then family= and lock_holder=."""
    lines = [f"{{ {TOOLS[name].present}; }} >/dev/null 2>&1 && echo {name}=yes || echo {name}=no" for name in tools]
    lines.append("command -v apt-get >/dev/null 2>&1 && echo family=apt || echo family=dnf")
    lines.append(f'echo "lock_holder=$({LOCK_HOLDER})"')
    return "\n".join(lines) + "\n"


def parse_tools(output: list[str]) -> ToolState:
    state = {}
    for line in output:
        key, sep, value = line.partition("=")
        if sep:
            state[key] = value.strip()
    present = frozenset(name for name in TOOLS if state.get(name) == "yes")
    return ToolState(present, state.get("family", ""), state.get("lock_holder", ""))


class HostTools(FactBase):
    """ToolState of the comma-separated tools asked for."""

    def command(self, tools: str) -> str:
        return tools_script(tuple(t for t in tools.split(",") if t))

    def process(self, output: list[str]) -> ToolState:
        return parse_tools(output)
