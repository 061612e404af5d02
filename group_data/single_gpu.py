"""Single-GPU server: one data-centre or workstation GPU (24-80 GB), a team's endpoint.

A 7B instruct model in bf16 (about 15 GB of weights) leaves room for a KV cache
of 64 sequences at an 8192-token window on a 24 GB card; 0.90 of the GPU is
vLLM's own default, safe when nothing else uses the card. Bound to loopback by
default: publish it (vllm_bind_address = "0.0.0.0") only with VLLM_API_KEY set.
"""

phase = "single_gpu"
vllm_model = "Qwen/Qwen2.5-7B-Instruct"
vllm_gpu_memory_utilization = 0.90
vllm_max_model_len = 8192
vllm_max_num_seqs = 64
vllm_bind_address = "127.0.0.1"
