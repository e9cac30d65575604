"""Micro-batching for the server: requests that arrive close together are predicted in one model call.

A single worker takes the first waiting request, then keeps collecting until the batch holds
`max_batch_size` inputs or `max_wait_s` has passed, runs the model once (in a thread, so the event loop
keeps accepting requests) and hands each request its own slice of the results. One worker means the
model is never called from two threads at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PredictRows = Callable[[list[dict[str, Any]]], list[dict[str, Any]]]


@dataclass
class _Request:
    rows: list[dict[str, Any]]
    future: asyncio.Future[list[dict[str, Any]]]


@dataclass
class MicroBatcher:
    predict: PredictRows
    max_batch_size: int = 32
    max_wait_s: float = 0.01
    batches: list[int] = field(default_factory=list)
    """Inputs per model call so far (what /info reports as batching statistics)."""

    def __post_init__(self) -> None:
        self._queue: asyncio.Queue[_Request] | None = None
        self._worker: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    async def submit(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The predictions for `rows` (one request), computed together with whatever else is waiting."""
        assert self._queue is not None, "MicroBatcher.start() was not called"
        future: asyncio.Future[list[dict[str, Any]]] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Request(rows, future))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        loop = asyncio.get_running_loop()
        while True:
            requests = [await self._queue.get()]
            size = len(requests[0].rows)
            deadline = time.monotonic() + self.max_wait_s
            while size < self.max_batch_size:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    request = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
                requests.append(request)
                size += len(request.rows)
            rows = [row for request in requests for row in request.rows]
            try:
                predictions = await loop.run_in_executor(None, self.predict, rows)
            except (
                Exception
            ) as error:  # one bad batch answers its requests with the error, the server goes on
                for request in requests:
                    if not request.future.done():
                        request.future.set_exception(error)
                continue
            self.batches.append(len(rows))
            start = 0
            for request in requests:
                if not request.future.done():
                    request.future.set_result(predictions[start : start + len(request.rows)])
                start += len(request.rows)
