"""The virtual-actor runtime on Ray: logical actors hosted in shard Ray actors. Knows nothing of IoT."""

from thingsray.runtime.address import DEFAULT_PARTITIONS, Address, PartitionTable, partition_of
from thingsray.runtime.envelope import Batch, Envelope, Reply
from thingsray.runtime.host import (
    Actor,
    ActorError,
    ActorFactory,
    ActorHost,
    Deferred,
    HostStopped,
    UnknownActorKind,
)
from thingsray.runtime.router import RemoteError, Router, RouterOptions, ShardClient, ShardUnavailable
from thingsray.runtime.shard import ShardActor, ShardCore

__all__ = [
    "DEFAULT_PARTITIONS", "Actor", "ActorError", "ActorFactory", "ActorHost", "Address", "Batch", "Deferred",
    "Envelope",
    "HostStopped", "PartitionTable", "RemoteError", "Reply", "Router", "RouterOptions", "ShardActor",
    "ShardClient", "ShardCore", "ShardUnavailable", "UnknownActorKind", "partition_of",
]
