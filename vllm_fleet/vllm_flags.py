"""vLLM's command-line flags as its own serve parser reads them, the ones a knob owns, and
arguments shown with their secrets hidden."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from importlib import resources
from typing import Any

# Flags a knob owns: passing them through vllm_extra_args would fight the knob
# (or, for --api-key, put a secret on a command line). The aliases are vLLM's own (its
# serve parser, read from vLLM 0.32's: tests/integration/test_vllm_args.py keeps them in step).
OWNED_FLAGS = {
    "--model": "vllm_model",
    "--served-model-name": "vllm_served_model_name",
    "--quantization": "vllm_quantization",
    "-q": "vllm_quantization",
    "--max-model-len": "vllm_max_model_len",
    "--gpu-memory-utilization": "vllm_gpu_memory_utilization",
    "--device-memory-utilization": "vllm_gpu_memory_utilization",
    "--max-num-seqs": "vllm_max_num_seqs",
    "--tensor-parallel-size": "vllm_tensor_parallel_size",
    "-tp": "vllm_tensor_parallel_size",
    "--kv-cache-memory-bytes": "vllm_kv_cache_gib",
    "--port": "vllm_port",
    "--host": "vllm_bind_address",
    "--api-key": "vllm_api_key",
    "--hf-token": "hf_token",
    # A cluster's members (vllm_fleet/cluster.py): vLLM's multi-node launch.
    "--nnodes": "vllm_cluster (its members)",
    "-n": "vllm_cluster (its members)",
    "--node-rank": "vllm_cluster_rank",
    "-r": "vllm_cluster_rank",
    "--master-addr": "vllm_cluster (its leader's fleet_address)",
    "--master-port": "vllm_cluster_port",
    "--headless": "vllm_cluster_rank (the members but the leader)",
    # A YAML file of arguments could set any of the flags above.
    "--config": "the knobs themselves (a config file could set the flags they own)",
}
SECRET_FLAGS = ("--api-key", "--hf-token")


def serve_flags(name: str = "vllm_serve_flags.txt") -> frozenset[str]:
    """Every option string of the pinned vLLM's serve parser (data/vllm_serve_flags.txt), or
    those that take no value (data/vllm_serve_switches.txt)."""
    text = resources.files("vllm_fleet").joinpath(f"data/{name}").read_text()
    return frozenset(line for line in text.splitlines() if line and not line.startswith("#"))


SERVE_FLAGS = serve_flags()
SWITCHES = serve_flags("vllm_serve_switches.txt")
# vLLM's --quantization methods, in its order (data/vllm_quantization_methods.txt).
QUANTIZATION_METHODS = tuple(
    line
    for line in resources.files("vllm_fleet").joinpath("data/vllm_quantization_methods.txt").read_text().splitlines()
    if line and not line.startswith("#")
)


def resolve(arg: str) -> str | None:
    """The option of vLLM's serve parser an argument names, as that parser reads it: underscores
    in a long name become dashes (up to a '.' of a sub-key), a unique prefix stands for its
    option (argparse's allow_abbrev, on in vLLM), a one-letter option takes its value attached
    (-qawq), a dotted sub-key its option. None for a value, an unknown or an ambiguous name (vLLM
    refuses those)."""
    if not arg.startswith("-") or len(arg) < 2 or arg[1].isdigit():
        return None
    # A sub-key (--compilation-config.backend, -cc.backend) sets part of its option's value:
    # vLLM folds it back into that option, abbreviated or not.
    name = arg.split("=", 1)[0].split(".", 1)[0]
    if name.startswith("--"):
        name = "--" + name[2:].replace("_", "-")
    elif name not in SERVE_FLAGS and name[:2] in SERVE_FLAGS:
        return name[:2]
    if name in SERVE_FLAGS:
        return name
    candidates = [flag for flag in SERVE_FLAGS if flag.startswith(name)]
    return candidates[0] if len(candidates) == 1 else None


def vllm_flag(arg: str) -> str | None:
    """The flag a knob owns that vLLM would read this argument as, else None."""
    flag = resolve(arg)
    return flag if flag in OWNED_FLAGS else None


def redact_args(args: Iterable[Any]) -> list:
    """Command-line arguments with the value of any secret-bearing flag (however vLLM would
    spell it) and anything that looks like a key hidden."""
    shown: list = []
    hide_next = False
    for arg in args:
        flag = vllm_flag(arg) if isinstance(arg, str) else None
        if flag in SECRET_FLAGS and "=" in arg:
            shown.append(arg.split("=", 1)[0] + "=<secret>")
        elif hide_next or looks_secret(arg):
            shown.append("<secret>")
        else:
            shown.append(arg)
        hide_next = flag in SECRET_FLAGS and "=" not in arg
    return shown


# Prefixes of the tokens operators paste: Hugging Face, OpenAI-style, GitHub, GitLab, Slack, AWS.
TOKEN_PREFIXES = ("hf_", "sk-", "ghp_", "gho_", "github_pat_", "glpat-", "xoxb-", "xoxp-", "AKIA")


def looks_secret(value: Any) -> bool:
    """A string that may be a key or token wherever it was put: a known token prefix, or a long
    run of letters and digits with no path, version or name punctuation."""
    if not isinstance(value, str) or len(value) < 16 or value.startswith("-") or any(c in value for c in "/.: "):
        return False
    if value.startswith(TOKEN_PREFIXES):
        return True
    return (
        len(value) >= 20
        and re.fullmatch(r"[A-Za-z0-9_+=-]+", value) is not None
        and any(c.isdigit() for c in value)
        and any(c.isalpha() for c in value)
        and len(set(value)) >= 10
    )


# vLLM features that run code or hand out what the container holds (the API key and the token are
# in its environment): each needs its name in vllm_allow. (feature, what it does, its flags; a flag
# with "=value" only with that value.)
RISKY_FEATURES = (
    (
        "remote_code",
        "runs Python from the model's repository, or Jinja templates a client sends, in the container",
        ("--trust-remote-code", "--trust-request-chat-template"),
    ),
    (
        "plugins",
        "imports Python modules or classes the argument names (plugins, middleware, logits processors, "
        "worker, scheduler, executor, model and extension classes, compilation backends and passes, transfer "
        "connectors, logging configuration)",
        (
            "--tool-parser-plugin",
            "--reasoning-parser-plugin",
            "--io-processor-plugin",
            "--logits-processors",
            "--middleware",
            "--worker-extension-cls",
            "--worker-cls",
            "--scheduler-cls",
            "--model-class-overrides",
            "--ec-manager-config",
            "--kv-transfer-config",
            "--ec-transfer-config",
            "--weight-transfer-config",
            "--log-config-file",
            "--logging-config",
        ),
    ),
    (
        "local_media",
        "lets clients have vLLM read files of the container (/proc/self/environ holds the API key)",
        ("--allowed-local-media-path",),
    ),
    ("dummy_weights", "serves random weights: every answer is noise", ("--load-format=dummy",)),
    (
        "prompt_logging",
        "writes clients' prompts and answers to the journal, which more people read than the API",
        ("--enable-log-requests", "--enable-log-outputs"),
    ),
)
RISKY_FEATURE_NAMES = tuple(name for name, _, _ in RISKY_FEATURES)
# Characters a pasted flag's dash may have become (an en dash from a document, a minus sign).
UNICODE_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"


def read_args(args: list[str]) -> list[tuple[str | None, str | None]]:
    """Arguments as vLLM's parser pairs them: (flag, its value or None) for each option, (None,
    word) for a positional word (vLLM takes it for the model, over --model). A word after an option
    that takes a value is that value; after a switch (data/vllm_serve_switches.txt) it is a
    positional; after an unknown option, its value (vLLM refuses the option anyway)."""
    read: list[tuple[str | None, str | None]] = []
    wants_value = False
    for arg in args:
        is_option = arg.startswith("-") and len(arg) > 1 and not arg[1].isdigit()
        if is_option:
            flag = resolve(arg) or arg.split("=", 1)[0]
            value = arg.split("=", 1)[1] if "=" in arg else None
            read.append((flag, value))
            wants_value = value is None and flag not in SWITCHES
        elif wants_value:
            read[-1] = (read[-1][0], arg)
            wants_value = False
        else:
            read.append((None, arg))
    return read


# The executors vLLM has (0.32's ParallelConfig): any other value is a class it imports by name.
EXECUTOR_BACKENDS = ("mp", "ray", "uni", "external_launcher")


def _imports_by_value(args: list[str]) -> str | None:
    """The option whose value has vLLM import Python by the name it gives, where other values of
    it do not: an executor class, a compilation backend ("module.function") or Inductor passes.
    Read from the arguments as written, as a dotted key (--compilation-config.backend=...) says
    which part of the option its value sets."""
    for index, arg in enumerate(args):
        key, equals, value = arg.partition("=")
        flag = resolve(key)
        if not equals:
            following = args[index + 1] if index + 1 < len(args) else ""
            value = "" if following.startswith("-") else following
        value = value.strip()
        if flag == "--distributed-executor-backend" and value and value not in EXECUTOR_BACKENDS:
            return flag
        if flag in ("--compilation-config", "-cc"):
            part = key.partition(".")[2]
            try:
                config = json.loads(value) if not part else {part.split(".")[0]: value}
            except json.JSONDecodeError:
                config = {"backend": value}  # vLLM refuses it; its words are all there is to read
            if isinstance(config, dict) and ("." in str(config.get("backend", "")) or config.get("inductor_passes")):
                return flag
    return None


def risky_features(args: list[str]) -> dict[str, str]:
    """Each risky feature the arguments turn on, with the argument that does."""
    found: dict[str, str] = {}
    for flag, value in read_args(args):
        for name, _, flags in RISKY_FEATURES:
            for risky in flags:
                option, _, wanted = risky.partition("=")
                if flag == option and (not wanted or (value or "").strip().lower() == wanted):
                    found.setdefault(name, f"{flag}={value}" if wanted else flag)
    by_value = _imports_by_value(args)
    if by_value:
        found.setdefault("plugins", by_value)
    return found
