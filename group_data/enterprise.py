"""Enterprise fleet: multi-GPU hosts behind a gateway, many concurrent clients.

Sizing picks the largest model with room for 8 full-length sequences, split over
the fewest GPUs it fits (on 2 x H100 80GB: the 72B instruct model with AWQ, tensor
parallel 2). 256 sequences at a 16384-token window serve many clients. Hosts
listen on all interfaces for the gateway, so VLLM_API_KEY is required (validation
refuses a public bind without it). 0.92 of each GPU: these cards run nothing else.
"""

phase = "enterprise"
vllm_gpu_memory_utilization = 0.92
vllm_max_model_len = 16384
vllm_max_num_seqs = 256
vllm_bind_address = "0.0.0.0"
