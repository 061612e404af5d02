"""The human-readable form of `python -m vllm_fleet plan`."""

from __future__ import annotations

import shlex


def render(plans: dict[str, dict]) -> str:
    blocks = []
    for name, plan in plans.items():
        if plan.get("role") == "gateway":
            backends = ", ".join(f"{host} ({address})" for host, address in plan["backends"].items())
            heading = f"{name}  (gateway: HAProxy on {plan['listen']}, auth {plan['auth']})"
            blocks.append(f"{heading}\n  backends:  {backends}")
            continue
        if plan.get("role") == "monitoring":
            lines = [
                f"{name}  (monitoring: Prometheus on {plan['listen']['prometheus']}, "
                f"Alertmanager on {plan['listen']['alertmanager']})"
            ]
            lines += [f"  {job + ':':<13} {', '.join(targets)}" for job, targets in plan["targets"].items()]
            lines.append(f"  alerts:       {', '.join(plan['alerts'])}")
            lines.append(f"  receivers:    {', '.join(plan['receivers'])}")
            lines += [f"  warning:      {w}" for w in plan["warnings"]]
            blocks.append("\n".join(lines))
            continue
        if "settings" not in plan:
            blocks.append(f"{name}\n  REFUSED: {plan['refused']}")
            continue
        lines = [f"{name}  (phase {plan['phase']}, accelerator {plan['accelerator']}, {plan['serving_method']})"]
        width = max(len(k) for k in plan["settings"])
        for key, entry in plan["settings"].items():
            lines.append(f"  {key:<{width}}  {entry['value']!r:<45} {entry['source']}")
        lines.append(f"  vLLM:      vllm serve {shlex.join(plan['vllm_args'])}")
        lines.append(f"  container: docker run {shlex.join(plan['container_args'])} {plan['image']}")
        memory = plan["memory"]
        if memory:
            lines.append(
                f"  memory:    {memory['minimum_per_gpu_gib']} GiB of {memory['budget_per_gpu_gib']} GiB per GPU "
                f"(weights {memory['weights_per_gpu_gib']} + overhead {memory['overhead_per_gpu_gib']} + one "
                f"full-length sequence of KV), {memory['full_length_sequences']} full-length sequences fit; "
                f"GPUs: {memory['gpus']['count']} x {memory['gpus']['memory_gib']} GiB ({memory['gpus']['source']})"
            )
        lines += [f"  warning:   {w}" for w in plan["warnings"]]
        if plan["refused"]:
            lines.append(f"  REFUSED:   {plan['refused']}")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)
