"""/api/relation(s): save, read, delete, graph queries, and who may relate what."""

from __future__ import annotations

import uuid

from tests.conftest import assert_tb_error, unique
from tests.tenancy import customer_id, demo_device_id


def asset(client, prefix: str = "Node") -> dict:
    response = client.post("/api/asset", json={"name": unique(prefix)})
    assert response.status_code == 200, response.text
    return response.json()["id"]


def relate(client, from_id: dict, to_id: dict, type_: str = "Contains", **fields):
    return client.post("/api/relation", json={"from": from_id, "to": to_id, "type": type_, **fields})


def key_params(from_id: dict, to_id: dict, type_: str = "Contains") -> dict:
    return {"fromId": from_id["id"], "fromType": from_id["entityType"], "relationType": type_,
            "toId": to_id["id"], "toType": to_id["entityType"]}


def pairs(relations: list[dict]) -> set[tuple[str, str, str]]:
    return {(r["from"]["id"], r["type"], r["to"]["id"]) for r in relations}


def test_save_get_list_and_update_a_relation(tenant):
    building, floor = asset(tenant, "Building"), asset(tenant, "Floor")
    assert relate(tenant, building, floor, additionalInfo={"note": "first"}).status_code == 200
    relation = tenant.get("/api/relation", params=key_params(building, floor)).json()
    assert relation == {"from": building, "to": floor, "type": "Contains", "typeGroup": "COMMON",
                        "additionalInfo": {"note": "first"}, "version": 1}
    assert relate(tenant, building, floor, additionalInfo={"note": "second"}).status_code == 200
    again = tenant.get("/api/relation", params=key_params(building, floor)).json()
    assert again["additionalInfo"] == {"note": "second"} and again["version"] == 2

    by_from = tenant.get("/api/relations", params={"fromId": building["id"], "fromType": "ASSET"}).json()
    assert pairs(by_from) == {(building["id"], "Contains", floor["id"])}
    by_to = tenant.get("/api/relations", params={"toId": floor["id"], "toType": "ASSET"}).json()
    assert pairs(by_to) == pairs(by_from)
    typed = tenant.get("/api/relations", params={"fromId": building["id"], "fromType": "ASSET",
                                                 "relationType": "Manages"}).json()
    assert typed == []
    assert pairs(tenant.get(f"/api/relations/from/ASSET/{building['id']}/Contains").json()) == pairs(by_from)
    assert pairs(tenant.get(f"/api/relations/to/ASSET/{floor['id']}").json()) == pairs(by_from)
    infos = tenant.get("/api/relations/info", params={"fromId": building["id"], "fromType": "ASSET"}).json()
    names = tuple(tenant.get(f"/api/asset/{end['id']}").json()["name"] for end in (building, floor))
    assert (infos[0]["fromName"], infos[0]["toName"]) == names
    assert tenant.get(f"/api/relations/info/to/ASSET/{floor['id']}").json()[0]["fromName"] == names[0]


def test_delete_one_and_all_relations(tenant):
    hub, a, b = asset(tenant), asset(tenant), asset(tenant)
    for target in (a, b):
        assert relate(tenant, hub, target).status_code == 200
    assert relate(tenant, a, hub, "Manages").status_code == 200
    assert tenant.delete("/api/relation", params=key_params(hub, a)).status_code == 200
    assert_tb_error(tenant.get("/api/relation", params=key_params(hub, a)), 404, 32)
    assert_tb_error(tenant.delete("/api/relation", params=key_params(hub, a)), 404)
    assert tenant.delete("/api/relations", params={"entityId": hub["id"], "entityType": "ASSET"}).status_code == 200
    assert tenant.get("/api/relations", params={"fromId": hub["id"], "fromType": "ASSET"}).json() == []
    assert tenant.get("/api/relations", params={"toId": hub["id"], "toType": "ASSET"}).json() == []


def test_deleting_an_entity_removes_its_relations(tenant):
    parent, child = asset(tenant), asset(tenant)
    dashboard = tenant.post("/api/dashboard", json={"title": unique("Related")}).json()["id"]
    assert relate(tenant, parent, child).status_code == 200
    assert relate(tenant, dashboard, parent, "Shows").status_code == 200
    assert tenant.delete(f"/api/asset/{child['id']}").status_code == 200
    assert tenant.get("/api/relations", params={"fromId": parent["id"], "fromType": "ASSET"}).json() == []
    assert tenant.delete(f"/api/dashboard/{dashboard['id']}").status_code == 200
    assert tenant.get("/api/relations", params={"toId": parent["id"], "toType": "ASSET"}).json() == []


def test_relations_query_follows_levels_filters_and_survives_cycles(tenant):
    a, b, c, d = (asset(tenant, n) for n in "ABCD")
    for x, y in ((a, b), (b, c), (c, d)):
        assert relate(tenant, x, y).status_code == 200
    assert relate(tenant, d, a).status_code == 200  # a cycle back to the root
    assert relate(tenant, b, d, "Manages").status_code == 200

    def query(**parameters):
        filters = parameters.pop("filters", [])
        body = {"parameters": {"rootId": a["id"], "rootType": "ASSET", "direction": "FROM", **parameters},
                "filters": filters}
        response = tenant.post("/api/relations", json=body)
        assert response.status_code == 200, response.text
        return pairs(response.json())

    ab, bc, cd, da, bd = ((a["id"], "Contains", b["id"]), (b["id"], "Contains", c["id"]),
                          (c["id"], "Contains", d["id"]), (d["id"], "Contains", a["id"]),
                          (b["id"], "Manages", d["id"]))
    assert query(maxLevel=1) == {ab}
    assert query(maxLevel=2) == {ab, bc, bd}
    assert query(maxLevel=0) == {ab, bc, cd, da, bd}  # unbounded (capped), and the cycle ends
    assert query(maxLevel=0, filters=[{"relationType": "Manages", "entityTypes": ["ASSET"]}]) == {bd}
    assert query(maxLevel=0, filters=[{"relationType": "Contains", "entityTypes": ["DEVICE"]}]) == set()
    assert query(maxLevel=2, fetchLastLevelOnly=True) == {bc, bd}
    to_d = tenant.post("/api/relations", json={"parameters": {"rootId": d["id"], "rootType": "ASSET",
                                                              "direction": "TO", "maxLevel": 1}}).json()
    assert pairs(to_d) == {cd, bd}
    infos = tenant.post("/api/relations/info", json={"parameters": {"rootId": a["id"], "rootType": "ASSET",
                                                                    "direction": "FROM", "maxLevel": 1}}).json()
    assert infos[0]["toName"].startswith("B ")


def test_refused_relations(tenant, other_tenant):
    mine = asset(tenant)
    missing = {"entityType": "ASSET", "id": str(uuid.uuid4())}
    assert_tb_error(relate(tenant, mine, missing), 404, 32)
    theirs = asset(other_tenant)
    assert_tb_error(relate(tenant, mine, theirs), 404)
    assert_tb_error(relate(other_tenant, theirs, mine), 404)
    assert_tb_error(relate(tenant, mine, {"entityType": "SPACESHIP", "id": str(uuid.uuid4())}), 400)
    assert_tb_error(relate(tenant, mine, {"entityType": "ASSET", "id": "nope"}), 400)
    assert_tb_error(relate(tenant, mine, mine, typeGroup="NO_SUCH_GROUP"), 400)
    assert_tb_error(tenant.post("/api/relation", json={"from": mine, "type": "Contains"}), 400)
    assert_tb_error(tenant.get("/api/relations", params={"fromId": "x", "fromType": "ASSET"}), 400)
    assert_tb_error(tenant.get("/api/relations", params={"fromType": "ASSET"}), 400)
    assert_tb_error(tenant.get("/api/relations", params={"fromId": theirs["id"], "fromType": "ASSET"}), 404)
    assert_tb_error(tenant.post("/api/relations", json={"parameters": {"rootId": theirs["id"], "rootType": "ASSET",
                                                                       "direction": "FROM"}}), 404)
    assert_tb_error(tenant.post("/api/relations", json={"parameters": {"rootId": mine["id"], "rootType": "ASSET",
                                                                       "direction": "SIDEWAYS"}}), 400)
    assert_tb_error(tenant.delete("/api/relations", params={"entityId": theirs["id"], "entityType": "ASSET"}), 404)


def test_tenant_admin_may_relate_its_own_tenant_and_customers(tenant):
    tenant_id = tenant.get("/api/auth/user").json()["tenantId"]
    cid = {"entityType": "CUSTOMER", "id": customer_id(tenant, "Customer C")}
    site = asset(tenant, "Site")
    assert relate(tenant, tenant_id, site).status_code == 200
    assert relate(tenant, cid, site, "Owns").status_code == 200
    assert (tenant_id["id"], "Contains", site["id"]) in pairs(
        tenant.get("/api/relations", params={"toId": site["id"], "toType": "ASSET"}).json())
    tenant.delete("/api/relation", params=key_params(tenant_id, site))


def test_customer_users_read_only_what_they_see_and_change_nothing(tenant, customer_a, database_url):
    cid_a = customer_id(tenant, "Customer A")
    device = {"entityType": "DEVICE", "id": demo_device_id(database_url, "Test Device A1")}  # Customer A's
    visible, hidden = asset(tenant, "Visible"), asset(tenant, "Hidden")
    tenant.post(f"/api/customer/{cid_a}/asset/{visible['id']}")
    assert relate(tenant, visible, device).status_code == 200
    assert relate(tenant, visible, hidden).status_code == 200
    seen = customer_a.get("/api/relations", params={"fromId": visible["id"], "fromType": "ASSET"}).json()
    assert pairs(seen) == {(visible["id"], "Contains", device["id"])}
    query = customer_a.post("/api/relations", json={"parameters": {"rootId": visible["id"], "rootType": "ASSET",
                                                                   "direction": "FROM", "maxLevel": 1}}).json()
    assert pairs(query) == pairs(seen)
    assert_tb_error(customer_a.get("/api/relations", params={"fromId": hidden["id"], "fromType": "ASSET"}), 403)
    assert_tb_error(relate(customer_a, visible, device, "Manages"), 403)
    assert_tb_error(customer_a.delete("/api/relation", params=key_params(visible, device)), 403)
    assert customer_a.get("/api/relation", params=key_params(visible, device)).status_code == 200


def test_relation_changes_are_audited_on_both_ends(tenant):
    left, right = asset(tenant), asset(tenant)
    assert relate(tenant, left, right).status_code == 200
    assert tenant.delete("/api/relation", params=key_params(left, right)).status_code == 200
    for end in (left, right):
        logs = tenant.get(f"/api/audit/logs/entity/ASSET/{end['id']}", params={"pageSize": 50, "page": 0}).json()
        actions = [entry["actionType"] for entry in logs["data"]]
        assert "RELATION_ADD_OR_UPDATE" in actions and "RELATION_DELETED" in actions


def test_official_rest_client_round_trip(base_url, tenant):
    from tb_rest_client.models.entity_id import EntityId
    from tb_rest_client.models.entity_relation import EntityRelation
    from tb_rest_client.models.entity_relations_query import EntityRelationsQuery
    from tb_rest_client.models.relations_search_parameters import RelationsSearchParameters
    from tb_rest_client.rest_client import RestClient

    parent, child = asset(tenant), asset(tenant)
    client = RestClient(base_url=base_url)
    client.login("tenant@thingsboard.org", "tenant")
    from_id = EntityId(id=parent["id"], entity_type="ASSET")
    to_id = EntityId(id=child["id"], entity_type="ASSET")
    saved = client.save_relation(EntityRelation(_from=from_id, to=to_id, type="Contains", type_group="COMMON"))
    assert saved.to.id == child["id"] and saved.type_group == "COMMON"
    assert client.get_relation(from_id, "Contains", to_id).type == "Contains"
    assert [r.to.id for r in client.find_by_from(from_id, "Contains")] == [child["id"]]
    assert [r.to_name for r in client.find_info_by_from(from_id)] == [
        tenant.get(f"/api/asset/{child['id']}").json()["name"]]
    query = EntityRelationsQuery(parameters=RelationsSearchParameters(
        root_id=parent["id"], root_type="ASSET", direction="FROM", max_level=1), filters=[])
    assert [r.to.id for r in client.find_by_query_v3(query)] == [child["id"]]
    client.delete_relation(from_id, "Contains", to_id)
    assert client.find_by_from(from_id, "Contains") == []
