"""One process reserving from a shared rate as fast as it can, for the two-process limiter test.

    python -m tests.support.limiter_process URL KEY AMOUNT PERIOD SECONDS

Connects a `RedisRateLimiter` to URL (one warm-up round trip on another key), prints `ready`,
waits for a line on stdin, then calls `reserve` with `max_wait=0` for SECONDS on
`Rate(KEY, AMOUNT, PERIOD)` and prints one JSON line: `admitted`, `attempts`, the wall-clock
times (`time.time()`) of the first and last attempt, and whether the limiter stayed `shared`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from operators.llm.limits import Rate, RedisRateLimiter


async def hammer(limiter: RedisRateLimiter, rate: Rate, seconds: float) -> dict[str, object]:
    """Reserve one unit at a time with max_wait=0 until `seconds` have passed."""
    admitted = attempts = 0
    first = time.time()
    end = time.monotonic() + seconds
    last = first
    while time.monotonic() < end:
        last = time.time()
        attempts += 1
        if await limiter.reserve([(rate, 1)], max_wait=0) is not None:
            admitted += 1
    return {"admitted": admitted, "attempts": attempts, "first": first, "last": last}


async def main(args: argparse.Namespace) -> None:
    limiter = RedisRateLimiter(args.url, flow="test", timeout_seconds=2.0)
    warmup = Rate(f"{args.key}:warmup", 1e9, 1.0)
    await limiter.reserve([(warmup, 1)], max_wait=0)
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    result = await hammer(limiter, Rate(args.key, args.amount, args.period), args.seconds)
    result["shared"] = limiter.shared
    print(json.dumps(result), flush=True)
    await limiter.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("key")
    parser.add_argument("amount", type=float)
    parser.add_argument("period", type=float)
    parser.add_argument("seconds", type=float)
    asyncio.run(main(parser.parse_args()))
