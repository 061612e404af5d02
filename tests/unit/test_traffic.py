"""The rollout tests' traffic client (sandbox/traffic.py) against a local HTTP server that answers
well or breaks its answers: any broken answer is a failed request, and nothing that breaks a
request ends the client with a clean count."""

from __future__ import annotations

import http.server
import json
import threading
import time

import pytest

from sandbox.traffic import Traffic

GOOD = json.dumps({"choices": [{"text": "fib"}]}).encode()


def serve(answer):
    """A server on 127.0.0.1 whose handler writes answer(handler) for every POST."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            answer(self)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def body(handler, data: bytes, length: int | None = None, status: int = 200):
    handler.send_response(status)
    handler.send_header("Content-Length", str(len(data) if length is None else length))
    handler.end_headers()
    handler.wfile.write(data)


def cut_short(handler):
    """Promises more than it sends, then closes: the client reads http.client.IncompleteRead."""
    body(handler, GOOD[:10], length=len(GOOD))
    handler.close_connection = True


BROKEN = {
    "incomplete-read": cut_short,
    "no-choices": lambda h: body(h, json.dumps({"choices": []}).encode()),
    "no-json": lambda h: body(h, b"<html>"),
    "server-error": lambda h: body(h, GOOD, status=500),
    "empty-text": lambda h: body(h, json.dumps({"choices": [{"text": ""}]}).encode()),
}


def run_for(server, seconds: float = 0.5) -> Traffic:
    client = Traffic(f"http://127.0.0.1:{server.server_address[1]}", "k" * 8 + "Zq7wPm2x", "m")
    with client:
        time.sleep(seconds)
    server.shutdown()
    server.server_close()
    return client


def test_good_answers_are_served_and_nothing_is_wrong():
    client = run_for(serve(lambda h: body(h, GOOD)))
    assert client.served > 0 and client.failed == 0
    assert client.failures() == []


@pytest.mark.parametrize("answer", BROKEN.values(), ids=BROKEN.keys())
def test_a_broken_answer_is_a_failed_request_and_the_client_goes_on(answer):
    client = run_for(serve(answer))
    assert client.failed > 1, "the client stopped after its first broken answer"
    assert not client.crashed
    assert any("requests failed" in line for line in client.failures())


def test_a_dead_thread_is_a_failure_even_with_no_failed_request(monkeypatch):
    def die(self):
        raise RuntimeError("the client broke")

    monkeypatch.setattr(Traffic, "_send", die)
    client = run_for(serve(lambda h: body(h, GOOD)), seconds=0.1)
    assert client.failed == 0
    assert any("thread died: RuntimeError" in line for line in client.failures())
    assert "no request was served" in client.failures()
