"""`PerLoop`: one client per event loop, closed when the loop's runner closes."""

from __future__ import annotations

from operators.runtime.per_loop import PerLoop
from operators.runtime.runner import AsyncRunner


class Client:
    def __init__(self) -> None:
        self.closed = False

    async def close(self) -> None:
        self.closed = True


async def _get(clients: PerLoop[Client]) -> Client:
    return clients.get()


def test_each_loop_gets_its_own_client_and_the_runner_closes_it() -> None:
    clients = PerLoop(Client, close=Client.close)
    one, two = (
        AsyncRunner(max_concurrency=2, call_timeout=5),
        AsyncRunner(max_concurrency=2, call_timeout=5),
    )
    first, again, other = one.run(_get(clients)), one.run(_get(clients)), two.run(_get(clients))
    assert first is again and first is not other
    one.close()
    assert first.closed and not other.closed
    two.close()
    assert other.closed


def test_aclose_forgets_the_client_so_the_next_use_makes_a_new_one() -> None:
    clients = PerLoop(Client, close=Client.close)
    with AsyncRunner(max_concurrency=1, call_timeout=5) as runner:
        first = runner.run(_get(clients))
        runner.run(clients.aclose())
        assert first.closed and runner.run(_get(clients)) is not first
