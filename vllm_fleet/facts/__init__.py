"""How vllm-fleet reads a host: its pyinfra facts and their parsing, laid out as pyinfra lays out
its own (pyinfra.facts beside pyinfra.operations). What the deploy concludes from them lives
elsewhere (vllm_fleet.checks, vllm_fleet.gpus, the tasks).

- probe: pre-flight's HostProbe, one round trip for what the checks and tasks need (Probe).
- host: HostFacts, what the host's own tools say (GPU vendors, GPUs, machine), read for the plan.
- gpus: the PCI bus's GPU vendors and the GPUs nvidia-smi or rocm-smi lists.
- docker: the local image of a reference; daemon.json parsed.
- host_tools: what the deploy runs on the host, and who holds the package lock.
- distro: pyinfra's LinuxDistribution fact as a supported Distro.
"""
