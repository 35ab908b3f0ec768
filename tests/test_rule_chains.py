"""Rule chains over REST as ThingsBoard's clients use them: headers, metadata, the root chain,
export and import, debug events, and tenants that never see each other's chains.

The server checks nodes against its catalogue. Until the whole catalogue is written, tests that
build chains use the flow nodes (rule chain input and output), and the tests that import
ThingsBoard's own root chain are skipped while a node class it names is missing.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import assert_tb_error, unique
from tests.test_users import activate, bearer, create_user
from thingsray.rules.model import INPUT_NODE, OUTPUT_NODE
from thingsray.storage import connect
from thingsray.storage.events import EventStore, rule_chain_event, rule_node_event

DATA = Path(__file__).parent / "rules" / "data"


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json() if response.content else None


def create_chain(client: httpx.Client, name: str | None = None, **fields: Any) -> dict[str, Any]:
    return ok(client.post("/api/ruleChain", json={"name": name or unique("chain"), **fields}))


def output(name: str) -> dict[str, Any]:
    return {"type": OUTPUT_NODE, "name": name, "configuration": {}, "additionalInfo": {"layoutX": 1, "layoutY": 2}}


def forward(name: str, target: dict[str, Any] | str) -> dict[str, Any]:
    target_id = target if isinstance(target, str) else target["id"]["id"]
    return {"type": INPUT_NODE, "name": name, "debugMode": False,
            "configuration": {"ruleChainId": target_id, "forwardMsgToDefaultRuleChain": False}}


def metadata(chain: dict[str, Any], nodes: list[dict[str, Any]], connections: list[tuple[int, int, str]],
             first: int | None = 0, **extra: Any) -> dict[str, Any]:
    return {"ruleChainId": chain["id"], "firstNodeIndex": first, "nodes": nodes,
            "connections": [{"fromIndex": f, "toIndex": t, "type": label} for f, t, label in connections], **extra}


def save_metadata(client: httpx.Client, body: dict[str, Any], **params: Any) -> httpx.Response:
    return client.post("/api/ruleChain/metadata", json=body, params=params)


def chains(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    return ok(client.get("/api/ruleChains", params={"pageSize": 1000, "page": 0, **params}))["data"]


def root_of(client: httpx.Client) -> dict[str, Any]:
    roots = [c for c in chains(client) if c["root"]]
    assert len(roots) == 1, roots
    return roots[0]


def missing_node_types(export: dict[str, Any]) -> list[str]:
    import thingsray.rules.nodes  # noqa: F401  (the catalogue the server loads too)
    from thingsray.rules.node import NODE_TYPES

    return sorted({n["type"] for n in export["metadata"]["nodes"]} - set(NODE_TYPES))


# --- the default root chain ---------------------------------------------------------------------
def test_every_tenant_starts_with_thingsboards_default_root_chain(tenant, other_tenant):
    template = json.loads((DATA / "root_rule_chain.json").read_text())
    for client in (tenant, other_tenant):
        root = root_of(client)
        assert root["name"] == "Root Rule Chain" and root["type"] == "CORE"
        meta = ok(client.get(f"/api/ruleChain/{root['id']['id']}/metadata"))
        assert meta["firstNodeIndex"] == 2 and root["firstRuleNodeId"] == meta["nodes"][2]["id"]
        assert [(n["type"], n["name"], n["configuration"]) for n in meta["nodes"]] == [
            (n["type"], n["name"], n["configuration"]) for n in template["metadata"]["nodes"]]
        assert sorted((c["fromIndex"], c["toIndex"], c["type"]) for c in meta["connections"]) == sorted(
            (c["fromIndex"], c["toIndex"], c["type"]) for c in template["metadata"]["connections"])


def test_a_tenant_created_over_rest_gets_a_root_chain_too(sysadmin, base_url):
    created = ok(sysadmin.post("/api/tenant", json={"title": unique("chains tenant")}))
    try:
        admin = create_user(sysadmin, "TENANT_ADMIN", tenant_id=created["id"]["id"])
        with httpx.Client(base_url=base_url, headers=bearer(activate(base_url, sysadmin, admin)), timeout=30) as client:
            root = root_of(client)
            assert root["name"] == "Root Rule Chain" and root["tenantId"] == created["id"]
    finally:
        ok(sysadmin.delete(f"/api/tenant/{created['id']['id']}"))


# --- the chain's header ---------------------------------------------------------------------------
def test_create_read_update_delete(tenant):
    chain = create_chain(tenant, "crud chain " + uuid.uuid4().hex[:6], debugMode=True, additionalInfo={"d": 1})
    chain_id = chain["id"]["id"]
    assert chain["type"] == "CORE" and chain["root"] is False and chain["version"] == 1
    assert chain["debugMode"] is True and chain["additionalInfo"] == {"d": 1} and chain["firstRuleNodeId"] is None
    assert ok(tenant.get(f"/api/ruleChain/{chain_id}")) == chain
    meta = ok(tenant.get(f"/api/ruleChain/{chain_id}/metadata"))
    assert meta["nodes"] == [] and meta["connections"] == [] and meta["firstNodeIndex"] is None
    renamed = ok(tenant.post("/api/ruleChain", json={**chain, "name": "renamed " + chain["name"]}))
    assert renamed["name"].startswith("renamed") and renamed["version"] == 2
    assert_tb_error(tenant.post("/api/ruleChain", json={**chain, "name": "stale"}), 409, 35)
    assert any(c["id"]["id"] == chain_id for c in chains(tenant, textSearch="renamed crud chain"))
    ok(tenant.delete(f"/api/ruleChain/{chain_id}"))
    assert_tb_error(tenant.get(f"/api/ruleChain/{chain_id}"), 404, 32)
    actions = ok(tenant.get(f"/api/audit/logs/entity/RULE_CHAIN/{chain_id}", params={"pageSize": 10, "page": 0}))
    assert {e["actionType"] for e in actions["data"]} == {"ADDED", "UPDATED", "DELETED"}


def test_bad_headers_and_ids_get_thingsboards_error_body(tenant):
    assert_tb_error(tenant.post("/api/ruleChain", json={"name": ""}), 400)
    assert_tb_error(tenant.post("/api/ruleChain", json={"name": "x", "type": "PLAIN"}), 400)
    assert_tb_error(tenant.get("/api/ruleChain/not-a-uuid"), 400)
    assert_tb_error(tenant.get(f"/api/ruleChain/{uuid.uuid4()}"), 404, 32)
    assert_tb_error(tenant.get("/api/ruleChains", params={"pageSize": 10, "page": 0, "type": "PLAIN"}), 400)
    assert_tb_error(tenant.post("/api/ruleChain/metadata", json=[1, 2]), 400)
    assert_tb_error(tenant.post("/api/ruleChain/metadata", json={"nodes": []}), 400)
    assert_tb_error(save_metadata(tenant, {"ruleChainId": {"entityType": "RULE_CHAIN", "id": str(uuid.uuid4())},
                                           "nodes": []}), 404)


def test_the_list_is_paged_by_type_and_text(tenant):
    marker = uuid.uuid4().hex[:8]
    for i in range(3):
        create_chain(tenant, f"paged {marker} {i}")
    edge = create_chain(tenant, f"paged {marker} edge", type="EDGE")
    page = ok(tenant.get("/api/ruleChains", params={"pageSize": 2, "page": 0, "textSearch": marker,
                                                    "sortProperty": "name", "sortOrder": "ASC"}))
    assert [c["name"] for c in page["data"]] == [f"paged {marker} 0", f"paged {marker} 1"]
    assert page["totalElements"] == 3 and page["hasNext"] is True and page["totalPages"] == 2
    assert [c["id"] for c in chains(tenant, textSearch=marker, type="EDGE")] == [edge["id"]]


# --- metadata -------------------------------------------------------------------------------------
def test_metadata_round_trip_keeps_node_ids_and_order(tenant):
    target, chain = create_chain(tenant), create_chain(tenant)
    body = metadata(chain, [forward("To target", target), output("Done"), output("Failed")],
                    [(0, 1, "Done"), (0, 2, "Failure")])
    saved = ok(save_metadata(tenant, body))
    assert saved["version"] == 2 and saved["ruleChainId"] == chain["id"]
    assert [n["name"] for n in saved["nodes"]] == ["To target", "Done", "Failed"]
    assert all(n["id"]["entityType"] == "RULE_NODE" and n["ruleChainId"] == chain["id"] for n in saved["nodes"])
    assert saved["nodes"][0]["configuration"]["ruleChainId"] == target["id"]["id"]
    assert ok(tenant.get(f"/api/ruleChain/{chain['id']['id']}/metadata")) == saved
    assert ok(tenant.get(f"/api/ruleChain/{chain['id']['id']}"))["firstRuleNodeId"] == saved["nodes"][0]["id"]

    # send it back edited: a new node first, one renamed, one dropped
    ids = [n["id"] for n in saved["nodes"]]
    edited = {**saved, "firstNodeIndex": 1,
              "nodes": [output("New"), saved["nodes"][0], {**saved["nodes"][1], "name": "Finished"}],
              "connections": [{"fromIndex": 1, "toIndex": 2, "type": "Done"},
                              {"fromIndex": 1, "toIndex": 0, "type": "Other"}]}
    again = ok(save_metadata(tenant, edited))
    assert [n["name"] for n in again["nodes"]] == ["New", "To target", "Finished"]
    assert [n["id"] for n in again["nodes"]][1:] == ids[:2] and again["nodes"][0]["id"] not in ids
    assert {(c["fromIndex"], c["toIndex"], c["type"]) for c in again["connections"]} == {(1, 2, "Done"),
                                                                                          (1, 0, "Other")}
    # a stale version is refused, as ThingsBoard does
    assert_tb_error(save_metadata(tenant, saved), 409, 35)


def test_bad_metadata_is_refused_naming_the_node_and_nothing_changes(tenant, other_tenant):
    foreign = create_chain(other_tenant)
    target, chain = create_chain(tenant), create_chain(tenant)
    good = ok(save_metadata(tenant, metadata(chain, [forward("Go", target), output("Out")], [(0, 1, "Out")])))
    cases = [
        (metadata(chain, [forward("Go", target), {"type": "org.example.TbNoSuchNode", "name": "Ghost"}], []),
         "Rule node 1 'Ghost': unknown node type 'org.example.TbNoSuchNode'"),
        (metadata(chain, [{"type": INPUT_NODE, "name": "No target", "configuration": {}}], []),
         "'No target' node configuration is invalid (rule node 0 'No target'"),
        (metadata(chain, [forward("Go", target), output("Out")], [(0, 5, "Out")]),
         "Connection 0: 'toIndex' 5 does not point to a node"),
        (metadata(chain, [forward("Go", target), output("Out")], [(1, 1, "Out")]),
         "Can't create the relation to yourself"),
        (metadata(chain, [forward("A", target), forward("B", target), output("Out")],
                  [(0, 1, "x"), (1, 0, "y"), (1, 2, "Out")]), "Can't create circling relations in rule chain"),
        (metadata(chain, [output("Out")], [], first=3), "firstNodeIndex 3 does not point to a node"),
        (metadata(chain, [forward("Elsewhere", foreign)], []),
         f"the rule chain [{foreign['id']['id']}] it forwards to is not found"),
    ]
    for body, expected in cases:
        error = assert_tb_error(save_metadata(tenant, {**body, "version": good["version"]}), 400, 31)
        assert expected in error["message"], (expected, error["message"])
    assert ok(tenant.get(f"/api/ruleChain/{chain['id']['id']}/metadata")) == good


def test_renamed_output_nodes_rename_the_callers_relations(tenant):
    inner, outer = create_chain(tenant), create_chain(tenant)
    inner_meta = ok(save_metadata(tenant, metadata(inner, [output("Done"), output("Alarm")], [], first=None)))
    ok(save_metadata(tenant, metadata(outer, [forward("Inner", inner), output("End")], [(0, 1, "Done")])))
    assert ok(tenant.get(f"/api/ruleChain/{inner['id']['id']}/output/labels")) == ["Alarm", "Done"]
    usage = ok(tenant.get(f"/api/ruleChain/{inner['id']['id']}/output/labels/usage"))
    assert [(u["ruleChainId"], u["ruleNodeName"], u["labels"]) for u in usage] == [(outer["id"], "Inner", ["Done"])]

    renamed = {**inner_meta, "nodes": [{**inner_meta["nodes"][0], "name": "Finished"}, inner_meta["nodes"][1]]}
    ok(save_metadata(tenant, renamed))
    outer_meta = ok(tenant.get(f"/api/ruleChain/{outer['id']['id']}/metadata"))
    assert [c["type"] for c in outer_meta["connections"]] == ["Finished"]

    # with updateRelated=false the callers keep their labels
    again = ok(tenant.get(f"/api/ruleChain/{inner['id']['id']}/metadata"))
    ok(save_metadata(tenant, {**again, "nodes": [{**again["nodes"][0], "name": "Over"}, again["nodes"][1]]},
                     updateRelated="false"))
    assert [c["type"] for c in ok(tenant.get(f"/api/ruleChain/{outer['id']['id']}/metadata"))["connections"]] == [
        "Finished"]


# --- root and delete ------------------------------------------------------------------------------
def test_root_moves_and_the_root_cannot_be_deleted(other_tenant):
    original = root_of(other_tenant)
    error = assert_tb_error(other_tenant.delete(f"/api/ruleChain/{original['id']['id']}"), 400, 31)
    assert error["message"] == "Deletion of Root Tenant Rule Chain is prohibited!"
    chain = create_chain(other_tenant)
    made = ok(other_tenant.post(f"/api/ruleChain/{chain['id']['id']}/root"))
    assert made["root"] is True and root_of(other_tenant)["id"] == chain["id"]
    assert ok(other_tenant.get(f"/api/ruleChain/{original['id']['id']}"))["root"] is False
    assert ok(other_tenant.post(f"/api/ruleChain/{chain['id']['id']}/root"))["root"] is True  # again: no change
    assert_tb_error(other_tenant.post("/api/ruleChain", json={"name": unique("second root"), "root": True}), 400)
    ok(other_tenant.post(f"/api/ruleChain/{original['id']['id']}/root"))
    ok(other_tenant.delete(f"/api/ruleChain/{chain['id']['id']}"))
    assert root_of(other_tenant)["id"] == original["id"]


def test_a_chain_in_use_cannot_be_deleted(tenant):
    target, caller = create_chain(tenant), create_chain(tenant)
    ok(save_metadata(tenant, metadata(caller, [forward("Call", target)], [])))
    error = assert_tb_error(tenant.delete(f"/api/ruleChain/{target['id']['id']}"), 400, 31)
    assert caller["name"] in error["message"]
    profile = ok(tenant.post("/api/deviceProfile", json={"name": unique("chains profile"),
                                                         "defaultRuleChainId": caller["id"]}))
    error = assert_tb_error(tenant.delete(f"/api/ruleChain/{caller['id']['id']}"), 400, 31)
    assert error["message"] == "The rule chain referenced by the device profiles cannot be deleted!"
    ok(tenant.delete(f"/api/deviceProfile/{profile['id']['id']}"))
    ok(tenant.delete(f"/api/ruleChain/{caller['id']['id']}"))
    ok(tenant.delete(f"/api/ruleChain/{target['id']['id']}"))  # nothing calls it any more


# --- export and import ----------------------------------------------------------------------------
def test_export_then_import_keeps_chains_pointing_at_each_other(other_tenant):
    inner = create_chain(other_tenant, unique("export inner"))
    outer = create_chain(other_tenant, unique("export outer"))
    ok(save_metadata(other_tenant, metadata(inner, [output("Done")], [])))
    ok(save_metadata(other_tenant, metadata(outer, [forward("Inner", inner), output("End")], [(0, 1, "Done")])))
    export = ok(other_tenant.get("/api/ruleChains/export", params={"limit": 100}))
    names = {c["name"]: c for c in export["ruleChains"]}
    assert {inner["name"], outer["name"], "Root Rule Chain"} <= set(names)
    assert all(c["tenantId"] is None for c in export["ruleChains"])
    assert inner["id"] not in [c["id"] for c in export["ruleChains"]]  # ids of the export only
    by_chain = {m["ruleChainId"]["id"]: m for m in export["metadata"]}
    outer_export = by_chain[names[outer["name"]]["id"]["id"]]
    assert outer_export["nodes"][0]["configuration"]["ruleChainId"] == names[inner["name"]]["id"]["id"]
    assert all("id" not in n for n in outer_export["nodes"])

    wanted = {"ruleChains": [names[inner["name"]], names[outer["name"]]],
              "metadata": [by_chain[names[inner["name"]]["id"]["id"]], outer_export]}
    results = ok(other_tenant.post("/api/ruleChains/import", json=wanted))
    assert [(r["ruleChainName"], r["updated"], r["error"]) for r in results] == [
        (inner["name"], False, None), (outer["name"], False, None)]
    new_inner, new_outer = (r["ruleChainId"]["id"] for r in results)
    assert {new_inner, new_outer}.isdisjoint({inner["id"]["id"], outer["id"]["id"]})
    meta = ok(other_tenant.get(f"/api/ruleChain/{new_outer}/metadata"))
    assert meta["nodes"][0]["configuration"]["ruleChainId"] == new_inner
    assert ok(other_tenant.get(f"/api/ruleChain/{new_outer}"))["root"] is False

    # overwrite: the chains of the same names are replaced in place
    results = ok(other_tenant.post("/api/ruleChains/import", json=wanted, params={"overwrite": "true"}))
    assert all(r["updated"] for r in results)
    assert {r["ruleChainId"]["id"] for r in results} <= {inner["id"]["id"], outer["id"]["id"], new_inner, new_outer}


def test_import_refuses_everything_when_one_chain_is_bad(other_tenant):
    before = len(chains(other_tenant))
    name = unique("import bad")
    body = {"ruleChains": [{"name": unique("import good")}, {"name": name}],
            "metadata": [{"firstNodeIndex": 0, "nodes": [output("Out")], "connections": []},
                         {"firstNodeIndex": 0, "nodes": [{"type": "org.example.Nope", "name": "N"}]}]}
    error = assert_tb_error(other_tenant.post("/api/ruleChains/import", json=body), 400, 31)
    assert error["message"].startswith(f"Rule chain '{name}': Rule node 0 'N': unknown node type")
    assert len(chains(other_tenant)) == before
    assert_tb_error(other_tenant.get("/api/ruleChains/export", params={"limit": 0}), 400)


def test_the_ui_export_format_of_one_chain_imports(other_tenant):
    one = {"ruleChain": {"name": unique("ui export"), "type": "CORE", "root": True, "debugMode": False,
                         "configuration": None, "additionalInfo": {"description": "from the UI"}},
           "metadata": {"firstNodeIndex": 0, "nodes": [output("Out")], "connections": [],
                        "ruleChainConnections": None}}
    [result] = ok(other_tenant.post("/api/ruleChains/import", json=one))
    chain = ok(other_tenant.get(f"/api/ruleChain/{result['ruleChainId']['id']}"))
    assert chain["root"] is False and chain["additionalInfo"] == {"description": "from the UI"}


@pytest.mark.parametrize("file", ["root_rule_chain.json", "root_rule_chain_pre_4_3.json"])
def test_thingsboards_root_chain_exports_import(other_tenant, file):
    export = json.loads((DATA / file).read_text())
    missing = missing_node_types(export)
    if missing:
        pytest.skip(f"the node catalogue lacks {', '.join(missing)}")
    export["ruleChain"]["name"] = unique(export["ruleChain"]["name"])
    [result] = ok(other_tenant.post("/api/ruleChains/import", json=export))
    meta = ok(other_tenant.get(f"/api/ruleChain/{result['ruleChainId']['id']}/metadata"))
    assert meta["firstNodeIndex"] == export["metadata"]["firstNodeIndex"]
    assert [(n["type"], n["name"]) for n in meta["nodes"]] == [
        (n["type"], n["name"]) for n in export["metadata"]["nodes"]]


# --- debug events ---------------------------------------------------------------------------------
@pytest.fixture
async def events_db(platform):
    database = await connect(platform.database_url, max_size=2)
    yield EventStore(database)
    await database.close()


async def test_debug_events_page_filter_and_clear(tenant, other_tenant, customer_a, events_db):
    chain = create_chain(tenant)
    saved = ok(save_metadata(tenant, metadata(chain, [output("Out")], [])))
    node_id = saved["nodes"][0]["id"]["id"]
    tenant_id = chain["tenantId"]["id"]
    from thingsray.rules.msg import EntityId, TbMsg

    device = uuid.uuid4()
    batch = []
    for i in range(5):
        msg = TbMsg("POST_TELEMETRY_REQUEST", EntityId("DEVICE", device), {"temperature": 20 + i},
                    {"deviceName": f"sensor-{i}"}, ts=1000 + i)
        batch.append(rule_node_event(uuid.UUID(tenant_id), uuid.UUID(node_id), "IN", msg, server="shard-0"))
        batch.append(rule_node_event(uuid.UUID(tenant_id), uuid.UUID(node_id), "OUT", msg, relation="Success",
                                     error="boom" if i == 4 else None))
    batch = [type(e)(e.tenant_id, e.entity_id, e.event_type, e.body, ts=10_000 + n) for n, e in enumerate(batch)]
    await events_db.record(batch)
    await events_db.record([rule_chain_event(uuid.UUID(tenant_id), uuid.UUID(chain["id"]["id"]), "started")])

    url = f"/api/events/RULE_NODE/{node_id}/DEBUG_RULE_NODE"
    page = ok(tenant.get(url, params={"tenantId": tenant_id, "pageSize": 4, "page": 0}))
    assert page["totalElements"] == 10 and page["hasNext"] is True and page["totalPages"] == 3
    assert [e["createdTime"] for e in page["data"]] == [10_009, 10_008, 10_007, 10_006]
    first = page["data"][0]
    assert first["type"] == "DEBUG_RULE_NODE" and first["entityId"] == {"entityType": "RULE_NODE", "id": node_id}
    assert first["body"]["type"] == "OUT" and first["body"]["relationType"] == "Success"
    assert first["body"]["error"] == "boom" and json.loads(first["body"]["data"]) == {"temperature": 24}
    assert json.loads(first["body"]["metadata"]) == {"deviceName": "sensor-4"}
    assert first["body"]["entityId"] == str(device) and first["body"]["msgType"] == "POST_TELEMETRY_REQUEST"

    window = ok(tenant.get(url, params={"tenantId": tenant_id, "pageSize": 10, "page": 0, "startTime": 10_002,
                                        "endTime": 10_004, "sortOrder": "ASC"}))
    assert [e["createdTime"] for e in window["data"]] == [10_002, 10_003, 10_004]

    by_filter = f"/api/events/RULE_NODE/{node_id}"
    params = {"tenantId": tenant_id, "pageSize": 10, "page": 0}
    outs = ok(tenant.post(by_filter, params=params, json={"eventType": "DEBUG_RULE_NODE", "msgDirectionType": "OUT"}))
    assert outs["totalElements"] == 5 and {e["body"]["type"] for e in outs["data"]} == {"OUT"}
    errors = ok(tenant.post(by_filter, params=params, json={"eventType": "DEBUG_RULE_NODE", "isError": True}))
    assert [e["body"]["error"] for e in errors["data"]] == ["boom"]
    found = ok(tenant.post(by_filter, params=params, json={"eventType": "DEBUG_RULE_NODE",
                                                           "metadataSearch": "SENSOR-3", "dataSearch": "23"}))
    assert found["totalElements"] == 2
    assert ok(tenant.get(f"/api/ruleNode/{node_id}/debugIn"))["data"] == json.dumps({"temperature": 24},
                                                                                     separators=(",", ":"))
    chain_events = ok(tenant.get(f"/api/events/RULE_CHAIN/{chain['id']['id']}/DEBUG_RULE_CHAIN",
                                 params={"tenantId": tenant_id, "pageSize": 10, "page": 0}))
    assert [e["body"]["message"] for e in chain_events["data"]] == ["started"]

    # nobody else reads or clears them
    other_tenant_id = ok(other_tenant.get("/api/auth/user"))["tenantId"]["id"]
    assert_tb_error(other_tenant.get(url, params={"tenantId": other_tenant_id, "pageSize": 10, "page": 0}), 404)
    assert_tb_error(other_tenant.get(url, params={"tenantId": tenant_id, "pageSize": 10, "page": 0}), 404)
    assert_tb_error(other_tenant.post(f"{by_filter}/clear", json={"eventType": "DEBUG_RULE_NODE"}), 404)
    assert_tb_error(other_tenant.get(f"/api/ruleNode/{node_id}/debugIn"), 404)
    assert_tb_error(customer_a.get(url, params={"tenantId": tenant_id, "pageSize": 10, "page": 0}), 403)
    assert_tb_error(tenant.get(f"/api/events/RULE_NODE/{node_id}/NOT_A_TYPE", params={**params}), 400)
    assert_tb_error(tenant.post(by_filter, params=params, json={"msgDirectionType": "OUT"}), 400)

    ok(tenant.post(f"{by_filter}/clear", json={"eventType": "DEBUG_RULE_NODE", "msgDirectionType": "IN"}))
    left = ok(tenant.get(url, params={"tenantId": tenant_id, "pageSize": 10, "page": 0}))
    assert left["totalElements"] == 5 and {e["body"]["type"] for e in left["data"]} == {"OUT"}
    # a node dropped from its chain takes its events along
    ok(save_metadata(tenant, {**saved, "version": saved["version"], "nodes": [output("Replacement")]}))
    assert await events_db.db.fetchval("SELECT count(*) FROM event WHERE entity_id = $1", uuid.UUID(node_id)) == 0
    assert_tb_error(tenant.get(url, params={"tenantId": tenant_id, "pageSize": 10, "page": 0}), 404)


# --- isolation ------------------------------------------------------------------------------------
def test_tenants_never_see_or_reach_each_others_chains(tenant, other_tenant, customer_a, sysadmin):
    victim = create_chain(tenant, unique("victim chain"))
    saved = ok(save_metadata(tenant, metadata(victim, [output("Out")], [])))
    victim_id = victim["id"]["id"]
    for method, path, body in (
            ("GET", f"/api/ruleChain/{victim_id}", None), ("GET", f"/api/ruleChain/{victim_id}/metadata", None),
            ("GET", f"/api/ruleChain/{victim_id}/output/labels", None),
            ("POST", f"/api/ruleChain/{victim_id}/root", None), ("DELETE", f"/api/ruleChain/{victim_id}", None),
            ("POST", "/api/ruleChain", {**victim, "name": "hijacked"}),
            ("POST", "/api/ruleChain/metadata", {**saved, "nodes": [output("Hijacked")]})):
        assert_tb_error(other_tenant.request(method, path, json=body), 404)
    assert victim["name"] not in json.dumps(chains(other_tenant))
    export = ok(other_tenant.get("/api/ruleChains/export", params={"limit": 1000}))
    assert victim["name"] not in json.dumps(export)

    # nor point at them: in metadata, or in an import
    own = create_chain(other_tenant)
    error = assert_tb_error(save_metadata(other_tenant, metadata(own, [forward("Steal", victim)], [])), 400)
    assert "is not found" in error["message"]
    assert_tb_error(other_tenant.post("/api/ruleChains/import", json={
        "ruleChain": {"name": unique("stealer")}, "metadata": {"nodes": [forward("Steal", victim)]}}), 400)

    # customer users and the system administrator do not work with rule chains at all
    for client in (customer_a, sysadmin):
        assert_tb_error(client.get("/api/ruleChains", params={"pageSize": 10, "page": 0}), 403)
        assert_tb_error(client.get(f"/api/ruleChain/{victim_id}"), 403)
        assert_tb_error(client.post("/api/ruleChain", json={"name": "nope"}), 403)
    after = ok(tenant.get(f"/api/ruleChain/{victim_id}/metadata"))
    assert after == saved


# --- the script test ------------------------------------------------------------------------------
def test_scripts_run_on_a_test_message_as_the_editor_asks(tenant, customer_a):
    message = {"argNames": ["msg", "metadata", "msgType"], "msg": json.dumps({"temperature": 42}),
               "metadata": {"deviceName": "Device A", "deviceType": "Thermometer"},
               "msgType": "POST_TELEMETRY_REQUEST"}

    def run(lang: str, script_type: str, script: str) -> dict[str, str]:
        return ok(tenant.post("/api/ruleChain/testScript", params={"scriptLang": lang},
                              json={**message, "script": script, "scriptType": script_type}))

    assert run("TBEL", "filter", "return msg.temperature > 40;") == {"output": "true", "error": ""}
    assert run("JS", "filter", "return msg.temperature > 50;") == {"output": "false", "error": ""}
    updated = run("JS", "update", "msg.temperature = msg.temperature + 1; metadata.seen = 'yes';"
                                  " return {msg: msg, metadata: metadata, msgType: msgType};")
    assert updated["error"] == "" and json.loads(updated["output"]) == {
        "msg": {"temperature": 43}, "metadata": {"deviceName": "Device A", "deviceType": "Thermometer",
                                                 "seen": "yes"}, "msgType": "POST_TELEMETRY_REQUEST"}
    assert json.loads(run("TBEL", "switch", "return ['Hot', 'Alert'];")["output"]) == ["Hot", "Alert"]
    assert run("TBEL", "string", "return 'Device: ' + metadata.deviceName;")["output"] == "Device: Device A"
    broken = run("JS", "filter", "return msg.temperature >;")
    assert broken["output"] == "" and broken["error"]
    thrown = run("JS", "filter", "throw new Error('no way');")
    assert "no way" in thrown["error"]
    assert "Wrong result type" in run("TBEL", "filter", "return 'maybe';")["error"]
    assert run("TBEL", "nonsense", "return 1;")["error"] == "Unsupported script type: nonsense"
    assert_tb_error(customer_a.post("/api/ruleChain/testScript", json={**message, "script": "return true;",
                                                                       "scriptType": "filter"}), 403)


# --- the official client --------------------------------------------------------------------------
def test_tb_rest_client_builds_and_reads_a_chain(base_url):
    from tb_rest_client.models import NodeConnectionInfo, RuleChain, RuleChainMetaData, RuleNode
    from tb_rest_client.rest_client import RestClient

    from tests.conftest import TENANT_ADMIN

    rest = RestClient(base_url=base_url)
    rest.login(username=TENANT_ADMIN[0], password=TENANT_ADMIN[1])
    target = rest.save_rule_chain_v1(RuleChain(name=unique("client target")))
    chain = rest.save_rule_chain_v1(RuleChain(name=unique("client chain"), debug_mode=False))
    assert chain.type == "CORE" and chain.root is False and chain.version == 1
    saved = rest.save_rule_chain_meta_data(RuleChainMetaData(
        rule_chain_id=chain.id, first_node_index=0,
        nodes=[RuleNode(type=INPUT_NODE, name="Forward", configuration={"ruleChainId": target.id.id}),
               RuleNode(type=OUTPUT_NODE, name="Done", configuration={})],
        connections=[NodeConnectionInfo(from_index=0, to_index=1, type="Success")],
        notes=[{"id": "n1", "x": 10, "y": 20, "width": 100, "height": 50, "content": "**why**"}]))
    assert [n.name for n in saved.nodes] == ["Forward", "Done"] and saved.version == 2
    # the client's save_rule_chain asks for a chain made from the default template
    templated = rest.save_rule_chain(RuleChain(name=unique("client templated")))
    assert len(rest.get_rule_chain_meta_data(templated.id).nodes) == 6
    rest.delete_rule_chain(templated.id)
    read = rest.get_rule_chain_meta_data(chain.id)
    assert [(c.from_index, c.to_index, c.type) for c in read.connections] == [(0, 1, "Success")]
    assert read.nodes[0].id.id == saved.nodes[0].id.id and read.notes[0].content == "**why**"
    page = rest.get_rule_chains(page_size=100, page=0, text_search=chain.name)
    assert [c.id.id for c in page.data] == [chain.id.id]
    assert rest.get_rule_chain_output_labels(chain.id) == ["Done"]
    rest.delete_rule_chain(chain.id)
    rest.delete_rule_chain(target.id)
