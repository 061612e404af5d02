"""A client that keeps sending completions through an endpoint (the gateway) and counts
what came back, for the rollout tests and benchmark. Bounded: it stops when told, or after
max_seconds, whichever comes first, and only ever talks to the address it is given."""

from __future__ import annotations

import json
import threading
import time
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
    crashed: str = ""  # why the sending thread ended other than by being told or timing out
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _send(self) -> None:
        body = json.dumps({"model": self.model, "prompt": "def fibonacci(n):", "max_tokens": 8}).encode()
        request = urllib.request.Request(
            f"{self.url}/v1/completions",
            data=body,
            headers={"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"},
        )
        # Whatever breaks a request counts as its failure (a connection cut mid-answer raises
        # http.client.IncompleteRead, an empty choices list IndexError), never as the client's end.
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                ok = response.status == 200 and bool(json.load(response)["choices"][0]["text"])
        except Exception as exc:
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
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                self._send()
        except Exception as exc:  # kept for failures(): a thread's own traceback reaches no test
            self.crashed = f"{type(exc).__name__}: {exc}"

    def failures(self) -> list[str]:
        """Everything that makes "no request failed" untrue: failed requests, a sending thread that
        died or did not stop, or one that never got an answer through."""
        found = [f"{self.failed} requests failed: {self.errors}"] if self.failed else []
        if self.crashed:
            found.append(f"the client's thread died: {self.crashed}")
        if self._thread is None or self._thread.is_alive():
            found.append("the client's thread did not run to its end")
        if not self.served:
            found.append("no request was served")
        return found

    def __enter__(self) -> Traffic:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=60)
