"""Repository hygiene: sandbox state (an SSH key, an API key, image archives) never committed, every
on-host path spelled in one place, helpers that parse, no import circle, sandboxes of one run apart."""

import subprocess
from pathlib import Path

import pytest

from vllm_fleet import paths

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("state_dir", [".state"])
def test_sandbox_state_is_ignored_and_untracked(state_dir):
    path = f"sandbox/{state_dir}/id_ed25519"
    ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO)
    assert ignored.returncode == 0, f"{path} is not git-ignored"
    tracked = subprocess.run(["git", "ls-files", f"sandbox/{state_dir}"], cwd=REPO, capture_output=True, text=True)
    assert tracked.stdout == ""


# The prefixes of the names vllm_fleet/paths.py owns on a host, and what the deploy holds elsewhere.
ON_HOST_PREFIXES = (
    "/etc/vllm-fleet",
    "/var/lib/vllm-fleet",
    "/usr/local/lib/vllm-fleet",
    "/run/haproxy/",
    *(held.path for held in paths.HELD if held.path and held.kind != "unit"),
)


def test_every_on_host_path_is_spelled_in_paths_py_only():
    files = subprocess.run(
        ["git", "ls-files", "vllm_fleet", "tasks", "templates", "deploy.py", "bench"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    spelled = [
        f"{name}: {prefix}"
        for name in files
        if name != "vllm_fleet/paths.py" and (REPO / name).is_file()
        for prefix in ON_HOST_PREFIXES
        if prefix in (REPO / name).read_text(errors="replace")
    ]
    assert spelled == []


@pytest.mark.parametrize(
    "template", ["vllm-ready.sh.j2", "vllm-activate.sh.j2", "vllm-gateway.sh.j2", "vllm-nix-install.sh"]
)
def test_helpers_render_with_every_name_and_parse_as_sh(template, tmp_path):
    from vllm_fleet import paths, templates

    text = templates.render(template)
    assert "{{" not in text and "{%" not in text
    if template != "vllm-nix-install.sh":
        assert any(value in text for value in paths.template_names().values())
    script = tmp_path / "script.sh"
    script.write_text(text)
    checked = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def _imports(path: Path) -> set[str]:
    """vllm_fleet modules a module imports, at module level or inside a function; imports only
    for the type checker (under `if TYPE_CHECKING:`) do not run and are left out."""
    import ast

    tree = ast.parse(path.read_text())
    typing_only = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and getattr(block.test, "id", "") == "TYPE_CHECKING"
        for node in ast.walk(block)
    }
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vllm_fleet"):
            # `from package import submodule` imports the submodule (and the package, already
            # importing it when the package is the importer's own).
            submodules = {f"{node.module}.{alias.name}" for alias in node.names}
            submodules = {name for name in submodules if _is_module(name)}
            found |= submodules
            if len(submodules) < len(node.names) and node.module != "vllm_fleet":
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("vllm_fleet.")}
    return found


def _is_module(name: str) -> bool:
    path = REPO.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _module(path: Path) -> str:
    """A file's module name: a package's __init__.py is the package."""
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """An import circle in graph (module -> modules it imports), or None."""
    done: set[str] = set()

    def visit(module: str, trail: list[str]) -> list[str] | None:
        if module in trail:
            return [*trail[trail.index(module) :], module]
        if module in done:
            return None
        for imported in sorted(graph.get(module, ())):
            found = visit(imported, [*trail, module])
            if found:
                return found
        done.add(module)
        return None

    return next((c for m in sorted(graph) if (c := visit(m, []))), None)


def test_vllm_fleet_has_no_import_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]  # the check can fail
    graph = {_module(p): _imports(p) for p in (REPO / "vllm_fleet").rglob("*.py")}
    assert (
        "vllm_fleet.images" in graph["vllm_fleet.settings.types"]
        and "vllm_fleet.rules" in graph["vllm_fleet.inventory"]
    )
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def test_two_sandboxes_of_one_run_draw_apart_ports_and_networks():
    from sandbox.runs import _PORTS_PER_SANDBOX, run_environment

    first, second = run_environment("hygiene-a"), run_environment("hygiene-b")
    bases = [int(env[f"VLLM_FLEET_SANDBOX_{kind}_PORT"]) for env in (first, second) for kind in ("SSH", "HTTP")]
    assert all(abs(a - b) >= _PORTS_PER_SANDBOX for i, a in enumerate(bases) for b in bases[i + 1 :]), bases
    assert first["VLLM_FLEET_SANDBOX_SUBNET"] != second["VLLM_FLEET_SANDBOX_SUBNET"]
    assert first["VLLM_FLEET_SANDBOX_PREFIX"] != second["VLLM_FLEET_SANDBOX_PREFIX"]


def _imports_pyinfra_cli(path: Path) -> bool:
    import ast

    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        names += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        if any(name == "pyinfra_cli" or name.startswith("pyinfra_cli.") for name in names):
            return True
    return False


def test_only_the_inventory_module_imports_pyinfra_cli():
    """Importing pyinfra's CLI package patches the process with gevent, which pytest-xdist's workers
    (the unit tier's, the verify suite's) do not survive: one module loads inventories with its
    loader, without the package's patching (tests/unit/test_inventory.py)."""
    modules = [*(REPO / "vllm_fleet").rglob("*.py"), *(REPO / "tasks").rglob("*.py"), REPO / "deploy.py"]
    importers = sorted(str(p.relative_to(REPO)) for p in modules if _imports_pyinfra_cli(p))
    assert importers == ["vllm_fleet/inventory.py"]


def test_two_xdist_workers_draw_ports_and_networks_from_shares_apart(monkeypatch):
    """The integration tier's two workers each start sandboxes at once: their draws cannot meet."""
    from sandbox import runs

    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    drawn = {}
    for worker in ("gw0", "gw1"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        env = runs.run_environment(f"share-{worker}")
        ports = [int(env[f"VLLM_FLEET_SANDBOX_{kind}_PORT"]) // 100 for kind in ("SSH", "HTTP")]
        drawn[worker] = [n % 2 for n in (*ports, int(env["VLLM_FLEET_SANDBOX_SUBNET"].rsplit(".", 1)[1]))]
    assert drawn == {"gw0": [0, 0, 0], "gw1": [1, 1, 1]}
