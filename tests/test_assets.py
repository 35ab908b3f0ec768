"""/api/asset and the asset profiles: shapes, paging, assignment, customer and tenant isolation."""

from __future__ import annotations

import uuid

from tests.conftest import assert_tb_error, unique
from tests.tenancy import NULL_UUID, customer_id


def create_asset(client, name: str, **fields) -> dict:
    response = client.post("/api/asset", json={"name": name, **fields})
    assert response.status_code == 200, response.text
    return response.json()


def test_asset_without_type_gets_the_default_profile_and_thingsboard_shape(tenant):
    asset = create_asset(tenant, unique("Pump station"), label="north")
    assert asset["id"]["entityType"] == "ASSET"
    assert asset["tenantId"]["entityType"] == "TENANT"
    assert asset["customerId"] == {"entityType": "CUSTOMER", "id": NULL_UUID}
    assert asset["type"] == "default" and asset["label"] == "north"
    assert asset["assetProfileId"]["entityType"] == "ASSET_PROFILE"
    default = tenant.get("/api/assetProfileInfo/default").json()
    assert asset["assetProfileId"] == default["id"]
    assert tenant.get(f"/api/asset/{asset['id']['id']}").json() == asset


def test_type_selects_or_creates_a_profile_of_that_name(tenant):
    kind = unique("Building")
    asset = create_asset(tenant, unique("HQ"), type=kind)
    assert asset["type"] == kind
    profile = tenant.get(f"/api/assetProfile/{asset['assetProfileId']['id']}").json()
    assert profile["name"] == kind and profile["default"] is False
    second = create_asset(tenant, unique("Annex"), type=kind)
    assert second["assetProfileId"] == asset["assetProfileId"]
    types = tenant.get("/api/asset/types").json()
    assert {"entityType": "ASSET", "type": kind} in [{k: t[k] for k in ("entityType", "type")} for t in types]
    # an explicit profile wins over the type, and the type shown is the profile's name
    third = create_asset(tenant, unique("Shed"), type="ignored", assetProfileId=asset["assetProfileId"])
    assert third["type"] == kind


def test_update_checks_the_version_and_names_are_unique(tenant):
    asset = create_asset(tenant, unique("Tank"))
    renamed = tenant.post("/api/asset", json={**asset, "name": asset["name"] + " v2"})
    assert renamed.status_code == 200 and renamed.json()["version"] == asset["version"] + 1
    stale = tenant.post("/api/asset", json={**asset, "name": asset["name"] + " v3"})
    assert_tb_error(stale, 409, 35)
    other = create_asset(tenant, unique("Tank"))
    duplicate = tenant.post("/api/asset", json={"name": other["name"]})
    assert assert_tb_error(duplicate, 400)["message"] == "Asset with such name already exists!"


def test_paging_search_sort_and_type_filter(tenant):
    prefix = unique("Paged")
    kind = unique("Kind")
    for suffix in ("c", "a", "b"):
        create_asset(tenant, f"{prefix} {suffix}", type=kind)
    create_asset(tenant, f"{prefix} z")  # another type
    first = tenant.get("/api/tenant/assets", params={"pageSize": 2, "page": 0, "textSearch": prefix, "type": kind,
                                                     "sortProperty": "name", "sortOrder": "ASC"}).json()
    assert first["totalElements"] == 3 and first["totalPages"] == 2 and first["hasNext"] is True
    assert [a["name"] for a in first["data"]] == [f"{prefix} a", f"{prefix} b"]
    second = tenant.get("/api/tenant/assets", params={"pageSize": 2, "page": 1, "textSearch": prefix, "type": kind,
                                                      "sortProperty": "name", "sortOrder": "ASC"}).json()
    assert [a["name"] for a in second["data"]] == [f"{prefix} c"] and second["hasNext"] is False
    everything = tenant.get("/api/tenant/assets", params={"pageSize": 10, "page": 0, "textSearch": prefix.upper(),
                                                          "sortProperty": "name", "sortOrder": "DESC"}).json()
    assert [a["name"] for a in everything["data"]] == [f"{prefix} {s}" for s in "zcba"]


def test_find_by_name_on_both_paths(tenant):
    asset = create_asset(tenant, unique("Named"))
    assert tenant.get("/api/tenant/assets", params={"assetName": asset["name"]}).json()["id"] == asset["id"]
    assert tenant.get("/api/tenant/asset", params={"assetName": asset["name"]}).json()["id"] == asset["id"]
    assert_tb_error(tenant.get("/api/tenant/asset", params={"assetName": unique("missing")}), 404, 32)


def test_assign_infos_and_unassign(tenant):
    cid = customer_id(tenant, "Customer A")
    asset = create_asset(tenant, unique("Assigned"))
    assigned = tenant.post(f"/api/customer/{cid}/asset/{asset['id']['id']}")
    assert assigned.status_code == 200 and assigned.json()["customerId"] == {"entityType": "CUSTOMER", "id": cid}
    info = tenant.get(f"/api/asset/info/{asset['id']['id']}").json()
    assert info["customerTitle"] == "Customer A" and info["customerIsPublic"] is False
    assert info["assetProfileName"] == "default"
    infos = tenant.get("/api/tenant/assetInfos", params={"pageSize": 10, "page": 0, "textSearch": asset["name"]})
    assert infos.json()["data"][0]["customerTitle"] == "Customer A"
    page = tenant.get(f"/api/customer/{cid}/assets", params={"pageSize": 100, "page": 0, "textSearch": asset["name"]})
    assert [a["id"] for a in page.json()["data"]] == [asset["id"]]
    unassigned = tenant.delete(f"/api/customer/asset/{asset['id']['id']}")
    assert unassigned.json()["customerId"]["id"] == NULL_UUID
    assert_tb_error(tenant.delete(f"/api/customer/asset/{asset['id']['id']}"), 400)


def test_customer_users_read_only_their_assets_and_write_nothing(tenant, customer_a, customer_b):
    cid_a, cid_b = customer_id(tenant, "Customer A"), customer_id(tenant, "Customer B")
    mine = create_asset(tenant, unique("Customer asset"))
    tenant.post(f"/api/customer/{cid_a}/asset/{mine['id']['id']}")
    unassigned = create_asset(tenant, unique("Tenant asset"))
    assert customer_a.get(f"/api/asset/{mine['id']['id']}").status_code == 200
    assert_tb_error(customer_a.get(f"/api/asset/{unassigned['id']['id']}"), 403, 20)
    assert_tb_error(customer_b.get(f"/api/asset/{mine['id']['id']}"), 403, 20)
    page = customer_a.get(f"/api/customer/{cid_a}/assetInfos", params={"pageSize": 100, "page": 0,
                                                                          "textSearch": mine["name"]}).json()
    assert [a["id"] for a in page["data"]] == [mine["id"]]
    assert_tb_error(customer_a.get(f"/api/customer/{cid_b}/assets", params={"pageSize": 10, "page": 0}), 403)
    assert_tb_error(customer_a.get("/api/tenant/assets", params={"pageSize": 10, "page": 0}), 403)
    assert_tb_error(customer_a.post("/api/asset", json={"name": unique("nope")}), 403)
    assert_tb_error(customer_a.post("/api/asset", json={**mine, "name": "hijacked"}), 403)
    assert_tb_error(customer_a.delete(f"/api/asset/{mine['id']['id']}"), 403)
    assert_tb_error(customer_a.delete(f"/api/customer/asset/{mine['id']['id']}"), 403)
    both = customer_a.get("/api/assets", params={"assetIds": f"{mine['id']['id']},{unassigned['id']['id']}"})
    assert [a["id"] for a in both.json()] == [mine["id"]]


def test_bad_input_is_a_400(tenant):
    assert_tb_error(tenant.get("/api/asset/not-a-uuid"), 400, 31)
    assert_tb_error(tenant.post("/api/asset", json={"label": "no name"}), 400)
    assert_tb_error(tenant.post("/api/asset", json={"name": "x" * 256}), 400)
    assert_tb_error(tenant.post("/api/asset", json={"name": "ok", "assetProfileId": {"id": "bad"}}), 400)
    assert_tb_error(tenant.post("/api/asset", json=["not", "an", "object"]), 400)
    assert_tb_error(tenant.get("/api/tenant/assets", params={"pageSize": 0, "page": 0}), 400)
    assert_tb_error(tenant.get("/api/tenant/assets", params={"page": 0}), 400)
    assert_tb_error(tenant.get("/api/tenant/assets", params={"pageSize": 10, "page": 0, "sortProperty": "x"}), 400)
    assert_tb_error(tenant.get("/api/assets", params={"assetIds": "nope"}), 400)
    assert_tb_error(tenant.get(f"/api/asset/{uuid.uuid4()}"), 404, 32)
    assert_tb_error(tenant.post(f"/api/customer/{uuid.uuid4()}/asset/{uuid.uuid4()}"), 404)


def test_another_tenant_sees_and_touches_nothing(tenant, other_tenant):
    asset = create_asset(tenant, unique("Private"))
    asset_id = asset["id"]["id"]
    assert_tb_error(other_tenant.get(f"/api/asset/{asset_id}"), 404, 32)
    assert_tb_error(other_tenant.delete(f"/api/asset/{asset_id}"), 404)
    assert_tb_error(other_tenant.post("/api/asset", json={**asset, "name": "stolen"}), 404)
    page = other_tenant.get("/api/tenant/assets", params={"pageSize": 100, "page": 0, "textSearch": asset["name"]})
    assert page.json()["totalElements"] == 0
    assert other_tenant.get("/api/tenant/assets", params={"assetName": asset["name"]}).status_code == 404
    assert other_tenant.get("/api/assets", params={"assetIds": asset_id}).json() == []
    # our profile and our customers are not theirs to use
    borrowed = {"name": unique("x"), "assetProfileId": asset["assetProfileId"]}
    assert_tb_error(other_tenant.post("/api/asset", json=borrowed), 404)
    cid = customer_id(tenant, "Customer A")
    own = create_asset(other_tenant, unique("Theirs"))
    assert_tb_error(other_tenant.post(f"/api/customer/{cid}/asset/{own['id']['id']}"), 404)
    assert own["type"] == "default" and own["assetProfileId"] != asset["assetProfileId"]


def test_asset_profiles_listing_default_and_deletion_rules(tenant, customer_a):
    name = unique("Profile")
    saved = tenant.post("/api/assetProfile", json={"name": name, "description": "a profile"})
    assert saved.status_code == 200
    profile = saved.json()
    assert profile["id"]["entityType"] == "ASSET_PROFILE" and profile["default"] is False
    listed = tenant.get("/api/assetProfiles", params={"pageSize": 10, "page": 0, "textSearch": name}).json()
    assert [p["id"] for p in listed["data"]] == [profile["id"]]
    infos = customer_a.get("/api/assetProfileInfos", params={"pageSize": 10, "page": 0, "textSearch": name}).json()
    assert infos["data"][0]["name"] == name and "description" not in infos["data"][0]
    assert customer_a.get(f"/api/assetProfile/{profile['id']['id']}").status_code == 200
    assert_tb_error(customer_a.post("/api/assetProfile", json={"name": unique("nope")}), 403)

    default = tenant.get("/api/assetProfileInfo/default").json()
    assert_tb_error(tenant.delete(f"/api/assetProfile/{default['id']['id']}"), 400)
    used = create_asset(tenant, unique("User of profile"), assetProfileId=profile["id"])
    assert_tb_error(tenant.delete(f"/api/assetProfile/{profile['id']['id']}"), 400)
    tenant.delete(f"/api/asset/{used['id']['id']}")
    assert tenant.delete(f"/api/assetProfile/{profile['id']['id']}").status_code == 200
    assert_tb_error(tenant.get(f"/api/assetProfile/{profile['id']['id']}"), 404)


def test_renaming_a_profile_renames_its_assets_type(tenant):
    asset = create_asset(tenant, unique("Typed"), type=unique("Old kind"))
    profile = tenant.get(f"/api/assetProfile/{asset['assetProfileId']['id']}").json()
    new_name = unique("New kind")
    assert tenant.post("/api/assetProfile", json={**profile, "name": new_name}).status_code == 200
    assert tenant.get(f"/api/asset/{asset['id']['id']}").json()["type"] == new_name


def test_official_rest_client_round_trip(base_url):
    from tb_rest_client.models.asset import Asset
    from tb_rest_client.rest_client import RestClient

    client = RestClient(base_url=base_url)
    client.login("tenant@thingsboard.org", "tenant")
    name = unique("Client asset")
    saved = client.save_asset(Asset(name=name, type=unique("Client kind"), label="from client"))
    assert saved.id.entity_type == "ASSET" and saved.label == "from client"
    fetched = client.get_asset_by_id(saved.id)
    assert fetched.name == name and fetched.type == saved.type
    assert client.get_tenant_asset(name).id.id == saved.id.id
    page = client.get_tenant_assets(page_size=10, page=0, text_search=name)
    assert page.total_elements == 1 and page.data[0].name == name
    assert saved.type in [t.type for t in client.get_asset_types()]
    client.delete_asset(saved.id)
    assert client.get_tenant_assets(page_size=10, page=0, text_search=name).total_elements == 0
