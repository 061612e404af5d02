"""Clusters: one model served across several hosts (vllm_cluster), as vLLM's multi-node launch
without Ray runs it: every member runs `vllm serve` with --nnodes, its --node-rank and the
leader's --master-addr; the leader (rank 0) serves the API, the others run --headless.

Which hosts are members, what they must agree on, how the model is split across them, and what
each member's watch (templates/vllm-cluster-watch.sh.j2) looks for."""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from vllm_fleet.settings import Settings, SettingsError, require_ip_fleet_address
from vllm_fleet.vllm_flags import resolve

# Knobs every member must have alike: the engine of each is one part of one model.
ALIKE = (
    "phase",
    "accelerator",
    "serving_method",
    "vllm_image",
    "vllm_image_archive",
    "vllm_model",
    "vllm_model_dir",
    "vllm_served_model_name",
    "vllm_quantization",
    "vllm_max_model_len",
    "vllm_max_num_seqs",
    "vllm_gpu_memory_utilization",
    "vllm_kv_cache_gib",
    "vllm_tensor_parallel_size",
    "vllm_extra_args",
    "gpu_count",
    "gpu_memory_gib",
    "vllm_port",
    "vllm_cluster_port",
    "vllm_cluster_split",
    "vllm_cluster_join_timeout",
    "vllm_cluster_dynamic_ports",
    "vllm_ready_timeout",
    "vllm_api_key",  # the members' readiness checks ask the leader with their own key
)


# How the model is split and run across hosts: the cluster's own (split), so not extra arguments.
SPLIT_FLAGS = ("--pipeline-parallel-size", "-pp", "--data-parallel-size", "-dp", "--distributed-executor-backend")


@dataclass(frozen=True)
class Member:
    host: str
    address: str


@dataclass(frozen=True)
class Place:
    """One member's place in its cluster, and what it needs to run its part."""

    name: str
    rank: int
    members: tuple[Member, ...]  # by rank: members[0] is the leader
    tensor_parallel_size: int
    pipeline_parallel_size: int
    interface: str
    port: int
    join_timeout: int
    api_port: int

    @property
    def leader(self) -> Member:
        return self.members[0]

    @property
    def is_leader(self) -> bool:
        return self.rank == 0

    @property
    def peers(self) -> tuple[Member, ...]:
        """The members this one must be connected to: the leader's workers, a worker's leader."""
        return self.members[1:] if self.is_leader else (self.leader,)

    @property
    def leader_url(self) -> str:
        address = ipaddress.ip_address(self.leader.address)
        shown = f"[{address}]" if address.version == 6 else str(address)
        return f"http://{shown}:{self.api_port}"

    def vllm_args(self) -> list[str]:
        """vLLM's multi-node flags for this member (docs/serving/parallelism_scaling.md of vLLM 0.32:
        "Running vLLM with MultiProcessing")."""
        args = [
            "--tensor-parallel-size",
            str(self.tensor_parallel_size),
            "--pipeline-parallel-size",
            str(self.pipeline_parallel_size),
            "--nnodes",
            str(len(self.members)),
            "--node-rank",
            str(self.rank),
            "--master-addr",
            self.leader.address,
            "--master-port",
            str(self.port),
        ]
        return args if self.is_leader else [*args, "--headless"]

    def environment(self, accelerator: str) -> dict[str, str]:
        """The member's own address for vLLM's queues (VLLM_HOST_IP: unique per member, vLLM's
        docs), and the interface the collective libraries bind to."""
        env = {"VLLM_HOST_IP": self.members[self.rank].address, "GLOO_SOCKET_IFNAME": self.interface}
        if accelerator in ("nvidia", "amd"):  # RCCL reads NCCL's variables
            env["NCCL_SOCKET_IFNAME"] = self.interface
        return env


def members(s: Settings, fleet: Mapping[str, Settings]) -> list[Settings]:
    """The hosts of s's cluster, by rank (s alone when it is in none)."""
    if s.vllm_cluster is None:
        return [s]
    found = [m for m in fleet.values() if m.role == "vllm" and m.vllm_cluster == s.vllm_cluster]
    return sorted(found, key=lambda m: (m.vllm_cluster_rank or 0, m.host))


def peer_addresses(s: Settings, fleet: Mapping[str, Settings]) -> list[str]:
    """The addresses of the other members of s's cluster ([] outside one)."""
    return [m.fleet_address for m in members(s, fleet) if m.host != s.host]


def is_worker(s: Settings) -> bool:
    """A member that serves no API of its own (rank above 0)."""
    return s.vllm_cluster is not None and bool(s.vllm_cluster_rank)


def split(s: Settings, accelerator: str, size: int) -> tuple[int, int]:
    """(tensor parallel, pipeline parallel) across `size` members: tensor parallel within each
    member (its GPUs, or the setting) and pipeline parallel across them, as vLLM advises; or
    tensor parallel across every GPU when vllm_cluster_split is tensor."""
    if isinstance(s.vllm_tensor_parallel_size, int):
        per_member = s.vllm_tensor_parallel_size
    else:
        per_member = 1 if accelerator == "cpu" else (s.gpu_count or 1)
    if s.vllm_cluster_split == "tensor":
        return per_member * size, 1
    return per_member, size


def place(s: Settings, fleet: Mapping[str, Settings], accelerator: str) -> Place | None:
    """s's place in its cluster; None for a host that serves alone."""
    if s.vllm_cluster is None or s.vllm_cluster_rank is None or s.vllm_cluster_interface is None:
        return None
    found = members(s, fleet)
    tp, pp = split(s, accelerator, len(found))
    return Place(
        s.vllm_cluster,
        s.vllm_cluster_rank,
        tuple(Member(m.host, m.fleet_address) for m in found),
        tp,
        pp,
        s.vllm_cluster_interface,
        s.vllm_cluster_port,
        s.vllm_cluster_join_timeout,
        s.vllm_port,
    )


def check_member(s: Settings) -> None:
    """One member's own settings (rules.validate): a rank, an interface, a known accelerator and
    GPU count, the Docker way, an IP address."""
    if s.vllm_cluster is None:
        if s.vllm_cluster_rank is not None:
            raise SettingsError(
                s.host,
                "vllm_cluster_rank",
                s.show("vllm_cluster_rank"),
                "None outside a cluster (set vllm_cluster to the cluster's name)",
            )
        return
    where = f"a member of cluster {s.vllm_cluster!r}"
    if s.role != "vllm":
        raise SettingsError(s.host, "vllm_cluster", s.show("vllm_cluster"), f"None on a {s.role} host")
    if s.vllm_cluster_rank is None:
        raise SettingsError(
            s.host,
            "vllm_cluster_rank",
            "None",
            f"the member's rank on {where}: 0 for its leader, then 1, 2 ... for the others",
        )
    if s.vllm_cluster_interface is None:
        raise SettingsError(
            s.host,
            "vllm_cluster_interface",
            "None",
            f"the network interface holding fleet_address on {where} (NCCL and Gloo bind to it), such as eth0",
        )
    if s.serving_method != "docker":
        raise SettingsError(
            s.host,
            "serving_method",
            s.show("serving_method"),
            f"docker on {where}: every member runs the same pinned image",
        )
    if s.accelerator == "auto":
        raise SettingsError(
            s.host,
            "accelerator",
            "'auto'",
            f"nvidia, amd or cpu on {where}: the members must be alike, so the inventory names it",
        )
    if s.accelerator != "cpu" and s.gpu_count is None:
        raise SettingsError(
            s.host,
            "gpu_count",
            "None",
            f"the member's GPU count on {where}: the model is split across every GPU of the cluster",
        )
    if s.phase == "laptop":
        raise SettingsError(
            s.host,
            "phase",
            "'laptop'",
            f"single_gpu or enterprise on {where} (a laptop serves its own user on loopback)",
        )
    require_ip_fleet_address(
        s, f"the member's IP address on the cluster network, on {where} (VLLM_HOST_IP, the firewall)"
    )
    low, high = (int(p) for p in s.vllm_cluster_dynamic_ports.split("-"))
    if low <= s.vllm_cluster_port <= high:
        raise SettingsError(
            s.host,
            "vllm_cluster_port",
            s.show("vllm_cluster_port"),
            f"a port outside "
            f"vllm_cluster_dynamic_ports ({s.vllm_cluster_dynamic_ports}), where the kernel hands out "
            "the ports of outgoing connections",
        )
    split_args = sorted({flag for arg in s.vllm_extra_args if (flag := resolve(arg)) in SPLIT_FLAGS})
    if split_args:
        raise SettingsError(
            s.host,
            "vllm_extra_args",
            s.show("vllm_extra_args"),
            f"arguments without {', '.join(split_args)} on {where}: the cluster splits the model itself "
            "(vllm_cluster_split, vllm_tensor_parallel_size)",
        )
    if s.vllm_cluster_port == s.vllm_port:
        raise SettingsError(
            s.host,
            "vllm_cluster_port",
            s.show("vllm_cluster_port"),
            f"a port other than vllm_port ({s.vllm_port}) on {where}",
        )
    if s.vllm_cluster_rank == 0 and s.is_loopback:
        raise SettingsError(
            s.host,
            "vllm_bind_address",
            s.show("vllm_bind_address"),
            f"an address the other "
            f"members reach on the leader of cluster {s.vllm_cluster!r} (0.0.0.0 or fleet_address)",
        )
    bind = ipaddress.ip_address(s.vllm_bind_address)
    if s.vllm_cluster_rank == 0 and not bind.is_unspecified and str(bind) != s.fleet_address:
        raise SettingsError(
            s.host,
            "vllm_bind_address",
            s.show("vllm_bind_address"),
            f"0.0.0.0, :: or the leader's fleet_address ({s.fleet_address}) on the leader of cluster "
            f"{s.vllm_cluster!r}: the other members reach it there",
        )


def check_cluster(s: Settings, fleet: Mapping[str, Settings]) -> None:
    """Rules across a cluster's members (rules.check_fleet): at least two, ranks 0 to n-1 once
    each, alike in everything that makes the model."""
    if s.vllm_cluster is None or s.role != "vllm":
        return
    found = members(s, fleet)
    name = repr(s.vllm_cluster)
    if len(found) < 2:
        raise SettingsError(
            s.host,
            "vllm_cluster",
            s.show("vllm_cluster"),
            f"a name at least two vLLM hosts share: {s.host} is the only member of cluster {name}",
        )
    ranks = [m.vllm_cluster_rank for m in found]
    if sorted(r for r in ranks if r is not None) != list(range(len(found))):
        same = [m.host for m in found if m.vllm_cluster_rank == s.vllm_cluster_rank]
        why = f"{' and '.join(same)} both have it" if len(same) > 1 else f"the ranks are {ranks}"
        raise SettingsError(
            s.host,
            "vllm_cluster_rank",
            s.show("vllm_cluster_rank"),
            f"a rank of its own from 0 to {len(found) - 1} in cluster {name} ({why})",
        )
    same = [m.host for m in found if m.fleet_address == s.fleet_address]
    if len(same) > 1:
        raise SettingsError(
            s.host,
            "fleet_address",
            s.show("fleet_address"),
            f"an address of its own in cluster {name} (VLLM_HOST_IP must be unique): {' and '.join(same)} share it",
        )
    leader = found[0]
    for knob in ALIKE:
        if getattr(s, knob) != getattr(leader, knob):
            raise SettingsError(
                s.host,
                knob,
                s.show(knob),
                f"the value every member of cluster {name} has: its leader {leader.host} has {leader.show(knob)}",
            )
    gpus = leader.gpu_count or 1
    if isinstance(s.vllm_tensor_parallel_size, int) and s.accelerator != "cpu" and s.vllm_tensor_parallel_size > gpus:
        raise SettingsError(
            s.host,
            "vllm_tensor_parallel_size",
            s.show("vllm_tensor_parallel_size"),
            f"at most the member's {gpus} GPU(s): in cluster {name} it is the tensor parallel size within a member",
        )


# Seconds a joined peer may be disconnected before the watch restarts vLLM.
WATCH_GRACE = 15
SSH_PORT = 22


def connection_forms(address: str) -> list[str]:
    """An address as /proc/net/tcp and tcp6 print a connection's remote end (hex, in the host's
    byte order, x86_64 and aarch64 alike: little-endian), an IPv4 one also mapped into IPv6."""
    ip = ipaddress.ip_address(address)
    words = [ip.packed[i : i + 4][::-1].hex().upper() for i in range(0, len(ip.packed), 4)]
    if ip.version == 4:
        return [words[0], "0000000000000000FFFF0000" + words[0]]
    return ["".join(words)]


def watch_conf(p: Place) -> str:
    """The watch's settings (sourced by templates/vllm-cluster-watch.sh.j2)."""
    peers = " ".join(f"{m.host}={','.join(connection_forms(m.address))}" for m in p.peers)
    skip = " ".join(f"{port:04X}" for port in (p.api_port, SSH_PORT))
    values = {
        "CLUSTER": p.name,
        "RANK": str(p.rank),
        "SIZE": str(len(p.members)),
        "PEERS": peers,
        "JOIN_TIMEOUT": str(p.join_timeout),
        "GRACE": str(WATCH_GRACE),
        "SKIP_PORTS": skip,
    }
    lines = ["# Managed by vllm-fleet: this member's cluster, for vllm-cluster-watch."]
    return "\n".join([*lines, *(f"{name}={shlex.quote(value)}" for name, value in values.items())]) + "\n"
