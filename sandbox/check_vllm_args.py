"""Parse argument lists with the vLLM server's own parser, inside a vLLM image.

Reads {case: [arg, ...]} as JSON on stdin; prints {case: "ok" or the parser's complaint}.
Parsing builds no engine: it checks that every flag exists in this vLLM and takes the
value given, as the server's entrypoint does before it loads anything.
"""

import contextlib
import io
import json
import sys

from vllm.utils.argparse_utils import FlexibleArgumentParser

try:  # where vLLM keeps the server's arguments moved between releases
    from vllm.entrypoints.launchers.cli_args import make_arg_parser, validate_parsed_serve_args
except ImportError:
    from vllm.entrypoints.openai.cli_args import make_arg_parser, validate_parsed_serve_args


def check(argv: list[str]) -> str:
    complaint = io.StringIO()
    try:
        with contextlib.redirect_stderr(complaint):
            validate_parsed_serve_args(make_arg_parser(FlexibleArgumentParser()).parse_args(argv))
    except SystemExit:
        return complaint.getvalue().strip().splitlines()[-1]
    except Exception as exc:  # noqa: BLE001 - any refusal is the answer
        return f"{type(exc).__name__}: {exc}"
    return "ok"


print(json.dumps({case: check(argv) for case, argv in json.load(sys.stdin).items()}))
