"""What `vllm-fleet hosts` prints of each host's settings reads back validated (the verify suite
rebuilds its hosts from it), with each secret known only as set or not."""

from __future__ import annotations

import json

import pytest

from tests.unit import monitored_fleet
from vllm_fleet.inventory import public_settings
from vllm_fleet.settings import KNOBS, public_values
from vllm_fleet.settings.parsing import is_secret

SECRETS = [name for name in KNOBS if is_secret(name)]


def _printed(settings) -> str:
    return json.dumps(public_values(settings))


@pytest.mark.parametrize("name", list(monitored_fleet.HOSTS))
def test_every_role_reads_back_as_validated(name):
    settings = monitored_fleet.fleet()[name]
    back = public_settings(name, settings.role, json.loads(_printed(settings)))
    assert (back.host, back.role) == (settings.host, settings.role)
    assert {k: v for k, v in back.values.items() if k not in SECRETS} == {
        k: v for k, v in settings.values.items() if k not in SECRETS
    }
    assert [k for k in SECRETS if back.values[k]] == [k for k in SECRETS if settings.values[k]]


def test_a_secret_is_never_printed_and_reads_back_as_set_only(settings_for):
    key, token = "a" * 20, "hf_" + "b" * 20
    settings = settings_for("single_gpu", vllm_bind_address="0.0.0.0", vllm_api_key=key, hf_token=token)
    printed = _printed(settings)
    assert key not in printed and token not in printed
    back = public_settings(settings.host, settings.role, json.loads(printed))
    assert back.vllm_api_key and back.hf_token
    assert back.vllm_api_key.get_secret_value() not in (key, token)
    assert back.alert_webhook_token is None


def test_what_fails_the_schema_is_refused_not_rebuilt(settings_for):
    values = json.loads(_printed(settings_for("single_gpu")))
    with pytest.raises(ValueError, match="vllm_port"):
        public_settings("gpu-01", "vllm", {**values, "vllm_port": "8000"})
