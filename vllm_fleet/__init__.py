"""vllm-fleet: deploy vLLM on GPU hosts with pyinfra, and prove each host works."""
