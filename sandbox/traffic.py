"""A client that keeps sending completions through an endpoint (the gateway) and counts
what came back, for the rollout tests and benchmark. Bounded: it stops when told, or after
max_seconds, whichever comes first, and only ever talks to the address it is given."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field


@dataclass
class Traffic:
    url: str  # the endpoint's base, e.g. http://127.0.0.1:18151
    api_key: str
    model: str
    max_seconds: float = 900
    served: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _send(self) -> None:
        body = json.dumps({"model": self.model, "prompt": "def fibonacci(n):", "max_tokens": 8}).encode()
        request = urllib.request.Request(
            f"{self.url}/v1/completions",
            data=body,
            headers={"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                ok = response.status == 200 and json.load(response)["choices"][0]["text"]
        except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
            ok, reason = False, f"{type(exc).__name__}: {exc}"
        else:
            reason = "" if ok else "an answer without a completion"
        if ok:
            self.served += 1
        else:
            self.failed += 1
            if len(self.errors) < 20:
                self.errors.append(f"{time.strftime('%H:%M:%S')} {reason}")

    def _loop(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            self._send()

    def __enter__(self) -> Traffic:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=60)
