"""Run the benchmarks: python -m bench [--only NAME ...] [--json FILE]."""

from __future__ import annotations

import argparse
import asyncio
import importlib
from pathlib import Path

from bench.common import Result, write_json

# memory first: its resident-memory figure must not include the other benchmarks' models
BENCHMARKS = [
    "memory",
    "overhead",
    "followup",
    "checkpoint",
    "batching",
    "raw_batching",
    "warm",
    "history",
    "throughput",
    "fairness",
    "retrieval",
    "recall",
    "fusion",
    "tools",
    "pictures",
]


def table(results: list[Result]) -> str:
    """The results as a text table."""
    lines = [f"{'figure':44} {'botkit':>12} {'baseline':>12} {'ratio':>8}  {'goal':10} result"]
    for r in results:
        lines.append(
            f"{r.figure:44} {r.botkit:>10.3g} {r.unit:>1} {r.baseline:>10.3g} {r.unit:>1} "
            f"{r.ratio:>8.3g}  {r.goal:10} {'pass' if r.passed else 'FAIL'}"
            + (f"  ({r.note})" if r.note else "")
        )
    return "\n".join(lines)


async def main(names: list[str]) -> list[Result]:
    """Run the named benchmarks in order."""
    results: list[Result] = []
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        print(f"running {name}…", flush=True)
        results += await module.run()
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--only", nargs="*", choices=BENCHMARKS, default=BENCHMARKS)
    parser.add_argument("--json", type=Path, default=Path("bench/results.json"))
    args = parser.parse_args()
    results = asyncio.run(main(args.only))
    print(table(results))
    write_json(results, args.json)
    print(f"written to {args.json}")
