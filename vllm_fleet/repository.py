"""The folders and files of this repository that the tool reads at run time, named once: the
deploy, its templates, the Nix flake, the inventories and the verify suite that ships inside
the package. (What the deploy owns on a host is vllm_fleet/paths.py.)"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
REPO = PACKAGE.parent
DEPLOY = REPO / "deploy.py"
TEMPLATES = REPO / "templates"
NIX_FLAKE = REPO / "nix"
INVENTORIES = REPO / "inventories"
ANSIBLE_SHIM = INVENTORIES / "ansible.py"
SANDBOX_INVENTORY = INVENTORIES / "sandbox.py"
VERIFY_SUITE = PACKAGE / "verify"
DATA = PACKAGE / "data"
