"""The knobs of a vLLM cluster: one model served by several hosts."""

from __future__ import annotations

from typing import Annotated, Literal

from vllm_fleet.settings.types import (
    CLUSTER_NAME,
    NETWORK_INTERFACE,
    PORT_RANGE,
    Bounded,
    ClusterName,
    Knobs,
    NetworkInterface,
    Port,
    PortRange,
    knob,
    or_none,
)


class Cluster(Knobs):
    """A vLLM server spread over several hosts (docs/clusters.md)."""

    vllm_cluster: ClusterName | None = knob(
        None,
        "The cluster this host serves one model with: every vLLM host of the inventory with the same name is one "
        "of its members (docs/clusters.md). None: the host serves its model alone.",
        or_none(CLUSTER_NAME),
    )
    vllm_cluster_rank: Annotated[int, Bounded(0, 63)] | None = knob(
        None,
        "Cluster members: the member's place in the cluster, 0 to members - 1; rank 0 is the leader (it serves the "
        "API; the others join it and serve nothing themselves).",
    )
    vllm_cluster_interface: NetworkInterface | None = knob(
        None,
        "Cluster members: the network interface the members reach each other on, the one that holds fleet_address "
        "(NCCL_SOCKET_IFNAME, GLOO_SOCKET_IFNAME); required for members.",
        or_none(NETWORK_INTERFACE),
    )
    vllm_cluster_port: Port = knob(
        29501, "Cluster members: the leader's port the members meet at (vLLM --master-port, torch's TCPStore)."
    )
    vllm_cluster_dynamic_ports: PortRange = knob(
        "32768-60999",
        "Cluster members: the port range the members' NCCL, Gloo and vLLM's message queues listen on: the kernel's "
        "net.ipv4.ip_local_port_range, which this must match (it is not read from the host). The firewall admits "
        "only the members to it.",
        PORT_RANGE,
    )
    vllm_cluster_split: Literal["pipeline", "tensor"] = knob(
        "pipeline",
        "Cluster members: pipeline: tensor parallel within each member, pipeline parallel across members (vLLM's "
        "advice); tensor: tensor parallel across every GPU of the cluster (only with a fast interconnect).",
        "pipeline or tensor",
    )
    vllm_cluster_rdma: bool = knob(
        False,
        "Cluster members on GPUs: hand vLLM the host's RDMA devices (/dev/infiniband, the IPC_LOCK capability, "
        "unlimited locked memory), as vLLM's multi-node guide asks for InfiniBand and GPUDirect RDMA, so NCCL "
        "crosses hosts over InfiniBand or RoCE instead of TCP sockets. Pre-flight refuses it on a host without "
        "/dev/infiniband.",
        "True or False",
    )
    vllm_cluster_join_timeout: Annotated[int, Bounded(30, 7200)] = knob(
        600,
        "Cluster members: seconds the leader waits for every member to join after a start before it says who is "
        "missing and starts again.",
    )
