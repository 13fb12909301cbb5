"""One progress bar for the whole run (on stderr): what is running, and how far along it is."""

from __future__ import annotations

from types import TracebackType

from tqdm import tqdm


class Progress:
    def __init__(self, total: int) -> None:
        self._bar = tqdm(total=total, unit="step", dynamic_ncols=True, smoothing=0.05)

    def section(self, label: str) -> None:
        self._bar.set_postfix_str(label[-48:], refresh=True)

    def step(self, count: int = 1) -> None:
        self._bar.update(count)

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._bar.close()
