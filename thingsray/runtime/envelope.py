"""What crosses a process boundary: batches of envelopes one way, replies the other."""

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


@dataclass(frozen=True, slots=True)
class Reply:
    """The outcome of one envelope: its value (asks), or the error text when it failed."""

    value: Any = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Batch:
    envelopes: tuple[Envelope, ...]
    epoch: int
    """The partition table epoch the sender routed by; a shard refuses a batch from another epoch."""
