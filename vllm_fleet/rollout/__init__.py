"""python -m vllm_fleet rollout: a fleet brought to its new settings in verified batches.

Plan every host first (one invalid host refuses the whole rollout), bring the gateways and
monitoring hosts up to date, then deploy the canary hosts and the rest in batches with pyinfra's own CLI
(`--limit`), each batch drained before it restarts at the gateways that front its hosts,
verified with the verify suite, and put back in rotation only once it verifies. A batch whose
failures take the count past --max-failures stops the rollout: later hosts are not touched. A
host that does not come up goes back to its previous release by itself
(templates/vllm-activate.sh.j2).

Every step has a time limit. A step that passes it, Ctrl-C, or any other error stops the
rollout with the interrupted batch's hosts failed, saying which step; the hosts it left drained
are put back into rotation (or named in the report as left drained), and the table and the
JUnit report are written all the same.

plans reads what the rollout needs of each host's plan, batches sizes the batches, state is what
a run keeps, runner runs pyinfra and the verify suite and reads their results, run is the
rollout itself (main) and report its table and JUnit file.
"""
