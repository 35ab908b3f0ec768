"""What crosses a process boundary: batches of envelopes one way, replies the other.

Batches and replies pickle as flat tuples (``__reduce__``): the default pickling of slotted
dataclasses calls ``dataclasses.fields`` per object, which was a fifth of a transport's time.
Messages themselves pickle however their classes say (hot ones define ``__reduce__`` too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from thingsray.runtime.address import Address


@dataclass(frozen=True, slots=True)
class Envelope:
    address: Address
    message: Any
    ask: bool = False
    local: bool = False
    """For the actor of this address on the receiving shard itself, whatever its partition: the
    per-shard actors (a tenant's view on each shard) are reached this way, by broadcast."""

    def __reduce__(self) -> tuple[Any, ...]:
        return _envelope, (self.address.kind, self.address.id, self.message, self.ask, self.local)


@dataclass(frozen=True, slots=True)
class Reply:
    """The outcome of one envelope: its value (asks), or the error text when it failed."""

    value: Any = None
    error: str | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        return Reply, (self.value, self.error)


_DONE = Reply()


class Replies(list[Reply]):
    """A shard's answers to one batch: pickled as a count when every one is a plain "done"
    (tells, and asks answered with None, such as committed telemetry), else as pairs."""

    __slots__ = ()

    def __reduce__(self) -> tuple[Any, ...]:
        if all(r.value is None and r.error is None for r in self):
            return _done_replies, (len(self),)
        return _replies, ([(r.value, r.error) for r in self],)


def _done_replies(count: int) -> list[Reply]:
    return [_DONE] * count


def _replies(pairs: list[tuple[Any, str | None]]) -> list[Reply]:
    return [Reply(value, error) for value, error in pairs]


@dataclass(frozen=True, slots=True)
class Batch:
    envelopes: tuple[Envelope, ...]
    epoch: int
    """The partition table epoch the sender routed by; a shard refuses a batch from another epoch."""

    def __reduce__(self) -> tuple[Any, ...]:
        return _batch, (self.epoch, [(e.address.kind, e.address.id, e.message, e.ask, e.local)
                                     for e in self.envelopes])


def _envelope(kind: str, id: str, message: Any, ask: bool, local: bool) -> Envelope:
    return Envelope(Address(kind, id), message, ask, local)


def _batch(epoch: int, rows: list[tuple[str, str, Any, bool, bool]]) -> Batch:
    return Batch(tuple([Envelope(Address(kind, id), message, ask, local) for kind, id, message, ask, local in rows]),
                 epoch)
