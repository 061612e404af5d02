"""The knobs of the gateway hosts."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from vllm_fleet.settings.types import (
    IP_ADDRESS,
    LAX,
    LOCAL_FILE,
    SECRET_RULE,
    Bounded,
    GatewayAuth,
    IpAddress,
    Knobs,
    LocalFile,
    Port,
    Secret,
    knob,
    one_of,
    or_none,
)


class Gateway(Knobs):
    """Gateway hosts: HAProxy in front of the vLLM hosts."""

    gateway_backends: Annotated[tuple[Annotated[str, Field(min_length=1)], ...], *LAX] | None = knob(
        None,
        "Gateway hosts: the vLLM hosts HAProxy sends requests to; None: every enterprise host of the inventory.",
        or_none("a list of inventory host names"),
    )
    gateway_port: Port = knob(8000, "Gateway hosts: the port clients connect to.")
    gateway_bind_address: IpAddress = knob("0.0.0.0", "Gateway hosts: the address clients connect to.", IP_ADDRESS)
    gateway_auth: GatewayAuth = knob(
        "passthrough",
        "Gateway hosts: passthrough: the vLLM hosts check the client's key (vllm_api_key); gateway: HAProxy "
        "checks gateway_api_key and sends requests on with the vLLM hosts' key, which clients never see.",
        one_of(GatewayAuth),
    )
    gateway_api_key: Secret | None = knob(
        None,
        "Gateway hosts with gateway_auth = gateway: the key clients send; read from the environment "
        "(GATEWAY_API_KEY) in group_data/all.py, never committed.",
        or_none(SECRET_RULE),
    )
    gateway_tls_certificate: LocalFile | None = knob(
        None,
        "Gateway hosts: a PEM file (certificate chain, then private key) on the machine running pyinfra; set, "
        "the gateway serves HTTPS only. None: plain HTTP.",
        or_none(LOCAL_FILE),
    )
    gateway_drain_timeout: Annotated[int, Bounded(5, 3600)] = knob(
        120,
        "Gateway hosts: seconds a rollout waits for a drained vLLM host's requests in flight to finish "
        "before it restarts the host anyway.",
    )
