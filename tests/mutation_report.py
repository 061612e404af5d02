"""The kill rate of `make mutation`: per module and overall, from `mutmut results --all true`.

What counts (mutmut's statuses, mutmut/stats.py):
- killed: a test failed ("killed"), the tests ran past mutmut's time limit ("timeout": the
  mutant made the code loop or crawl, which a test run notices), a test run crashed on it
  ("segfault"), or the type check refused it ("caught by type check").
- survived: every test passed ("survived"), no test runs the mutated code at all ("no tests":
  nothing would notice it either), or mutmut could not tell ("suspicious").
- left out of the rate: "skipped" and "not checked" (a run cut short); the latter is printed.

The rate is killed / (total - left out). It exits 1 when the rate over the gated modules (those
issue 25 names) is below --minimum (85% by default), 2 when mutmut has no results. The modules
mutated besides them (rollout, facts) are reported, and in the rate of all modules, not gated.

mutmut keeps a mutant's result until its function changes: a survivor stays one after the test
that kills it is written. So `make mutation` saves the survivors before `mutmut run`
(--save-survivors FILE), and --recheck FILE runs those that survive still again first (`mutmut
run NAME...`): the rate is that of today's tests.

    python -m tests.mutation_report --save-survivors FILE
    python -m tests.mutation_report [--recheck FILE [--max-children N] [--log FILE]] [--minimum 85] [--survivors]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

KILLED = {"killed", "timeout", "segfault", "caught by type check"}
SURVIVED = {"survived", "no tests", "suspicious"}
LEFT_OUT = {"skipped", "not checked", "check was interrupted by user"}

# The modules of issue 25, each reported as a whole (settings and monitoring are packages).
MODULES = (
    "vllm_fleet.settings",
    "vllm_fleet.rules",
    "vllm_fleet.exposure",
    "vllm_fleet.secret_checks",
    "vllm_fleet.machines",
    "vllm_fleet.sizing",
    "vllm_fleet.launch",
    "vllm_fleet.haproxy",
    "vllm_fleet.firewall",
    "vllm_fleet.checks",
    "vllm_fleet.monitoring",
    "vllm_fleet.rollout",
    "vllm_fleet.facts",
)
# The modules the kill rate must reach --minimum over: issue 25's list, and the rules issue 26 added.
GATED = tuple(m for m in MODULES if m not in ("vllm_fleet.rollout", "vllm_fleet.facts"))

# "    vllm_fleet.settings.types.x_check__mutmut_3: killed", or a method's "...xǁClassǁmethod__mutmut_1: ...".
_LINE = re.compile(r"^\s*(?P<name>(?P<module>[\w.]+?)\.x[_ǁ]\S*__mutmut_\d+): (?P<status>.+?)\s*$")


def module_of(dotted: str) -> str:
    """The reported module a mutant's module belongs to (a package's submodules to the package)."""
    for module in MODULES:
        if dotted == module or dotted.startswith(module + "."):
            return module
    return dotted


def parse(text: str) -> list[tuple[str, str, str]]:
    """(module, mutant, status) for each line of `mutmut results --all true`."""
    found = []
    for line in text.splitlines():
        match = _LINE.match(line)
        if match:
            found.append((module_of(match["module"]), match["name"], match["status"]))
    return found


def rate(counts: Counter[str]) -> tuple[int, int, float | None]:
    """(killed, counted, percent): counted is every mutant but the left-out ones."""
    killed = sum(counts[s] for s in KILLED)
    counted = sum(n for s, n in counts.items() if s not in LEFT_OUT)
    return killed, counted, (100.0 * killed / counted if counted else None)


def report(results: list[tuple[str, str, str]], minimum: float, list_survivors: bool = False) -> tuple[str, bool]:
    """The table, and whether the rate over the gated modules reaches the minimum."""
    by_module: dict[str, Counter[str]] = defaultdict(Counter)
    for module, _, status in results:
        by_module[module][status] += 1
    lines = [f"{'module':<24} {'killed':>7} {'counted':>8} {'rate':>7}  survivors, left out"]
    overall: Counter[str] = Counter()
    gated: Counter[str] = Counter()
    for module in sorted(by_module, key=lambda m: (MODULES.index(m) if m in MODULES else len(MODULES), m)):
        counts = by_module[module]
        overall.update(counts)
        if module in GATED:
            gated.update(counts)
        killed, counted, percent = rate(counts)
        shown = f"{percent:6.1f}%" if percent is not None else "     -"
        lost = ", ".join(f"{counts[s]} {s}" for s in sorted(SURVIVED | LEFT_OUT) if counts[s])
        lines.append(f"{module:<24} {killed:>7} {counted:>8} {shown:>7}  {lost}")
    killed, counted, percent = rate(gated)
    ok = percent is not None and percent >= minimum
    lines.append(f"{'gated modules':<24} {killed:>7} {counted:>8} {percent or 0:6.1f}%  (minimum {minimum:g}%)")
    killed, counted, percent = rate(overall)
    lines.append(f"{'all modules':<24} {killed:>7} {counted:>8} {percent or 0:6.1f}%  (not gated)")
    if overall["not checked"]:
        lines.append(f"{overall['not checked']} mutants not checked: the run was cut short; run `make mutation` again")
    if list_survivors:
        lines += ["", "survivors (mutmut show NAME):"]
        lines += [f"  {name}: {status}" for _, name, status in results if status in SURVIVED]
    return "\n".join(lines), ok


MUTMUT = str(Path(sys.executable).with_name("mutmut"))


def results_now() -> tuple[list[tuple[str, str, str]], str]:
    done = subprocess.run([MUTMUT, "results", "--all", "true"], capture_output=True, text=True, check=False)
    return parse(done.stdout), done.stderr if done.returncode else ""


def survivors(results: list[tuple[str, str, str]]) -> list[str]:
    return [name for _, name, status in results if status in SURVIVED]


def recheck(names: list[str], max_children: int, log: str) -> int:
    """Run these mutants again with today's tests; mutmut's output goes to log."""
    if not names:
        return 0
    print(f"checking the {len(names)} survivors of earlier runs again", file=sys.stderr)
    with open(log, "a") if log != "-" else open(os.devnull, "w") as out:
        done = subprocess.run(
            [MUTMUT, "run", "--max-children", str(max_children), *names], stdout=out, stderr=subprocess.STDOUT
        )
    return done.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minimum", type=float, default=85.0, help="the overall kill rate to reach, in percent")
    parser.add_argument("--survivors", action="store_true", help="list the surviving mutants too")
    parser.add_argument("--save-survivors", metavar="FILE", help="write the survivors' names, one a line, and stop")
    parser.add_argument("--recheck", metavar="FILE", help="run the survivors named in FILE again first")
    parser.add_argument("--max-children", type=int, default=1, help="mutmut's workers for --recheck")
    parser.add_argument("--log", default="-", help="where --recheck writes mutmut's output (- for nowhere)")
    args = parser.parse_args(argv)
    results, error = results_now()
    if args.save_survivors:
        Path(args.save_survivors).parent.mkdir(parents=True, exist_ok=True)
        Path(args.save_survivors).write_text("".join(f"{name}\n" for name in survivors(results)))
        return 0
    if args.recheck and results:
        earlier = set(Path(args.recheck).read_text().split()) if Path(args.recheck).exists() else set()
        if recheck([name for name in survivors(results) if name in earlier], args.max_children, args.log):
            print(f"mutmut run failed; see {args.log}", file=sys.stderr)
            return 2
        results, error = results_now()
    if error or not results:
        print(f"mutmut has no results (run `mutmut run` first): {error.strip()[-2000:]}", file=sys.stderr)
        return 2
    text, ok = report(results, args.minimum, args.survivors)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
