"""The README's picture of the fleet's key graphs, drawn from a sandbox's real Prometheus
(`make graphs`: a sandbox with a monitoring host, deployed). It sends completions to every host
for a while, stops vLLM on one host for a minute (its VllmNotServing alert fires), starts it again
and waits until it serves, then plots what Prometheus recorded over that time, with the queries of
the Grafana dashboard.

    python -m sandbox.graphs [--minutes 2] [--out docs/img/fleet-graphs.png]
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

from sandbox.sandbox import REPO, STATE
from sandbox.traffic import Traffic

# (title, unit, [(PromQL, legend label)]): the dashboard's queries, without its variables.
PANELS = [
    ("Requests finished / s", "req/s", [("sum by (host) (rate(vllm:request_success_total[1m]))", "{host}")]),
    ("Tokens generated / s", "tokens/s", [("sum by (host) (rate(vllm:generation_tokens_total[1m]))", "{host}")]),
    (
        "Time to first token, p95",
        "s",
        [
            (
                "histogram_quantile(0.95, sum by (host, le) (rate(vllm:time_to_first_token_seconds_bucket[1m])))",
                "{host}",
            )
        ],
    ),
    (
        "Requests running and waiting",
        "requests",
        [
            ("sum by (host) (vllm:num_requests_running)", "running {host}"),
            ("sum by (host) (vllm:num_requests_waiting)", "waiting {host}"),
        ],
    ),
    ("vLLM scraped (up)", "", [('up{job="vllm"}', "{host}")]),
    ("Alerts firing", "", [('count by (alertname, host) (ALERTS{alertstate="firing"})', "{alertname} {host}")]),
]


def on_host(name: str, command: str) -> str:
    return subprocess.run(["docker", "exec", name, "sh", "-c", command], capture_output=True, text=True).stdout


def query_range(monitor: str, query: str, start: float, end: float, step: int) -> list[dict]:
    params = urllib.parse.urlencode({"query": query, "start": start, "end": end, "step": step})
    answer = json.loads(
        on_host(monitor, f"curl -sf {shlex.quote('http://127.0.0.1:9090/api/v1/query_range?' + params)}")
    )
    return answer["data"]["result"]


def wait_until(what: str, test, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not test():
        if time.monotonic() > deadline:
            sys.exit(f"[graphs] {what}: not within {timeout:.0f} s")
        time.sleep(5)


def plot(monitor: str, start: float, end: float, stopped: str, hosts: int, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    step = 5
    figure, axes = plt.subplots(3, 2, figsize=(12, 9), sharex=True)
    for axis, (title, unit, queries) in zip(axes.flat, PANELS, strict=True):
        for query, legend in queries:
            for series in query_range(monitor, query, start, end, step):
                times, values = [], []
                for t, v in series["values"]:
                    if times and float(t) - start - times[-1] * 60 > 2 * step:
                        times.append(float("nan"))  # no samples: a gap, not a line across it
                        values.append(float("nan"))
                    times.append((float(t) - start) / 60)
                    values.append(float(v))
                axis.plot(times, values, label=legend.format(**series["metric"]))
        axis.set_title(title)
        axis.set_ylabel(unit)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7, loc="upper left")
    for axis in axes[-1]:
        axis.set_xlabel("minutes")
    figure.suptitle(
        f"The sandbox fleet as its Prometheus recorded it: real vLLM (CPU build) on {hosts} hosts, "
        f"vLLM on {stopped} stopped for a minute, then started again",
        fontsize=10,
    )
    figure.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=90)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=2, help="of traffic before the stop, and after the restart")
    parser.add_argument("--out", default=str(REPO / "docs" / "img" / "fleet-graphs.png"))
    parser.add_argument("--replot", type=float, metavar="MINUTES", help="only plot the last MINUTES, sending nothing")
    args = parser.parse_args()
    state = json.loads((STATE / "hosts.json").read_text())
    if not state.get("monitors"):
        sys.exit("[graphs] the sandbox has no monitoring host: make sandbox-up MONITORS=1 and deploy first")
    monitor = state["monitors"][0]["name"]
    api_key = Path(state["api_key_file"]).read_text().strip()
    plan = json.loads(
        subprocess.run(
            [sys.executable, "-m", "vllm_fleet", "plan", "inventories/sandbox.py", "--format", "json"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )["hosts"]
    serving = 'count(up{job="vllm"} == 1)'

    def hosts_up() -> int:
        result = query_range(monitor, serving, time.time() - 1, time.time(), 1)
        return int(float(result[0]["values"][-1][1])) if result else 0

    stopped = state["hosts"][-1]["name"]
    if args.replot:
        end = time.time()
        plot(monitor, end - args.replot * 60, end, stopped, len(state["hosts"]), args.out)
        return 0
    wait_until("every vLLM host scraped", lambda: hosts_up() == len(state["hosts"]), 600)
    phase = args.minutes * 60
    start = time.time()
    clients = [
        Traffic(f"http://127.0.0.1:{h['http_port']}", api_key, plan[h["name"]]["served_model_name"], 3600)
        for h in state["hosts"]
    ]
    for client in clients:
        client.__enter__()
    try:
        time.sleep(phase)
        print(f"[graphs] stopping vLLM on {stopped} for a minute")
        on_host(stopped, "systemctl stop vllm.service")
        time.sleep(60)
        on_host(stopped, "systemctl start vllm.service")
        wait_until(f"{stopped} scraped again", lambda: hosts_up() == len(state["hosts"]), 900)
        print(f"[graphs] {stopped} serves again")
        time.sleep(phase)
    finally:
        for client in clients:
            client.__exit__()
    end = time.time()
    plot(monitor, start, end, stopped, len(clients), args.out)
    print(f"[graphs] {sum(c.served for c in clients)} completions served; wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
