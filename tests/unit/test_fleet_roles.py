"""Gateways and the firewall in the schema: rules across the inventory, the HAProxy
configuration and the nftables table each host gets."""

from __future__ import annotations

import pytest

from vllm_fleet.firewall import allowed_sources, rules, wanted
from vllm_fleet.haproxy import haproxy_config, haproxy_quote
from vllm_fleet.rules import check_gateway, validate
from vllm_fleet.settings import SettingsError

KEY = "backend-key-" + "k" * 12


def vllm_host(name: str, **data):
    address = f"10.0.0.{sum(name.encode()) % 250 + 1}"  # one address per host, as on a real network
    base = {"phase": "enterprise", "vllm_bind_address": "0.0.0.0", "vllm_api_key": KEY, "fleet_address": address}
    return validate(name, {**base, **data}, ["enterprise"])


def gateway_host(name: str = "gw", **data):
    return validate(name, {"fleet_address": "10.0.9.1", **data}, ["gateway"])


def fleet(*hosts):
    return {h.host: h for h in hosts}


def refuse_gateway(gateway, *backends) -> str:
    with pytest.raises(SettingsError) as caught:
        check_gateway(gateway, fleet(gateway, *backends))
    return str(caught.value)


def test_a_gateway_needs_no_phase_and_fronts_the_enterprise_hosts():
    gw = gateway_host()
    assert gw.role == "gateway" and gw.phase is None
    a, b = vllm_host("a"), vllm_host("b")
    laptop = validate("lap", {"phase": "laptop"}, ["laptop"])
    check_gateway(gw, fleet(gw, a, b, laptop))
    assert f"server a {a.fleet_address}:8000 check" in haproxy_config(gw, fleet(gw, a, b, laptop))
    assert " lap " not in haproxy_config(gw, fleet(gw, a, b, laptop))


def test_a_host_is_a_gateway_or_serves_vllm_not_both():
    with pytest.raises(SettingsError, match="host gw: phase = 'enterprise' is not allowed: a host of the gateway"):
        validate("gw", {"phase": "enterprise"}, ["gateway", "enterprise"])


def test_fleet_address_defaults_to_ssh_hostname_then_the_name():
    assert validate("gw", {"ssh_hostname": "192.0.2.7"}, ["gateway"]).fleet_address == "192.0.2.7"
    assert validate("gw.example", {}, ["gateway"]).fleet_address == "gw.example"


@pytest.mark.parametrize(
    ("gateway", "backends", "expected"),
    [
        (
            {"gateway_backends": ["a", "nope"]},
            [{}],
            "host gw: gateway_backends = ['a', 'nope'] is not allowed: the names of vLLM hosts of this inventory",
        ),
        ({}, [], "gateway_backends = None is not allowed: the names of vLLM hosts of this inventory (None: the"),
        (
            {"gateway_backends": ["a"]},
            [{"vllm_bind_address": "127.0.0.1"}],
            "is not allowed: hosts the gateway can reach: a bind(s) vLLM to loopback",
        ),
        ({}, [{}, {"vllm_api_key": "another-key-" + "x" * 10}], "vLLM hosts sharing one vllm_api_key"),
        (
            {"fleet_address": "gw.example.internal"},
            [{}],
            "host gw: fleet_address = 'gw.example.internal' is not allowed: the gateway's IP address as its backends",
        ),
    ],
)
def test_gateway_rules_across_the_inventory(gateway, backends, expected):
    hosts = [vllm_host("ab"[i], **data) for i, data in enumerate(backends)]
    assert expected in refuse_gateway(gateway_host(**gateway), *hosts)


def test_a_name_is_fine_as_gateway_address_when_no_backend_filters():
    gw = gateway_host(fleet_address="gw.example.internal")
    check_gateway(gw, fleet(gw, vllm_host("a", vllm_firewall=False)))


def test_gateway_auth_needs_its_own_key():
    with pytest.raises(SettingsError, match="gateway_api_key = None is not allowed: a key of at least 16"):
        gateway_host(gateway_auth="gateway")


def test_a_laptop_serves_loopback_only():
    with pytest.raises(SettingsError, match="vllm_bind_address = '0.0.0.0' is not allowed: a loopback address on a"):
        validate("lap", {"phase": "laptop", "vllm_bind_address": "0.0.0.0", "vllm_api_key": KEY}, ["laptop"])


def test_passthrough_config_checks_health_and_the_model_list_with_the_backend_key():
    gw, a = gateway_host(), vllm_host("a")
    config = haproxy_config(gw, fleet(gw, a))
    assert "http-check send meth GET uri /health" in config
    assert f'http-check send meth GET uri /v1/models hdr Authorization "Bearer {KEY}"' in config
    assert "bind 0.0.0.0:8000\n" in config
    # Clients present the hosts' own key, checked here on every path but /health and forwarded as it came.
    assert f'!{{ path /health }} !{{ req.fhdr(authorization) -m str "Bearer {KEY}" }}' in config
    assert "set-header Authorization" not in config
    assert "stats socket /run/haproxy/admin.sock mode 600 level admin" in config


def test_gateway_auth_checks_the_client_key_and_forwards_the_backend_key(tmp_path):
    pem = tmp_path / "gw.pem"
    pem.write_text("not checked here\n")
    client_key = "client-$KEY-" + "c" * 10
    gw = gateway_host(gateway_auth="gateway", gateway_api_key=client_key, gateway_tls_certificate=str(pem))
    config = haproxy_config(gw, fleet(gw, vllm_host("a")))
    assert "bind 0.0.0.0:8000 ssl crt /etc/vllm-fleet/gateway.pem" in config
    assert '!{ req.fhdr(authorization) -m str "Bearer client-\\$KEY-cccccccccc" }' in config
    assert f'http-request set-header Authorization "Bearer {KEY}"' in config


def test_haproxy_quote_keeps_every_character_literal():
    assert haproxy_quote('a"b\\c$d') == '"a\\"b\\\\c\\$d"'


def test_firewall_admits_the_gateways_in_front_and_the_allowed_sources():
    gw = gateway_host()
    other = gateway_host("gw2", fleet_address="10.0.9.2", gateway_backends=["b"])
    a = vllm_host("a", vllm_allowed_sources=["192.0.2.0/24", "2001:db8::5"])
    b = vllm_host("b")
    hosts = fleet(gw, other, a, b)
    assert allowed_sources(a, hosts) == ["10.0.9.1/32", "192.0.2.0/24", "2001:db8::5/128"]
    assert allowed_sources(b, hosts) == ["10.0.9.1/32", "10.0.9.2/32"]
    table = rules(a, hosts)
    assert "elements = { 10.0.9.1/32, 192.0.2.0/24 }" in table
    assert "elements = { 2001:db8::5/128 }" in table
    assert "tcp dport 8000 fib daddr type local counter drop" in table and "dport 22" not in table


def _statements(table: str) -> list[str]:
    """The table's lines but its comments, stripped."""
    return [line.strip() for line in table.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_firewall_accepts_each_family_from_its_own_set_before_dropping_the_rest():
    """The whole table, in order: an IPv6 source is admitted by its own accept rule (ip6 saddr),
    IPv4 ones by theirs, both before the drop; nothing else is dropped but the container's port."""
    gw = gateway_host()
    a = vllm_host("a", vllm_allowed_sources=["192.0.2.0/24", "2001:db8::5"])
    assert _statements(rules(a, fleet(gw, a))) == [
        "table inet vllm_fleet",
        "delete table inet vllm_fleet",
        "table inet vllm_fleet {",
        "set vllm_ipv4 {",
        "type ipv4_addr; flags interval;",
        "elements = { 10.0.9.1/32, 192.0.2.0/24 }",
        "}",
        "set vllm_ipv6 {",
        "type ipv6_addr; flags interval;",
        "elements = { 2001:db8::5/128 }",
        "}",
        "chain prerouting {",
        "type filter hook prerouting priority -150; policy accept;",
        'iifname "lo" accept',
        "tcp dport 8000 fib daddr type local ip saddr @vllm_ipv4 accept",
        "tcp dport 8000 fib daddr type local ip6 saddr @vllm_ipv6 accept",
        "tcp dport 8000 fib daddr type local counter drop",
        'iifname != "docker0" fib daddr oifname "docker0" tcp dport 8000 counter drop',
        "}",
        "}",
    ]


def test_firewall_with_no_source_drops_all_but_loopback():
    table = rules(vllm_host("a", vllm_port=9000), {})
    assert "elements" not in table and "tcp dport 9000 fib daddr type local counter drop" in table
    # The container itself is reached by nobody else, whatever the host port (moby issue 45610).
    assert 'iifname != "docker0" fib daddr oifname "docker0" tcp dport 8000 counter drop' in table


def test_laptops_get_the_firewall_too_and_opted_out_hosts_none():
    assert wanted(vllm_host("a"), {})
    assert not wanted(vllm_host("a", vllm_firewall=False), {})
    assert wanted(validate("lap", {"phase": "laptop"}, ["laptop"]), {})
    # A gateway filters only when it exports metrics to a monitoring host.
    assert not wanted(gateway_host(), {})


def test_allowed_sources_must_be_addresses_or_networks():
    with pytest.raises(SettingsError, match="vllm_allowed_sources = \\['monitoring'\\] is not allowed: a list of IP"):
        vllm_host("a", vllm_allowed_sources=["monitoring"])


def test_a_backend_whose_name_haproxy_would_refuse_is_refused_at_the_gateway():
    gw, odd = gateway_host(), vllm_host("@docker/gpu-1")
    message = refuse_gateway(gw, odd)
    assert "hosts whose inventory names are HAProxy server names (letters, digits and . _ -): @docker/gpu-1" in message
