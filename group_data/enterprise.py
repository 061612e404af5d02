"""Enterprise fleet: multi-GPU hosts behind a gateway, many concurrent clients.

A 32B instruct model quantized with AWQ (about 19 GB of weights) split across
two GPUs leaves most of each card for KV cache: 256 sequences at a 16384-token
window. Hosts listen on all interfaces for the gateway, so VLLM_API_KEY is
required (validation refuses a public bind without it). 0.92 of each GPU: these
cards run nothing else.
"""

phase = "enterprise"
vllm_model = "Qwen/Qwen2.5-32B-Instruct-AWQ"
vllm_quantization = "awq_marlin"
vllm_gpu_memory_utilization = 0.92
vllm_max_model_len = 16384
vllm_max_num_seqs = 256
vllm_tensor_parallel_size = 2
vllm_bind_address = "0.0.0.0"
