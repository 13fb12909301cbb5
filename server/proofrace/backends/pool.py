"""Spreading attempts over places with slots: this machine, and workers that come and go.

The pool is itself a Backend. Each attempt goes to the place that offers its prover and has
the most free slots, so a race spreads out. When no place has a free slot, or none offers the
prover any more (its workers drained or were lost), the attempt waits for one: still
cancellable, and bounded by the race's deadline.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace

from proofrace.backends.base import Backend, not_started
from proofrace.core.cancel import CancelScope
from proofrace.core.model import AttemptResult, Problem, ProverInfo
from proofrace.core.progress import AttemptProgress


@dataclass(eq=False)
class Place:
    name: str
    backend: Backend
    slots: int  # attempts at once; < 0 for no limit
    in_use: int = 0
    provers: frozenset[str] = field(default_factory=frozenset)

    @property
    def free(self) -> float:
        return float("inf") if self.slots < 0 else self.slots - self.in_use

    def refresh(self) -> None:
        self.provers = frozenset(i.name for i in self.backend.catalog() if i.available)


class Pool:
    def __init__(self, known: list[ProverInfo] | None = None) -> None:
        """`known`: provers to list (as unavailable) even while no place runs them."""
        self._known = [replace(info, available=False) for info in known or []]
        self._places: list[Place] = []
        self._catalog: list[ProverInfo] | None = None  # merged once per change of places
        self._changed = asyncio.Event()
        self.waiting = 0  # attempts waiting for a free slot

    @property
    def slots(self) -> int:
        """Slots of every place with a limit (for the metrics)."""
        return sum(p.slots for p in self._places if p.slots >= 0)

    @property
    def slots_busy(self) -> int:
        return sum(p.in_use for p in self._places if p.slots >= 0)

    def add(self, place: Place) -> None:
        place.refresh()
        self._places.append(place)
        self._catalog = None
        self._wake()

    def remove(self, place: Place) -> None:
        if place in self._places:
            self._places.remove(place)
            self._catalog = None
            self._wake()

    async def changed(self) -> None:
        """Until a place comes, goes, or frees a slot."""
        await self._changed.wait()

    def catalog(self) -> list[ProverInfo]:
        """Every prover any place knows; available when some place can run it. A place's own
        catalog is fixed while it is in the pool (a worker that changes re-registers), so the
        merge is made again only when places come or go."""
        if self._catalog is None:
            self._catalog = self._merged()
        return list(self._catalog)

    def _merged(self) -> list[ProverInfo]:
        merged: dict[str, ProverInfo] = {info.name: info for info in self._known}
        for place in self._places:
            for info in place.backend.catalog():
                known = merged.get(info.name)
                if known is None:
                    merged[info.name] = info
                elif info.available and not known.available:
                    # What a prover reads is the dispatcher's registry's word, not a worker's.
                    merged[info.name] = replace(info, engine=known.engine, handles=known.handles)
        return [merged[name] for name in sorted(merged)]

    async def run(
        self,
        prover: str,
        problem: Problem,
        *,
        timeout_s: float,
        scope: CancelScope,
        progress: AttemptProgress,
    ) -> AttemptResult:
        place = await self._acquire(prover, scope)
        if place is None:  # cancelled while it waited
            return not_started(prover, scope)
        try:
            return await place.backend.run(
                prover, problem, timeout_s=timeout_s, scope=scope, progress=progress
            )
        finally:
            place.in_use -= 1
            self._wake()

    def _take(self, prover: str) -> Place | None:
        """The place with the most free slots that offers `prover`, its slot taken; None if
        none has one free."""
        offering = [p for p in self._places if prover in p.provers]
        best = max(offering, key=lambda p: p.free) if offering else None
        if best is not None and best.free > 0:
            best.in_use += 1
            return best
        return None

    async def _acquire(self, prover: str, scope: CancelScope) -> Place | None:
        if not scope.cancel_called:
            place = self._take(prover)
            if place is not None:
                return place  # at once: no waiting set up
        cancelled = asyncio.ensure_future(scope.wait())
        changed: asyncio.Task[bool] | None = None
        try:
            while not scope.cancel_called:
                place = self._take(prover)
                if place is not None:
                    return place
                # No free slot, or no place offers it any more (its workers drained or were
                # lost; a race only starts with provers some place offered): wait for one.
                changed = asyncio.ensure_future(self._changed.wait())
                self.waiting += 1
                try:
                    await asyncio.wait({changed, cancelled}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    self.waiting -= 1
            return None
        finally:
            cancelled.cancel()
            if changed is not None:
                changed.cancel()

    def _wake(self) -> None:
        # Wake every waiter once, then re-arm for the next change.
        self._changed.set()
        self._changed = asyncio.Event()
