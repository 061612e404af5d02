"""Laptop: one consumer GPU (the seed's RTX 4060, 8 GB), one user, loopback only.

Reproduces the seed command: sizing picks the model (vllm_model stays "auto"):
on an 8 GB card that is the 6.7B coding model quantized with AWQ (about 4 GB of
weights), with --quantization awq; a 2048-token window (1536 in + 512 out) so
the KV cache fits beside the weights, 16 sequences at most, and 0.85 of the GPU
so the desktop keeps some. A 16 GB card gets the 14B coder instead.
"""

phase = "laptop"
vllm_gpu_memory_utilization = 0.85
vllm_max_model_len = 2048
vllm_max_num_seqs = 16
# Per-step stats logging costs tokens/s on a small GPU and nobody reads it here.
vllm_extra_args = ["--disable-log-stats"]
vllm_bind_address = "127.0.0.1"
vllm_container_shm_size = "4g"
