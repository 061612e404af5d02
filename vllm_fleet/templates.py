"""The files of templates/, found and rendered in one place: every template sees the on-host
names of vllm_fleet/paths.py, so no helper or unit spells a path of its own."""

from __future__ import annotations

from io import StringIO
from typing import Any

from pyinfra.api.util import get_template

from vllm_fleet import paths
from vllm_fleet.repository import TEMPLATES


def path(name: str) -> str:
    """A template's path on the machine running pyinfra (for files that are not rendered)."""
    return str(TEMPLATES / name)


def render(name: str, **values: Any) -> str:
    """values: the template's own variables (a test may also move an on-host name)."""
    return get_template(path(name)).render({**paths.template_names(), **values})


def rendered(name: str, **values: Any) -> StringIO:
    """A rendered template as files.put's src."""
    return StringIO(render(name, **values))
