"""Docker engine pieces that need no host: daemon.json merging, Docker's repository."""

import pytest

from tasks.docker_engine import merged_daemon_config
from vllm_fleet import docker_repo
from vllm_fleet.facts.distro import from_fact

BOOKWORM = {"name": "Debian", "major": 12, "release_meta": {"VERSION_CODENAME": "bookworm", "ID": "debian"}}
NOBLE = {"name": "Ubuntu", "major": 24, "release_meta": {"VERSION_CODENAME": "noble", "ID": "ubuntu"}}


def test_merge_keeps_another_tools_runtime():
    current = {"runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}, "log-driver": "json-file"}
    merged = merged_daemon_config(current, {"log-driver": "journald"})
    assert merged["runtimes"] == current["runtimes"]
    assert merged["log-driver"] == "journald"
    assert merged_daemon_config(current, {}) == current


@pytest.mark.parametrize(
    "distro, url, suite",
    [
        (BOOKWORM, "https://download.docker.com/linux/debian", "bookworm"),
        (NOBLE, "https://download.docker.com/linux/ubuntu", "noble"),
    ],
)
def test_deb822_source_is_signed_by_its_own_keyring(distro, url, suite):
    text = docker_repo.apt_source(from_fact(distro)).deb822()
    assert f"URIs: {url}\n" in text and f"Suites: {suite}\n" in text
    assert "Signed-By: /etc/apt/keyrings/docker.asc\n" in text
    assert "apt-key" not in text


def test_version_pin():
    assert docker_repo.packages(None)[0] == "docker-ce"
    pinned = docker_repo.packages("5:27.3.1-1~debian.12~bookworm")
    assert pinned[:2] == ["docker-ce=5:27.3.1-1~debian.12~bookworm", "docker-ce-cli=5:27.3.1-1~debian.12~bookworm"]
    assert "Pin: version 5:27.3.1-1~debian.12~bookworm" in docker_repo.apt_pin("5:27.3.1-1~debian.12~bookworm")


def test_unknown_codename_is_refused():
    with pytest.raises(ValueError, match="codename"):
        docker_repo.apt_source(from_fact({"name": "Debian", "major": 12, "release_meta": {}}))


def test_the_rpm_repository_is_docker_s_by_major_release_whatever_the_release_lock():
    """$releasever is 9.4 on a RHEL host locked to a minor (EUS), and download.docker.com has no 9.4."""
    from vllm_fleet.distro import Distro

    for version in ("9.4", "9.6", "9"):
        repo = docker_repo.dnf_repo(Distro("rhel", "dnf", version, ""))
        assert "baseurl=https://download.docker.com/linux/rhel/9/$basearch/stable\n" in repo
        assert "$releasever" not in repo
