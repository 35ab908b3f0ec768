"""Entities, relations, attributes and time series made over REST, as a tenant administrator
makes them, for node tests that read what is really stored."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.conftest import unique
from thingsray.rules.msg import EntityId


def created(response: httpx.Response, entity_type: str) -> EntityId:
    assert response.status_code == 200, response.text
    return EntityId(entity_type, uuid.UUID(response.json()["id"]["id"]))


def device(client: httpx.Client, name: str | None = None, **body: Any) -> EntityId:
    return created(client.post("/api/device", json={"name": name or unique("node device"), **body}), "DEVICE")


def asset(client: httpx.Client, name: str | None = None, **body: Any) -> EntityId:
    return created(client.post("/api/asset", json={"name": name or unique("node asset"), **body}), "ASSET")


def customer(client: httpx.Client, title: str | None = None, **body: Any) -> EntityId:
    return created(client.post("/api/customer", json={"title": title or unique("node customer"), **body}),
                   "CUSTOMER")


def assign(client: httpx.Client, owned: EntityId, to: EntityId) -> None:
    kind = owned.entity_type.lower()
    response = client.post(f"/api/customer/{to.id}/{kind}/{owned.id}")
    assert response.status_code == 200, response.text


def relate(client: httpx.Client, from_id: EntityId, to_id: EntityId, relation_type: str = "Contains") -> None:
    response = client.post("/api/relation", json={"from": from_id.to_json(), "to": to_id.to_json(),
                                                  "type": relation_type, "typeGroup": "COMMON"})
    assert response.status_code == 200, response.text


def save_attributes(client: httpx.Client, entity: EntityId, scope: str, values: dict[str, Any]) -> None:
    response = client.post(f"/api/plugins/telemetry/{entity.entity_type}/{entity.id}/attributes/{scope}",
                           json=values)
    assert response.status_code == 200, response.text


def save_timeseries(client: httpx.Client, entity: EntityId, body: Any) -> None:
    response = client.post(f"/api/plugins/telemetry/{entity.entity_type}/{entity.id}/timeseries/ANY", json=body)
    assert response.status_code == 200, response.text
