"""Merging identical calls in flight on one event loop."""

from __future__ import annotations

import asyncio

import pytest

from operators.llm.singleflight import SingleFlight


def test_concurrent_callers_of_a_key_share_one_run() -> None:
    started: list[str] = []

    async def work(key: str) -> str:
        started.append(key)
        await asyncio.sleep(0.01)
        return key.upper()

    async def main() -> list[tuple[str, bool]]:
        flight: SingleFlight[str, str] = SingleFlight()
        calls = [flight.run(k, lambda k=k: work(k)) for k in ("a", "a", "b", "a")]
        results = await asyncio.gather(*calls)
        assert len(flight) == 0 and "a" not in flight
        return results

    assert asyncio.run(main()) == [("A", False), ("A", True), ("B", False), ("A", True)]
    assert started == ["a", "b"]


def test_a_finished_key_runs_again() -> None:
    runs = 0

    async def work() -> int:
        nonlocal runs
        runs += 1
        return runs

    async def main() -> None:
        flight: SingleFlight[str, int] = SingleFlight()
        assert await flight.run("k", work) == (1, False)
        assert await flight.run("k", work) == (2, False)

    asyncio.run(main())


def test_an_error_reaches_every_caller() -> None:
    async def work() -> int:
        await asyncio.sleep(0.01)
        raise ValueError("boom")

    async def main() -> list[object]:
        flight: SingleFlight[str, int] = SingleFlight()
        return await asyncio.gather(
            *(flight.run("k", work) for _ in range(3)), return_exceptions=True
        )

    outcomes = asyncio.run(main())
    assert all(isinstance(o, ValueError) for o in outcomes)


def test_cancelling_one_caller_leaves_the_run_to_the_others() -> None:
    async def work() -> str:
        await asyncio.sleep(0.05)
        return "done"

    async def main() -> tuple[str, bool]:
        flight: SingleFlight[str, str] = SingleFlight()
        first = asyncio.ensure_future(flight.run("k", work))
        await asyncio.sleep(0)
        second = asyncio.ensure_future(flight.run("k", work))
        await asyncio.sleep(0.01)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        return await second

    assert asyncio.run(main()) == ("done", True)
