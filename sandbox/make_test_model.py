"""Make the sandbox's TEST model: vllm-fleet-test-llama-tiny. Its answers are noise.

A Llama-architecture model with random weights (seeded) and a byte-level BPE tokenizer
trained on a fixed local text, with a chat template: about 1.4 M parameters, a few MB,
made with no hub. Real vLLM loads it and serves it through every endpoint, which is all
the tests need of a model. Run inside the sandbox's vLLM image (it has torch, transformers
and tokenizers):

    python3 make_test_model.py OUTPUT_DIR

The same image and script give the same files, byte for byte.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

NAME = "vllm-fleet-test-llama-tiny"
SEED = 20261123
VOCAB = 1024
# Head size 64: the CPU attention kernels refuse 16 ("Unsupported CPU attention configuration").
CONFIG = {
    "vocab_size": VOCAB,
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 8192,
    "tie_word_embeddings": True,
}
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIAL = ["<s>", "</s>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>"]


def corpus() -> list[str]:
    """A fixed text: the Zen of Python and a few lines of code, repeated with numbers."""
    import codecs
    import this  # noqa: F401  (prints the Zen; its text is rot13 in this.s)

    zen = codecs.decode(this.s, "rot13").splitlines()
    code = [f"def f{i}(n):\n    return n * {i} + {i * i}\n" for i in range(200)]
    return zen * 20 + code + [" ".join(str(i) for i in range(j, j + 30)) for j in range(300)]


def main(out: Path) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="</s>"
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)

    torch.manual_seed(SEED)
    config = LlamaConfig(
        **CONFIG,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        torch_dtype="bfloat16",
    )
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)
    (out / "README.md").write_text(
        f"# {NAME}\n\nA TEST model made by vllm-fleet's sandbox/make_test_model.py: random weights "
        "(seed {SEED}), a tokenizer trained on a few lines of local text. Its answers are noise. It exists so "
        "that real vLLM has a model to load where no hub can be reached.\n".replace("{SEED}", str(SEED))
    )
    print(json.dumps({"name": NAME, "files": sorted(p.name for p in out.iterdir())}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
