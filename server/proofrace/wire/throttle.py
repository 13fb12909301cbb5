"""Failed logins counted per peer address, across connections, with a growing back-off.

Per-connection counting alone lets a guesser reconnect and go on; here an address that fails
`max_failures` times is refused outright (every login answers `refused` unchecked, and the
connection is dropped) for `backoff_s`, doubling on each further failure up to `max_backoff_s`.
A success does not reset the count: a credential holder sharing the address with a guesser
must not be able to launder the guesses. The table is bounded: the oldest entries go first.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class _Record:
    failures: int = 0
    blocked_until: float = 0.0
    last: float = 0.0


class LoginThrottle:
    def __init__(
        self,
        max_failures: int = 10,
        backoff_s: float = 1.0,
        max_backoff_s: float = 300.0,
        forget_s: float = 3600.0,
        max_addresses: int = 4096,
    ) -> None:
        self._max_failures = max_failures
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._forget_s = forget_s
        self._max_addresses = max_addresses
        self._records: OrderedDict[str, _Record] = OrderedDict()

    def blocked(self, address: str) -> bool:
        record = self._records.get(address)
        return record is not None and time.monotonic() < record.blocked_until

    def failed(self, address: str) -> None:
        now = time.monotonic()
        record = self._records.pop(address, None)
        if record is None or now - record.last > self._forget_s:
            record = _Record()
        record.failures += 1
        record.last = now
        beyond = record.failures - self._max_failures
        if beyond >= 0:
            delay = min(self._backoff_s * 2 ** min(beyond, 30), self._max_backoff_s)
            record.blocked_until = now + delay
        self._records[address] = record  # most recent last
        while len(self._records) > self._max_addresses:
            self._records.popitem(last=False)
