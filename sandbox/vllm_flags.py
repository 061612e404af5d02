"""The vLLM serve parser's flags, read inside a vLLM image: {flag: dest} for every option, the
options that take no value (switches: a word after one is vLLM's positional model), its
quantization methods, and
for each argument list on stdin ({case: [arg, ...]}) the settings it changes from the defaults
(or the parser's complaint), so a test can see how vLLM itself reads a spelling."""

import contextlib
import io
import json
import sys

from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS
from vllm.utils.argparse_utils import FlexibleArgumentParser

try:  # where vLLM keeps the server's arguments moved between releases
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
except ImportError:
    from vllm.entrypoints.openai.cli_args import make_arg_parser

parser = make_arg_parser(FlexibleArgumentParser())
defaults = vars(parser.parse_args([]))


def changed(argv: list[str]) -> dict | str:
    complaint = io.StringIO()
    try:
        with contextlib.redirect_stderr(complaint):
            parsed = vars(parser.parse_args(argv))
    except SystemExit:
        return complaint.getvalue().strip().splitlines()[-1]
    return {dest: str(value) for dest, value in parsed.items() if value != defaults.get(dest)}


options = {flag: action.dest for action in parser._actions for flag in action.option_strings}
switches = sorted(flag for action in parser._actions if action.nargs == 0 for flag in action.option_strings)
cases = {case: changed(argv) for case, argv in json.load(sys.stdin).items()}
quantization = list(QUANTIZATION_METHODS)
print(json.dumps({"options": options, "switches": switches, "quantization": quantization, "cases": cases}))
