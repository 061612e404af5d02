"""Data for every host. Knob defaults live in vllm_fleet/settings/, not here.

Secrets are taken from the environment of the machine running pyinfra, so they
are never written into this repository:

    export VLLM_API_KEY=...   # required when vllm_bind_address is not loopback
    export HF_TOKEN=...       # for gated models
    export GATEWAY_API_KEY=...  # for gateways with gateway_auth = "gateway"
    export ALERT_WEBHOOK_TOKEN=...  # monitoring hosts: a bearer token for alert_webhook_url
    export ALERT_SMTP_PASSWORD=...  # monitoring hosts: the mail relay's password
"""

import os

vllm_api_key = os.environ.get("VLLM_API_KEY") or None
hf_token = os.environ.get("HF_TOKEN") or None
gateway_api_key = os.environ.get("GATEWAY_API_KEY") or None
alert_webhook_token = os.environ.get("ALERT_WEBHOOK_TOKEN") or None
alert_smtp_password = os.environ.get("ALERT_SMTP_PASSWORD") or None
