"""The Nix files (parsed and evaluated as far as builtins go, with Debian's Nix) and the
deploy's side of them: attribute names, flake hashes, nix.conf, the server's arguments."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from vllm_fleet import launch, nix
from vllm_fleet.facts.probe import Probe
from vllm_fleet.rules import validate

REPO = Path(__file__).resolve().parents[2]
NIX_FILES = sorted((REPO / "nix").glob("*.nix")) + [REPO / "tests" / "standin" / "flake.nix"]
ACCELERATORS = ("nvidia", "amd", "cpu")
# Just enough of nixpkgs for the flake's outputs to list their names: nothing is built or fetched.
STUB_NIXPKGS = (
    "{ lib.genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names); "
    'outPath = throw "nixpkgs is not available here"; }'
)


def nix_eval(expression: str):
    if not shutil.which("nix-instantiate"):
        pytest.fail("nix-instantiate is missing: `make nix-tools` installs Debian's nix-bin")
    done = subprocess.run(
        ["nix-instantiate", "--eval", "--strict", "--json", "-E", expression],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("path", NIX_FILES, ids=[str(p.relative_to(REPO)) for p in NIX_FILES])
def test_nix_file_parses(path):
    done = subprocess.run(["nix-instantiate", "--parse", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_flake_lock_pins_the_nixpkgs_the_flake_asks_for():
    url = nix_eval("(import ./nix/flake.nix).inputs.nixpkgs.url")
    owner, repo, ref = re.fullmatch(r"github:([^/]+)/([^/]+)/(.+)", url).groups()
    lock = json.loads((REPO / "nix" / "flake.lock").read_text())
    node = lock["nodes"][lock["nodes"]["root"]["inputs"]["nixpkgs"]]
    assert (node["original"]["owner"], node["original"]["repo"], node["original"]["ref"]) == (owner, repo, ref)
    assert re.fullmatch(r"[0-9a-f]{40}", node["locked"]["rev"])
    assert node["locked"]["narHash"].startswith("sha256-")
    assert lock["version"] == 7


def test_flake_exports_what_the_deploy_builds_and_the_rest_the_issue_asks_for():
    outputs = nix_eval(
        f"let f = import ./nix/flake.nix; o = f.outputs {{ self = o; nixpkgs = {STUB_NIXPKGS}; }}; in {{"
        " packages = builtins.attrNames o.packages.x86_64-linux;"
        " shells = builtins.attrNames o.devShells.x86_64-linux;"
        " modules = builtins.attrNames o.nixosModules;"
        " args = builtins.attrNames (builtins.functionArgs f.outputs); }"
    )
    servers = {nix.attribute(a) for a in ACCELERATORS}
    assert servers | {"vllm-server", "vllm-health", "default"} <= set(outputs["packages"])
    assert {f"vllm-image-{a}" for a in ACCELERATORS} <= set(outputs["packages"])
    assert "default" in outputs["shells"] and "vllm" in outputs["modules"]
    assert outputs["args"] == ["nixpkgs", "self"]


def test_standin_flake_exports_the_same_server_attributes_and_needs_no_input():
    outputs = nix_eval(
        "let f = import ./tests/standin/flake.nix; in {"
        " inputs = f.inputs or {};"
        " packages = builtins.attrNames (f.outputs { self = {}; }).packages.x86_64-linux; }"
    )
    assert outputs["inputs"] == {}
    assert set(outputs["packages"]) == {nix.attribute(a) for a in ACCELERATORS}


def test_module_is_a_nixos_module_taking_the_flake():
    args = nix_eval("builtins.attrNames (builtins.functionArgs (import ./nix/module.nix { self = {}; }))")
    assert {"config", "lib", "pkgs"} <= set(args)


def test_flake_hash_follows_content_and_attribute_only(tmp_path):
    (tmp_path / "flake.nix").write_text("{ outputs = _: { }; }")
    first = nix.flake_hash(tmp_path, "vllm-server-cpu")
    assert nix.flake_hash(tmp_path, "vllm-server-nvidia") != first
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert nix.flake_hash(tmp_path, "vllm-server-cpu") == first
    (tmp_path / "result").symlink_to(tmp_path / "__pycache__")
    assert nix.flake_hash(tmp_path, "vllm-server-cpu") == first
    # Every shipped file counts, whatever its kind: a patch the flake applies changes the build.
    (tmp_path / "fix.patch").write_text("--- a\n")
    with_patch = nix.flake_hash(tmp_path, "vllm-server-cpu")
    assert with_patch != first
    (tmp_path / "fix.patch").write_text("--- b\n")
    assert nix.flake_hash(tmp_path, "vllm-server-cpu") != with_patch
    (tmp_path / "flake.nix").write_text("{ outputs = _: { x = 1; }; }")
    assert nix.flake_hash(tmp_path, "vllm-server-cpu") != first


def test_nix_conf_enables_flakes_and_names_the_caches_with_short_timeouts():
    s = validate("h", {"phase": "laptop", "serving_method": "nix"}, ["laptop"])
    conf = nix.nix_conf(s.nix_substituters, s.nix_trusted_public_keys)
    assert "experimental-features = nix-command flakes\n" in conf
    assert "substituters = https://cache.nixos.org https://cache.nixos-cuda.org" in conf
    assert all(key in conf for key in s.nix_trusted_public_keys)
    assert "connect-timeout = 10\n" in conf


def test_nix_server_takes_the_docker_image_arguments_plus_address_and_port():
    data = {"phase": "laptop", "vllm_model": "org/model", "vllm_extra_args": ["--enforce-eager"]}
    docker = validate("h", data, ["laptop"])
    served = validate("h", {**data, "serving_method": "nix", "vllm_port": 8123}, ["laptop"])
    argv = launch.nix_server_argv(served, "amd")
    assert argv[0] == "/var/lib/vllm-fleet/nix/vllm-server-amd/bin/vllm-server"
    assert argv[1:-4] == launch.vllm_args(docker)
    assert argv[-4:] == ["--host", "127.0.0.1", "--port", "8123"]
    assert "--env-file" not in argv and "docker" not in " ".join(argv)


def test_nix_server_on_the_cpu_takes_the_cpu_backends_arguments():
    served = validate("h", {"phase": "laptop", "vllm_model": "org/model", "serving_method": "nix"}, ["laptop"])
    argv = launch.nix_server_argv(served, "cpu")
    assert argv[0] == "/var/lib/vllm-fleet/nix/vllm-server-cpu/bin/vllm-server"
    assert argv[1:-4] == launch.vllm_args(served, "cpu") != launch.vllm_args(served)


def test_the_probe_reads_the_serving_lines_of_a_real_host():
    # Recorded from a sandbox host serving the stand-in through Nix.
    probe = Probe.parse(
        [
            "unit_method=nix",
            "nix=yes",
            "machine=x86_64",
            "nix_links=/var/lib/vllm-fleet/nix/vllm-server-cpu,",
            "driver_libs=",
            "linked_driver_libs=",
            "nix_build_cpu=/nix/store/s2gk45rf-vllm-server-standin-cpu ab39eb34",
            "nix_build_nvidia= ",
        ]
    )
    assert (probe.unit_method, probe.nix) == ("nix", True)
    assert probe.nix_links == ("/var/lib/vllm-fleet/nix/vllm-server-cpu",) and probe.driver_libs == ()
    builds = {accelerator: probe.nix_build(accelerator) for accelerator in probe.nix_builds}
    assert builds == {"cpu": ("/nix/store/s2gk45rf-vllm-server-standin-cpu", "ab39eb34"), "nvidia": ("", "")}
    assert probe.nix_build("amd") == ("", "")
    assert Probe().nix is False


def test_a_builder_builds_for_itself_and_the_hosts_naming_it():
    def host(name, **data):
        return validate(name, {"phase": "enterprise", "serving_method": "nix", **data}, ["enterprise"])

    fleet = {
        "b": host("b", accelerator="nvidia"),
        "c1": host("c1", accelerator="amd", nix_builder="b"),
        "c2": host("c2", accelerator="nvidia", nix_builder="b"),
        "other": host("other", accelerator="cpu"),
        "docker": validate("docker", {"phase": "enterprise", "accelerator": "cpu"}, ["enterprise"]),
    }
    assert nix.builds_for(fleet["b"], "nvidia", fleet) == ["nvidia", "amd"]
    assert nix.builds_for(fleet["c1"], "amd", fleet) == ["amd"]
    assert nix.builds_for(fleet["other"], "cpu", fleet) == ["cpu"]


def test_which_nix_a_distribution_can_give_a_flake(tmp_path):
    """Debian 12 ships nix-bin 2.8.0, Ubuntu 22.04 2.6.0, 24.04 2.18.1; nixpkgs needs 2.18 (lib/minver.nix)."""
    assert nix.older("2.18", "2.18.1") and nix.older("2.8.0", "2.18") and not nix.older("2.24.9pre20240101", "2.24.9")
    assert nix.minimum_nix(nix.REPO_FLAKE) == "2.18"
    assert nix.install_source("ubuntu", "24.04", "2.18") == ("distro", "nix-setup-systemd")
    assert nix.install_source("ubuntu", "22.04", "2.18") == (
        "official",
        "Ubuntu 22.04's nix-setup-systemd is Nix 2.6.0, older than 2.18",
    )
    assert nix.install_source("debian", "12", None) == ("distro", "nix-setup-systemd")
    assert nix.install_source("rocky", "9.4", "2.18") == ("official", "")
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "flake.nix").write_text("{ outputs = { self }: { }; }\n")
    (locked / "flake.lock").write_text('{"nodes": {"nixpkgs": {"locked": {"owner": "NixOS", "repo": "nixpkgs"}}}}')
    assert nix.minimum_nix(locked) == "2.18"
    (locked / "flake.lock").write_text('{"nodes": {"root": {}}}')
    assert nix.minimum_nix(locked) is None


@pytest.mark.parametrize(
    "host,url",
    [
        ("0.0.0.0", "http://127.0.0.1:8000"),
        ("10.0.0.5", "http://10.0.0.5:8000"),
        ("::", "http://[::1]:8000"),
        ("::1", "http://[::1]:8000"),
        ("fd00::5", "http://[fd00::5]:8000"),
    ],
)
def test_the_nixos_modules_health_check_reaches_ipv4_and_ipv6_servers(host, url):
    assert nix_eval(f'import ./nix/health-url.nix "{host}" 8000') == url
    # The same rule as the deploy's own readiness check.
    assert launch.local_url(validate("h", {"phase": "laptop"}, ["laptop"]).replace(vllm_bind_address=host)) == url


def test_the_nix_server_runs_vllm_serve_with_nixpkgs_wrapper():
    """nixpkgs wraps the `vllm` program; `python -m vllm.entrypoints.openai.api_server` would skip
    the wrapper's variables (and is deprecated upstream)."""
    code = [line.split("#")[0] for line in (REPO / "nix" / "vllm.nix").read_text().splitlines()]
    assert any('exec ${python}/bin/vllm serve "$@"' in line for line in code)
    assert not any("api_server" in line for line in code)


def test_the_pin_named_in_messages_is_the_flakes():
    assert nix_eval("(import ./nix/flake.nix).inputs.nixpkgs.url").endswith("/" + nix.NIXPKGS_PIN)


def test_the_installer_archive_must_be_an_installer_tarball_on_this_machine(tmp_path):
    from vllm_fleet.settings import SettingsError

    tarball = tmp_path / "nix-2.24.9-x86_64-linux.tar.xz"
    tarball.write_bytes(b"x")
    laptop = {"phase": "laptop", "serving_method": "nix"}
    assert validate("h", {**laptop, "nix_installer_archive": str(tarball)}, ["laptop"]).nix_installer_archive == str(
        tarball
    )
    for wrong in (str(tmp_path / "missing" / tarball.name), "/etc/hostname"):
        with pytest.raises(
            SettingsError, match=r"nix_installer_archive = .* is not allowed: the path of an existing nix-"
        ):
            validate("h", {**laptop, "nix_installer_archive": wrong}, ["laptop"])
