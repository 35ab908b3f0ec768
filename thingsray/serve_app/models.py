"""Request bodies. ThingsBoard ignores JSON fields it does not know (clients such as
``tb-rest-client`` send every field of their models), so do we; fields we know are typed and
bounded, and a wrong type or an oversized value is a 400."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Name = Annotated[str, StringConstraints(min_length=1, max_length=255, strip_whitespace=False)]
ShortText = Annotated[str, StringConstraints(max_length=255)]
LongText = Annotated[str, StringConstraints(max_length=1_000_000)]


class TbModel(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class EntityIdIn(TbModel):
    entityType: ShortText | None = None
    id: uuid.UUID


JsonObject = dict[str, Any]


class Versioned(TbModel):
    """Fields every saved entity may carry: its id (update when present) and version."""

    id: EntityIdIn | None = None
    version: int | None = Field(default=None, ge=0)
    additionalInfo: Any = None


class ContactIn(Versioned):
    """The address and contact fields tenants and customers share (ThingsBoard's ContactBased)."""

    country: ShortText | None = None
    state: ShortText | None = None
    city: ShortText | None = None
    address: ShortText | None = None
    address2: ShortText | None = None
    zip: ShortText | None = None
    phone: ShortText | None = None
    email: ShortText | None = None
