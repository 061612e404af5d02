"""The seed document's laptop command, which the laptop profile reproduces.

Copied verbatim (comments included) from the project's seed document
(shared/seeds/003_7cfecfcdaa3aa62f.txt, lines 69-81), so that the tests comparing against it
run in any clone rather than only where the seed documents sit beside the checkout.
"""

import re
import shlex

SEED_DOCKER_RUN = r"""docker run -d --name vllm-server \
  --gpus all \
  --shm-size=4g \        # ← REQUIRED: Shared memory
  --ipc=host \           # ← REQUIRED: IPC namespace
  -p 8000:8000 \
  -v ~/.cache/huggingface:/root/.cache/huggingface \
  vllm/vllm-openai:latest \
  --model TheBloke/deepseek-coder-6.7B-instruct-AWQ \
  --quantization awq \
  --gpu-memory-utilization 0.85 \
  --max-model-len 2048 \ # ← REQUIRED: Prevent OOM
  --max-num-seqs 16 \
  --disable-log-stats
"""
SEED_IMAGE = "vllm/vllm-openai:latest"


def seed_docker_command() -> list[str]:
    """The seed's `docker run` command, comments and line continuations removed."""
    lines = [re.sub(r"#.*$", "", line).rstrip().rstrip("\\") for line in SEED_DOCKER_RUN.splitlines()]
    return shlex.split(" ".join(lines))


_COMMAND = seed_docker_command()
# What the seed passes to vLLM: everything after the image.
SEED_VLLM_ARGS = _COMMAND[_COMMAND.index(SEED_IMAGE) + 1 :]
