"""STAND-IN for vLLM's OpenAI-compatible server, for tests and the demo only.

This is not vLLM and is never shipped as vLLM. It exists because the machines
the tests run on have no GPU and cannot download models. It takes vLLM's place
inside a container image so that everything around the server (the image
archive, the systemd unit, the env file, the port, the API key, the readiness
wait, the verify suite) is exercised for real.

It accepts the `vllm serve` flags this project passes (and rejects unknown ones,
as vLLM does), honours `VLLM_API_KEY`, and serves `/health`, `/v1/models`,
`/v1/completions`, `/v1/chat/completions` and `/metrics`. Python stdlib only.

Test-only knobs, read from the environment:
  STANDIN_STARTUP_DELAY  seconds to wait before listening (model loading)
  STANDIN_FAIL_START     when set, exit 1 at start-up (a broken release)
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STANDIN_BANNER = "vllm-fleet STAND-IN server (not vLLM)"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vllm serve (stand-in)", allow_abbrev=False)
    p.add_argument("model_tag", nargs="?", help="model, as `vllm serve MODEL`")
    p.add_argument("--model", default=None)
    p.add_argument("--served-model-name", nargs="+", default=None)
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=None)
    p.add_argument("--quantization", "-q", default=None)
    p.add_argument("--dtype", default="auto")
    p.add_argument("--kv-cache-dtype", default="auto")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    p.add_argument("--max-model-len", type=int, default=None)
    p.add_argument("--max-num-seqs", type=int, default=256)
    p.add_argument("--max-num-batched-tokens", type=int, default=None)
    p.add_argument("--kv-cache-memory-bytes", default=None)
    p.add_argument("--tensor-parallel-size", "-tp", type=int, default=1)
    p.add_argument("--pipeline-parallel-size", "-pp", type=int, default=1)
    p.add_argument("--swap-space", type=float, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--download-dir", default=None)
    p.add_argument("--tokenizer", default=None)
    p.add_argument("--revision", default=None)
    p.add_argument("--chat-template", default=None)
    p.add_argument("--generation-config", default=None)
    p.add_argument("--distributed-executor-backend", default=None)
    p.add_argument("--uvicorn-log-level", default="info")
    for flag in (
        "--disable-log-stats",
        "--disable-log-requests",
        "--trust-remote-code",
        "--enforce-eager",
        "--enable-prefix-caching",
        "--enable-chunked-prefill",
    ):
        p.add_argument(flag, action="store_true")
    return p


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.generated_tokens = 0
        self.in_flight = 0
        self.idle = threading.Condition(self.lock)

    def begin(self) -> None:
        with self.lock:
            self.in_flight += 1

    def end(self) -> None:
        with self.lock:
            self.in_flight -= 1
            self.idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self.lock:
            return self.idle.wait_for(lambda: self.in_flight == 0, timeout)

    def record(self, tokens: int) -> None:
        with self.lock:
            self.requests += 1
            self.generated_tokens += tokens


def make_handler(args: argparse.Namespace, api_key: str | None, stats: Stats):
    model = args.model or args.model_tag
    served = args.served_model_name or [model]
    max_len = args.max_model_len or 4096
    started = int(time.time())

    class Handler(BaseHTTPRequestHandler):
        server_version = "vllm-fleet-standin/1"
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):  # quiet like --disable-log-requests
            pass

        def _send(self, status: int, body, content_type="application/json"):
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorised(self) -> bool:
            if not api_key:
                return True
            given = self.headers.get("Authorization", "")
            return hmac.compare_digest(given.encode(), f"Bearer {api_key}".encode())

        def _error(self, status: int, message: str):
            self._send(status, {"error": {"message": message, "code": status}})

        def handle_one_request(self):
            # A request in flight from its first byte to its last: what SIGTERM waits for
            # (idle keep-alive connections, such as a load balancer's, are not waited for).
            self.raw_requestline = self.rfile.readline(65537)
            if not self.raw_requestline:
                self.close_connection = True
                return
            stats.begin()
            try:
                if self.parse_request():
                    getattr(self, f"do_{self.command}", lambda: self.send_error(501))()
                    self.wfile.flush()
            finally:
                stats.end()

        def do_GET(self):
            if self.path == "/health":
                return self._send(200, b"", "text/plain")
            if self.path == "/metrics":
                text = (
                    "# HELP vllm:num_requests_total Requests served (stand-in).\n"
                    "# TYPE vllm:num_requests_total counter\n"
                    f'vllm:num_requests_total{{model_name="{served[0]}"}} {stats.requests}\n'
                    "# TYPE vllm:generation_tokens_total counter\n"
                    f'vllm:generation_tokens_total{{model_name="{served[0]}"}} '
                    f"{stats.generated_tokens}\n"
                )
                return self._send(200, text.encode(), "text/plain; version=0.0.4")
            if not self.path.startswith("/v1/"):
                return self._error(404, "Not Found")
            if not self._authorised():
                return self._send(401, {"error": "Unauthorized"})
            if self.path == "/v1/models":
                cards = [
                    {
                        "id": name,
                        "object": "model",
                        "created": started,
                        "owned_by": "vllm",
                        "root": model,
                        "max_model_len": max_len,
                    }
                    for name in served
                ]
                return self._send(200, {"object": "list", "data": cards})
            return self._error(404, "Not Found")

        def do_POST(self):
            if not self.path.startswith("/v1/"):
                return self._error(404, "Not Found")
            if not self._authorised():
                return self._send(401, {"error": "Unauthorized"})
            try:
                length = int(self.headers.get("Content-Length", "0"))
                req = json.loads(self.rfile.read(length) or b"{}")
            except (ValueError, json.JSONDecodeError):
                return self._error(400, "request body is not JSON")
            if req.get("model") not in served:
                return self._error(404, f"The model `{req.get('model')}` does not exist.")
            if self.path == "/v1/completions":
                prompt = str(req.get("prompt", ""))
            elif self.path == "/v1/chat/completions":
                prompt = " ".join(str(m.get("content", "")) for m in req.get("messages", []))
            else:
                return self._error(404, "Not Found")
            max_tokens = int(req.get("max_tokens") or 16)
            prompt_tokens = len(prompt.split())
            if prompt_tokens + max_tokens > max_len:
                return self._error(
                    400,
                    f"This model's maximum context length is {max_len} tokens. However, you "
                    f"requested {prompt_tokens + max_tokens} tokens.",
                )
            words = ("stand-in completion for: " + prompt).split()[:max_tokens]
            text = " " + " ".join(words)
            stats.record(len(words))
            usage = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(words),
                "total_tokens": prompt_tokens + len(words),
            }
            base = {"id": f"cmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": req["model"]}
            if self.path == "/v1/completions":
                choice = {"index": 0, "text": text, "finish_reason": "length"}
                return self._send(200, {**base, "object": "text_completion", "choices": [choice], "usage": usage})
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": text.strip()},
                "finish_reason": "length",
            }
            return self._send(200, {**base, "object": "chat.completion", "choices": [choice], "usage": usage})

    return Handler


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not (args.model or args.model_tag):
        print("error: a model is required (--model)", file=sys.stderr)
        return 2
    print(STANDIN_BANNER, flush=True)
    safe = {k: v for k, v in vars(args).items() if k != "api_key"}
    print(f"args: {safe}", flush=True)
    if os.environ.get("STANDIN_FAIL_START"):
        print("STANDIN_FAIL_START is set: failing start-up on purpose", file=sys.stderr, flush=True)
        return 1
    time.sleep(float(os.environ.get("STANDIN_STARTUP_DELAY", "0")))
    api_key = args.api_key or os.environ.get("VLLM_API_KEY") or None
    stats = Stats()
    server = QuietServer((args.host, args.port), make_handler(args, api_key, stats))
    # Like vLLM's server on SIGTERM (docker stop): stop accepting, finish the requests in flight, exit.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"serving on http://{args.host}:{args.port}", flush=True)
    server.serve_forever()
    server.server_close()
    finished = stats.wait_idle(timeout=25)
    print(f"stopped on SIGTERM; requests in flight {'finished' if finished else 'cut after 25 s'}", flush=True)
    return 0


class QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # A peer that resets its connection (a health check) is no error worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


if __name__ == "__main__":
    sys.exit(main())
