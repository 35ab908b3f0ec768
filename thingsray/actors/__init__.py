"""The IoT domain's live state as actors (device, entity), and the Ray actors hosting transports."""

from thingsray.actors.device import DeviceActor
from thingsray.actors.entity import EntityActor
from thingsray.actors.live import LIVE, LiveWatchActor
from thingsray.actors.messages import DEVICE, ENTITY
from thingsray.actors.tenant import TENANT, TenantActor

FACTORIES = {DEVICE: DeviceActor, ENTITY: EntityActor, TENANT: TenantActor, LIVE: LiveWatchActor}
"""Actor kind -> factory, as the shards are given them."""

__all__ = ["DEVICE", "ENTITY", "FACTORIES", "LIVE", "TENANT", "DeviceActor", "EntityActor", "LiveWatchActor",
           "TenantActor"]
