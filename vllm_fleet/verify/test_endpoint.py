"""The OpenAI-compatible endpoint answers, lists the model, completes, and guards its key."""

import json

import pytest
from conftest import split_status


def test_health(target):
    _, status = split_status(target.api("/health", with_key=False))
    assert status == 200


def test_models_lists_served_model(target):
    body, status = split_status(target.api("/v1/models"))
    assert status == 200, body
    ids = [card["id"] for card in json.loads(body)["data"]]
    assert target.settings.served_model_name in ids


def test_short_completion_returns_text(target):
    request = {"model": target.settings.served_model_name, "prompt": "def fibonacci(n):", "max_tokens": 8}
    body, status = split_status(target.api("/v1/completions", json.dumps(request)))
    assert status == 200, body
    choice = json.loads(body)["choices"][0]
    assert choice["text"].strip(), f"empty completion from {target.name}"


def test_request_without_key_is_refused(target):
    if not target.settings.vllm_api_key:
        pytest.skip(f"{target.name} has no API key set")
    _, status = split_status(target.api("/v1/models", with_key=False))
    assert status == 401
