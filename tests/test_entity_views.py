"""/api/entityView: views of a device or asset of the same tenant; infos, assignment, isolation."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import assert_tb_error, unique
from tests.tenancy import NULL_UUID, customer_id, demo_device_id

KEYS = {"timeseries": ["temperature", "humidity"], "attributes": {"cs": ["firmware"], "ss": ["active"], "sh": []}}


@pytest.fixture(scope="module")
def device_a1(database_url):
    return {"entityType": "DEVICE", "id": demo_device_id(database_url, "Test Device A1")}


def create_view(client, name: str, entity: dict, **fields) -> dict:
    body = {"name": name, "type": fields.pop("type", "thermo view"), "entityId": entity, **fields}
    response = client.post("/api/entityView", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def create_asset(client) -> dict:
    response = client.post("/api/asset", json={"name": unique("View target")})
    assert response.status_code == 200, response.text
    return response.json()


def test_view_of_a_device_has_thingsboard_shape(tenant, device_a1):
    view = create_view(tenant, unique("Boiler view"), device_a1, keys=KEYS, startTimeMs=1000, endTimeMs=2000)
    assert view["id"]["entityType"] == "ENTITY_VIEW"
    assert view["entityId"] == device_a1
    assert view["keys"] == KEYS and view["startTimeMs"] == 1000 and view["endTimeMs"] == 2000
    assert view["customerId"] == {"entityType": "CUSTOMER", "id": NULL_UUID}
    assert view["tenantId"]["entityType"] == "TENANT" and view["type"] == "thermo view"
    assert tenant.get(f"/api/entityView/{view['id']['id']}").json() == view


def test_view_of_an_asset_update_and_delete(tenant):
    asset = create_asset(tenant)
    view = create_view(tenant, unique("Asset view"), asset["id"], type=unique("vt"))
    assert view["entityId"] == asset["id"] and view["startTimeMs"] == 0
    updated = tenant.post("/api/entityView", json={**view, "keys": {"timeseries": ["power"]}})
    assert updated.status_code == 200
    assert updated.json()["keys"] == {"timeseries": ["power"], "attributes": {"cs": [], "ss": [], "sh": []}}
    assert_tb_error(tenant.post("/api/entityView", json={**view, "name": "stale"}), 409, 35)
    assert view["type"] in [t["type"] for t in tenant.get("/api/entityView/types").json()]
    assert tenant.delete(f"/api/entityView/{view['id']['id']}").status_code == 200
    assert_tb_error(tenant.get(f"/api/entityView/{view['id']['id']}"), 404, 32)


def test_only_devices_and_assets_that_exist_in_the_tenant(tenant, other_tenant):
    cid = customer_id(tenant, "Customer A")
    assert_tb_error(tenant.post("/api/entityView", json={
        "name": unique("v"), "type": "t", "entityId": {"entityType": "CUSTOMER", "id": cid}}), 400)
    assert_tb_error(tenant.post("/api/entityView", json={
        "name": unique("v"), "type": "t", "entityId": {"entityType": "DEVICE", "id": str(uuid.uuid4())}}), 404)
    foreign = create_asset(other_tenant)
    assert_tb_error(tenant.post("/api/entityView", json={
        "name": unique("v"), "type": "t", "entityId": foreign["id"]}), 404)


def test_paging_search_type_and_name_lookup(tenant, device_a1):
    prefix, kind = unique("Listed"), unique("kind")
    for suffix in ("b", "a", "c"):
        create_view(tenant, f"{prefix} {suffix}", device_a1, type=kind)
    page = tenant.get("/api/tenant/entityViews", params={"pageSize": 2, "page": 0, "type": kind,
                                                         "sortProperty": "name", "sortOrder": "ASC"}).json()
    assert page["totalElements"] == 3 and page["hasNext"] is True
    assert [v["name"] for v in page["data"]] == [f"{prefix} a", f"{prefix} b"]
    searched = tenant.get("/api/tenant/entityViews", params={"pageSize": 10, "page": 0, "textSearch": f"{prefix} c"})
    assert [v["name"] for v in searched.json()["data"]] == [f"{prefix} c"]
    found = tenant.get("/api/tenant/entityViews", params={"entityViewName": f"{prefix} a"}).json()
    assert found["name"] == f"{prefix} a"
    by_name = tenant.get("/api/tenant/entityView", params={"entityViewName": f"{prefix} b"}).json()
    assert by_name["name"] == f"{prefix} b"
    assert_tb_error(tenant.get("/api/tenant/entityViews", params={"entityViewName": unique("none")}), 404)


def test_assign_infos_and_customer_restrictions(tenant, customer_a, customer_b, device_a1):
    cid_a, cid_b = customer_id(tenant, "Customer A"), customer_id(tenant, "Customer B")
    view = create_view(tenant, unique("Customer view"), device_a1)
    vid = view["id"]["id"]
    assert_tb_error(customer_a.get(f"/api/entityView/{vid}"), 403, 20)
    assigned = tenant.post(f"/api/customer/{cid_a}/entityView/{vid}").json()
    assert assigned["customerId"]["id"] == cid_a
    info = tenant.get(f"/api/entityView/info/{vid}").json()
    assert info["customerTitle"] == "Customer A" and info["customerIsPublic"] is False
    infos = tenant.get("/api/tenant/entityViewInfos", params={"pageSize": 10, "page": 0, "textSearch": view["name"]})
    assert infos.json()["data"][0]["customerTitle"] == "Customer A"
    assert customer_a.get(f"/api/entityView/{vid}").status_code == 200
    mine = customer_a.get(f"/api/customer/{cid_a}/entityViewInfos", params={"pageSize": 100, "page": 0,
                                                                             "textSearch": view["name"]}).json()
    assert [v["id"] for v in mine["data"]] == [view["id"]]
    assert_tb_error(customer_b.get(f"/api/entityView/{vid}"), 403)
    assert_tb_error(customer_b.get(f"/api/customer/{cid_a}/entityViews", params={"pageSize": 10, "page": 0}), 403)
    assert_tb_error(customer_a.post("/api/entityView", json={**view, "name": "mine now"}), 403)
    assert_tb_error(customer_a.delete(f"/api/entityView/{vid}"), 403)
    assert_tb_error(customer_a.delete(f"/api/customer/entityView/{vid}"), 403)
    unassigned = tenant.delete(f"/api/customer/entityView/{vid}").json()
    assert unassigned["customerId"]["id"] == NULL_UUID
    assert_tb_error(customer_a.get(f"/api/entityView/{vid}"), 403)
    assert_tb_error(customer_a.get(f"/api/customer/{cid_b}/entityViews", params={"pageSize": 10, "page": 0}), 403)


def test_bad_input(tenant, device_a1):
    assert_tb_error(tenant.get("/api/entityView/123"), 400, 31)
    base = {"name": unique("Bad"), "type": "t", "entityId": device_a1}
    assert_tb_error(tenant.post("/api/entityView", json={**base, "entityId": {"entityType": "DEVICE", "id": "x"}}), 400)
    assert_tb_error(tenant.post("/api/entityView", json={**base, "entityId": None}), 400)
    assert_tb_error(tenant.post("/api/entityView", json={k: v for k, v in base.items() if k != "type"}), 400)
    assert_tb_error(tenant.post("/api/entityView", json={**base, "keys": {"timeseries": "temperature"}}), 400)
    assert_tb_error(tenant.post("/api/entityView", json={**base, "startTimeMs": 5, "endTimeMs": 1}), 400)
    assert_tb_error(tenant.post("/api/entityView", json={**base, "startTimeMs": "soon"}), 400)
    assert_tb_error(tenant.get("/api/tenant/entityViews", params={"pageSize": "ten", "page": 0}), 400)


def test_another_tenant_sees_and_touches_nothing(tenant, other_tenant, device_a1):
    view = create_view(tenant, unique("Hidden view"), device_a1)
    vid = view["id"]["id"]
    assert_tb_error(other_tenant.get(f"/api/entityView/{vid}"), 404, 32)
    assert_tb_error(other_tenant.delete(f"/api/entityView/{vid}"), 404)
    assert_tb_error(other_tenant.post("/api/entityView", json={**view, "name": "stolen"}), 404)
    page = other_tenant.get("/api/tenant/entityViews", params={"pageSize": 100, "page": 0, "textSearch": view["name"]})
    assert page.json()["totalElements"] == 0
    assert view["type"] not in [t["type"] for t in other_tenant.get("/api/entityView/types").json()]


def test_official_rest_client_round_trip(base_url, device_a1):
    from tb_rest_client.models.entity_id import EntityId
    from tb_rest_client.models.entity_view import EntityView
    from tb_rest_client.rest_client import RestClient

    client = RestClient(base_url=base_url)
    client.login("tenant@thingsboard.org", "tenant")
    name = unique("Client view")
    body = EntityView(name=name, type="client", entity_id=EntityId(id=device_a1["id"], entity_type="DEVICE"))
    saved = client.save_entity_view(body)
    assert saved.id.entity_type == "ENTITY_VIEW" and saved.entity_id.id == device_a1["id"]
    assert client.get_entity_view_by_id(saved.id).name == name
    page = client.get_tenant_entity_views(page_size=10, page=0, text_search=name)
    assert page.total_elements == 1
    client.delete_entity_view(saved.id)
    assert client.get_tenant_entity_views(page_size=10, page=0, text_search=name).total_elements == 0
