"""The header and form every monitoring file of ours is written with."""

from __future__ import annotations

from typing import Any

import yaml


def managed_yaml(what: str, data: Any) -> str:
    return f"# Managed by vllm-fleet: {what}; local edits are overwritten on the next deploy.\n" + yaml.safe_dump(
        data, sort_keys=False, default_flow_style=False, width=1000
    )


def managed_defaults(what: str, *args: str) -> str:
    """A file of /etc/default/ for a Debian unit that passes $ARGS."""
    # Every argument is made of validated addresses, ports and numbers: nothing to quote inside.
    return f'# Managed by vllm-fleet: the flags of {what} (Debian\'s unit passes $ARGS).\nARGS="{" ".join(args)}"\n'
