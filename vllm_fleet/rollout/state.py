"""What a rollout keeps while it runs: each host's result, the batches, the hosts left drained at
the gateways, and the step under way (for the reason when something stops it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from vllm_fleet.rollout.plans import DEPLOY_MARGIN, PlannedHost

CHANGED, UNCHANGED, FAILED, ROLLED_BACK, UNREACHABLE, NOT_STARTED = (
    "changed",
    "unchanged",
    "failed",
    "rolled back",
    "unreachable",
    "not started",
)
SERVING = (CHANGED, UNCHANGED)


@dataclass
class HostResult:
    name: str
    batch: int
    state: str = NOT_STARTED
    reason: str = ""
    seconds: float = 0.0


@dataclass
class Rollout:
    inventory: str
    batches: list[list[str]]
    gateways: dict[str, list[str]]  # each gateway and the vLLM hosts it fronts
    drain_timeout: int
    max_failures: int
    say: Callable[[str], None] = print
    deploy_limits: dict[str, int] = field(default_factory=dict)  # host: seconds its deploy may take
    verify_timeout: int | None = None  # seconds the verify suite may take per batch; None: verify_limit
    monitors: list[str] = field(default_factory=list)  # monitoring hosts, brought up to date with the gateways
    results: dict[str, HostResult] = field(default_factory=dict)
    stopped: str = ""
    drained: dict[str, set[str]] = field(default_factory=dict)  # host: gateways it may be drained at
    batch: int = 0  # the batch under way, 0 between batches
    step: str = ""  # the step under way, for the reason when it does not end by itself
    interrupted: BaseException | None = None

    def __post_init__(self):
        for number, batch in enumerate(self.batches, 1):
            for name in batch:
                self.results[name] = HostResult(name, number)

    @property
    def failures(self) -> int:
        return sum(r.state in (FAILED, ROLLED_BACK) for r in self.results.values())

    @property
    def completed(self) -> bool:
        return all(r.state in SERVING for r in self.results.values())

    @property
    def left_drained(self) -> dict[str, list[str]]:
        return {name: sorted(at) for name, at in self.drained.items() if at}

    def deploy_limit(self, names: list[str]) -> int:
        # pyinfra deploys a batch's hosts side by side: the slowest one sets the limit.
        unplanned = PlannedHost().deploy_limit
        return max((self.deploy_limits.get(name, unplanned) for name in names), default=DEPLOY_MARGIN)
