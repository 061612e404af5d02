"""The seed document's laptop command (../shared/seeds/003_...), which the laptop profile reproduces."""

from pathlib import Path

SEED = Path(__file__).resolve().parents[2] / "shared" / "seeds" / "003_7cfecfcdaa3aa62f.txt"
SEED_VLLM_ARGS = [
    "--model",
    "TheBloke/deepseek-coder-6.7B-instruct-AWQ",
    "--quantization",
    "awq",
    "--gpu-memory-utilization",
    "0.85",
    "--max-model-len",
    "2048",
    "--max-num-seqs",
    "16",
    "--disable-log-stats",
]
