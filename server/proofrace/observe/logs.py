"""structlog set-up: JSON lines when not on a terminal, readable lines when on one.

Logging stays off the critical path. Inside the event loop a log call only records its event,
its keywords, the instant and the context variables; rendering and writing happen later, in
one batch, once the loop has been free of new lines for a moment (at most a few tens of
milliseconds later under constant load). So when eight losers exit together, all eight are
reaped before the first line about them is rendered. Each line keeps the instant of its
call, not of its writing. Outside a running loop (start-up, shutdown) a line is written at
once, and whatever is still queued is written at exit.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import json
import logging
import sys
import time
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict

LogFormat = Literal["auto", "json", "console"]

# Written once no line has come for this long, and never later than the cap after the first.
_QUIET_S = 0.002
_CAP_S = 0.05
_STAMP = "_logged_ns"
# One encoder for every line: `json.dumps` with `default` set builds a new one per call.
_encode = json.JSONEncoder(default=repr).encode


class _Sink:
    """The one logger every bound logger writes to: a line at once, or gathered in a batch
    and written with one call."""

    def __init__(self, file: TextIO) -> None:
        self._file = file
        self._batch: list[str] | None = None

    def msg(self, message: str) -> None:
        if self._batch is not None:
            self._batch.append(message)
        else:
            self._file.write(message + "\n")
            self._file.flush()

    log = debug = info = warning = warn = error = critical = exception = fatal = msg

    def begin(self) -> None:
        self._batch = []

    def end(self) -> None:
        lines, self._batch = self._batch or [], None
        if lines:
            self._file.write("\n".join(lines) + "\n")
            self._file.flush()


_Record = tuple[Any, str, "str | None", dict[str, Any], contextvars.Context]


class _Queue:
    def __init__(self) -> None:
        self.sink = _Sink(sys.stderr)
        self._records: list[_Record] = []
        self._timer: asyncio.TimerHandle | None = None
        self._first = 0.0
        self._seen = 0

    def add(self, loop: asyncio.AbstractEventLoop, record: _Record) -> None:
        self._records.append(record)
        if self._timer is None:
            self._first = loop.time()
            self._seen = len(self._records)
            self._timer = loop.call_later(_QUIET_S, self._tick, loop)

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        # Lines came since the last look: wait for a quiet moment, up to the cap.
        if len(self._records) != self._seen and loop.time() - self._first < _CAP_S:
            self._seen = len(self._records)
            self._timer = loop.call_later(_QUIET_S, self._tick, loop)
            return
        self._timer = None
        self.flush()

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        records, self._records = self._records, []
        self.sink.begin()
        try:
            for logger, method, event, kw, context in records:
                context.run(logger.write_now, method, event, **kw)
        finally:
            self.sink.end()


_queue = _Queue()
atexit.register(_queue.flush)


def flush() -> None:
    """Write every queued line now."""
    _queue.flush()


def _deferred(base: type[Any]) -> type[Any]:
    class Deferred(base):  # type: ignore[misc]
        def _proxy_to_logger(self, method_name: str, event: str | None = None, **kw: Any) -> Any:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return self.write_now(method_name, event, **kw)
            kw[_STAMP] = time.time_ns()
            _queue.add(loop, (self, method_name, event, kw, contextvars.copy_context()))
            return None

        def write_now(self, method_name: str, event: str | None = None, **kw: Any) -> Any:
            return super()._proxy_to_logger(method_name, event, **kw)

    return Deferred


class _Clock:
    """ISO 8601 UTC with microseconds; the date and time up to the second change rarely."""

    second = -1
    prefix = ""

    def stamp(self, ns: int) -> str:
        second, fraction = divmod(ns, 1_000_000_000)
        if second != self.second:
            self.second = second
            self.prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self.prefix}.{fraction // 1000:06d}Z"


_clock = _Clock()


def _timestamp(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    """The instant of the call (not of the writing)."""
    event_dict["timestamp"] = _clock.stamp(event_dict.pop(_STAMP, None) or time.time_ns())
    return event_dict


def _json_line(logger: Any, method: str, event_dict: EventDict) -> str:
    """Level, instant, exception text and JSON rendering in one step: a log line's whole cost
    is paid when the batch is written, so it is kept small."""
    event_dict["level"] = "warning" if method == "warn" else method
    _timestamp(logger, method, event_dict)
    if "exc_info" in event_dict:
        event_dict = structlog.processors.format_exc_info(logger, method, event_dict)
    return _encode(event_dict)


def configure(log_format: LogFormat = "auto", level: str = "info") -> None:
    use_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    processors: list[structlog.typing.Processor] = [structlog.contextvars.merge_contextvars]
    if use_json:
        processors.append(_json_line)
    else:
        processors += [
            structlog.processors.add_log_level,
            _timestamp,
            structlog.processors.format_exc_info,
            structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()),
        ]
    _queue.flush()
    _queue.sink = _Sink(sys.stderr)
    structlog.configure(
        processors=processors,
        wrapper_class=_deferred(
            structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()])
        ),
        logger_factory=lambda *_args: _queue.sink,
        cache_logger_on_first_use=True,
    )
