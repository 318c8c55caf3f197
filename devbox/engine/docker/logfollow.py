"""Following a box's log with a deadline: the stream is read on a thread, lines come out here."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterator

from devbox.engine.docker.api import Response, demux


class LogFollower:
    """Log lines from a follow stream, read in a thread so the reader can keep a deadline."""

    _EOF = object()

    def __init__(self, response: Response, tty: bool) -> None:
        self._response = response
        self._chunks = response.chunks() if tty else demux(response.chunks())
        self._queue: queue.Queue[object] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        for chunk in self._chunks:
            self._queue.put(chunk)
        self._queue.put(self._EOF)

    def lines(self, deadline: float, tick: float = 0.25) -> Iterator[str | None]:
        """Complete lines as they come; None every `tick` s of silence; ends at EOF or deadline."""
        buffer = b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                item = self._queue.get(timeout=min(tick, remaining))
            except queue.Empty:
                yield None
                continue
            if item is self._EOF:
                if buffer:
                    yield buffer.decode("utf-8", "replace")
                return
            assert isinstance(item, bytes)
            buffer += item
            *complete, buffer = buffer.split(b"\n")
            for line in complete:
                yield line.decode("utf-8", "replace")

    def close(self) -> None:
        """Stop following, waiting at most a second for the stream to let go."""
        # Closing a stream another thread is reading can block (docker-py's urllib3 response)
        # or raise (its SSH transport); neither may hold devbox up, so close on the side.
        closer = threading.Thread(target=self._close_quietly, daemon=True)
        closer.start()
        closer.join(timeout=1.0)

    def _close_quietly(self) -> None:
        with contextlib.suppress(Exception):
            self._response.close()
