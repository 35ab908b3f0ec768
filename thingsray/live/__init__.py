"""Live updates: what the shards committed, fanned out to the WebSocket sessions that watch it.

The contract between the shards (which publish) and the Serve replicas (whose sockets watch):

- ``LiveUpdate``: one entity's values committed in one group commit of a shard's writer.
- A replica's ``LiveSubscriptions.subscribe(entity_id, sink)`` makes every later update of the
  entity reach ``sink`` (called on the replica's event loop, in commit order per entity) and
  returns the coroutine function that undoes it. The sink must not block: a WebSocket session
  queues what it gets and closes itself when its queue is full (a slow consumer never slows the
  shard or other sockets).
- Nothing polls the database: the owning shard keeps, per entity, the replicas that watch it,
  and each replica keeps one pending call per shard that the shard answers with the updates
  for it (DESIGN.md sections 4 and 6).
"""

from thingsray.live.updates import ALARM, ATTRIBUTES, TIMESERIES, LiveUpdate

__all__ = ["ALARM", "ATTRIBUTES", "TIMESERIES", "LiveUpdate"]
