"""SDK calls the waiting side can abandon: the adapters' async clients on one event-loop thread.

A blocking SDK call cannot be stopped from outside: its thread sits in a socket read until the
reply or the HTTP timeout (minutes). The async client's call is a task instead: on cancel or at the
step's deadline the waiting thread cancels it, which aborts the request (the connection is closed),
and the step ends at once. The loop thread is a daemon and is stopped by `close()`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from orchestr.interruption import Interrupted, Stop, wait_future

T = TypeVar("T")


class EventLoopThread:
    def __init__(self, name: str) -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _running(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=loop.run_forever, name=self._name, daemon=True)
                self._thread.start()
                self._loop = loop
            return self._loop

    def call(self, start: Callable[[], Coroutine[Any, Any, T]], stop: Stop) -> T:
        """Run `start()` on the loop; on Interrupted its task is cancelled (the request aborted)."""
        future = asyncio.run_coroutine_threadsafe(start(), self._running())
        try:
            return wait_future(future, stop)
        except Interrupted:
            future.cancel()
            raise

    def close(self, finish: Callable[[], Awaitable[object]] | None = None) -> None:
        """Run `finish()` (closing the client) on the loop, then stop the loop and its thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        if finish is not None:
            async def _finish() -> None:
                await finish()

            asyncio.run_coroutine_threadsafe(_finish(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
