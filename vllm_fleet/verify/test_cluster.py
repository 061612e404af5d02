"""A cluster's members (one model served across hosts): each runs its part with its watch, and the
watch saw every other member it needs connected; the endpoint tests ask the leader from each."""

import pytest

from vllm_fleet import paths


def _member(target):
    if target.place is None:
        pytest.skip(f"{target.name} serves its model alone (no vllm_cluster)")
    return target.place


def test_cluster_watch_runs(target):
    place = _member(target)
    watch = target.host.service(paths.CLUSTER_WATCH_SERVICE)
    assert watch.is_running, f"{paths.CLUSTER_WATCH_SERVICE} is not running on {target.name} (cluster {place.name})"


def test_every_member_joined(target):
    """On the leader, every other member is connected; on the others, the leader."""
    place = _member(target)
    seen = target.host.run(f"cat {paths.CLUSTER_STATUS}").stdout.strip()
    peers = ", ".join(m.host for m in place.peers)
    assert seen == "joined", (
        f"cluster {place.name} on {target.name} (rank {place.rank}) has not every member it needs ({peers}): {seen!r}"
    )


def test_member_runs_its_rank(target):
    place = _member(target)
    args = target.host.run(f"docker inspect --format '{{{{join .Args \" \"}}}}' {paths.CONTAINER_NAME}").stdout
    assert f"--node-rank {place.rank} " in args + " ", f"{target.name}'s vLLM does not run rank {place.rank}: {args}"
    assert ("--headless" in args.split()) == (not place.is_leader), f"{target.name}: {args}"
