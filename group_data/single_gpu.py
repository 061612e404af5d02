"""Single-GPU server: one data-centre or workstation GPU (24-80 GB), a team's endpoint.

Sizing picks the largest model with room for 4 full-length sequences: on a 24 GB
card a 7B instruct model in bf16 (about 14 GiB of weights), on an 80 GB card a 32B
one. An 8192-token window and 64 sequences suit a team's chat and coding use;
0.90 of the GPU is vLLM's own default, safe when nothing else uses the card.
Bound to loopback by default: publish it (vllm_bind_address = "0.0.0.0") only
with VLLM_API_KEY set.
"""

phase = "single_gpu"
vllm_gpu_memory_utilization = 0.90
vllm_max_model_len = 8192
vllm_max_num_seqs = 64
vllm_bind_address = "127.0.0.1"
