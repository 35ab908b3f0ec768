"""Alarms over REST (/api/alarm, /api/alarms, /api/v2/...) and the AlarmService under them: one
active alarm per (originator, type), ack / clear / assign / delete, queries, propagation, who may
see what, and ThingsBoard's error bodies for bad input."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest

from tests.conftest import assert_tb_error, unique
from tests.tenancy import customer_id
from thingsray.rules.msg import EntityId, MsgType
from thingsray.storage import PageQuery, connect
from thingsray.storage.alarms import AlarmNotFound, AlarmQuery, AlarmService, StatusFilter

ALARM_FIELDS = {"id", "createdTime", "tenantId", "customerId", "type", "originator", "severity", "acknowledged",
                "cleared", "assigneeId", "startTs", "endTs", "ackTs", "clearTs", "assignTs", "details", "propagate",
                "propagateToOwner", "propagateToTenant", "propagateRelationTypes", "name", "status"}


def ok(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def device(client: httpx.Client, customer: str | None = None, label: str | None = None) -> dict:
    created = ok(client.post("/api/device", json={"name": unique("Alarm device"), "label": label}))
    if customer is not None:
        ok(client.post(f"/api/customer/{customer}/device/{created['id']['id']}"))
    return created


def asset(client: httpx.Client) -> dict:
    return ok(client.post("/api/asset", json={"name": unique("Alarm asset"), "type": "building"}))


def raise_alarm(client: httpx.Client, originator: dict, alarm_type: str, severity: str = "CRITICAL",
                **fields) -> httpx.Response:
    return client.post("/api/alarm", json={"type": alarm_type, "originator": originator["id"],
                                           "severity": severity, **fields})


def alarms_of(client: httpx.Client, entity: dict, **params) -> list[dict]:
    page = ok(client.get(f"/api/alarm/{entity['id']['entityType']}/{entity['id']['id']}",
                         params={"pageSize": 100, "page": 0, **params}))
    return page["data"]


def ids(alarms: list[dict]) -> set[str]:
    return {a["id"]["id"] for a in alarms}


@pytest.fixture(scope="module")
def customer_a_id(tenant) -> str:
    return customer_id(tenant, "Customer A")


def test_create_read_and_the_shapes_thingsboard_gives(tenant):
    thermostat = device(tenant, label="Hall thermostat")
    alarm_type = unique("High Temperature")
    alarm = ok(raise_alarm(tenant, thermostat, alarm_type, details={"temperature": 42}))
    assert set(alarm) == ALARM_FIELDS
    assert alarm["id"]["entityType"] == "ALARM" and alarm["originator"] == thermostat["id"]
    assert (alarm["type"], alarm["name"], alarm["severity"], alarm["status"]) == (
        alarm_type, alarm_type, "CRITICAL", "ACTIVE_UNACK")
    assert alarm["acknowledged"] is False and alarm["cleared"] is False and alarm["assigneeId"] is None
    assert alarm["customerId"] is None and alarm["tenantId"] == thermostat["tenantId"]
    assert alarm["startTs"] == alarm["endTs"] > 0 and alarm["ackTs"] == alarm["clearTs"] == 0
    assert alarm["details"] == {"temperature": 42} and alarm["propagateRelationTypes"] == []

    assert ok(tenant.get(f"/api/alarm/{alarm['id']['id']}")) == alarm
    info = ok(tenant.get(f"/api/alarm/info/{alarm['id']['id']}"))
    assert set(info) == ALARM_FIELDS | {"originatorName", "originatorLabel", "assignee"}
    assert (info["originatorName"], info["originatorLabel"], info["assignee"]) == (
        thermostat["name"], "Hall thermostat", None)


def test_a_second_create_updates_the_active_alarm_and_a_cleared_one_makes_room(tenant):
    thermostat = device(tenant)
    alarm_type = unique("Overheat")
    first = ok(raise_alarm(tenant, thermostat, alarm_type, "MINOR", startTs=1000, endTs=1000))
    second = ok(raise_alarm(tenant, thermostat, alarm_type, "MAJOR", startTs=2000, endTs=2000,
                            details={"reading": 2}))
    assert second["id"] == first["id"]
    assert (second["severity"], second["startTs"], second["endTs"], second["details"]) == (
        "MAJOR", 1000, 2000, {"reading": 2})
    assert len(alarms_of(tenant, thermostat)) == 1

    ok(tenant.post(f"/api/alarm/{first['id']['id']}/clear"))
    third = ok(raise_alarm(tenant, thermostat, alarm_type, "WARNING"))
    assert third["id"] != first["id"] and third["status"] == "ACTIVE_UNACK"
    statuses = {a["id"]["id"]: a["status"] for a in alarms_of(tenant, thermostat)}
    assert statuses == {first["id"]["id"]: "CLEARED_UNACK", third["id"]["id"]: "ACTIVE_UNACK"}


def test_concurrent_creates_over_rest_make_one_alarm(tenant, base_url):
    thermostat = device(tenant)
    alarm_type = unique("Race")

    async def create_all() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=base_url, headers=dict(tenant.headers), timeout=30) as client:
            return await asyncio.gather(*(client.post("/api/alarm", json={
                "type": alarm_type, "originator": thermostat["id"], "severity": "MAJOR"}) for _ in range(10)))

    responses = asyncio.run(create_all())
    assert {r.status_code for r in responses} == {200}, [r.text for r in responses if r.status_code != 200]
    assert len({r.json()["id"]["id"] for r in responses}) == 1
    assert len(alarms_of(tenant, thermostat)) == 1


@pytest.fixture
async def alarm_service(platform):
    db = await connect(platform.database_url, max_size=4)
    yield AlarmService(db)
    await db.close()


async def tenant_and_device(service: AlarmService) -> tuple[uuid.UUID, EntityId]:
    row = await service.db.fetchrow("SELECT tenant_id, id FROM device ORDER BY created_time LIMIT 1")
    return row["tenant_id"], EntityId("DEVICE", row["id"])


async def test_racing_writers_raise_one_alarm_and_each_change_names_its_message(alarm_service):
    tenant_id, originator = await tenant_and_device(alarm_service)
    alarm_type = unique("Service race")
    changes = await asyncio.gather(*(alarm_service.create_or_update(
        tenant_id, None, originator, alarm_type, "MINOR", {"n": i}, ts=1000 + i) for i in range(10)))
    assert sum(c.created for c in changes) == 1
    assert len({c.alarm["id"]["id"] for c in changes}) == 1
    assert {c.msg_type for c in changes if c.created} == {MsgType.ALARM_CREATED}
    assert {c.msg_type for c in changes if not c.created} <= {MsgType.ALARM_UPDATED, None}
    alarm_id = uuid.UUID(changes[0].alarm["id"]["id"])
    assert (await alarm_service.get(alarm_id))["endTs"] == 1009  # the end never moves back in time

    raised = await alarm_service.create_or_update(tenant_id, None, originator, alarm_type, "CRITICAL", None, ts=2000)
    assert (raised.msg_type, raised.severity_changed, raised.old_severity) == (
        MsgType.ALARM_SEVERITY_UPDATED, True, "MINOR")
    assert raised.entities == (originator,)
    assert (await alarm_service.ack(alarm_id, 2001)).msg_type == MsgType.ALARM_ACK
    assert await alarm_service.ack(alarm_id, 2002) is None
    cleared = await alarm_service.clear(tenant_id, originator, alarm_type, {"cooled": True}, 2003)
    assert cleared.msg_type == MsgType.ALARM_CLEAR and cleared.alarm["status"] == "CLEARED_ACK"
    assert cleared.alarm["details"] == {"cooled": True}
    assert await alarm_service.clear(tenant_id, originator, alarm_type, None, 2004) is None
    assert await alarm_service.clear_by_id(alarm_id, 2004) is None
    deleted = await alarm_service.delete(alarm_id)
    assert deleted.msg_type == MsgType.ALARM_DELETE and await alarm_service.get(alarm_id) is None
    with pytest.raises(AlarmNotFound):
        await alarm_service.ack(alarm_id, 2005)


async def test_owner_and_tenant_propagation(alarm_service):
    tenant_id, originator = await tenant_and_device(alarm_service)
    customer = uuid.uuid4()
    change = await alarm_service.create_or_update(tenant_id, customer, originator, unique("Owned"), "MAJOR", None,
                                                  propagate_to_owner=True, propagate_to_tenant=True, ts=1)
    assert set(change.entities) == {originator, EntityId("CUSTOMER", customer), EntityId("TENANT", tenant_id)}
    page = await alarm_service.find(tenant_id, PageQuery(0, 10), AlarmQuery(StatusFilter(cleared=False)),
                                    entity=EntityId("CUSTOMER", customer))
    assert [a["id"] for a in page["data"]] == [change.alarm["id"]]


def test_ack_clear_assign_unassign_and_delete(tenant):
    thermostat = device(tenant)
    alarm_id = ok(raise_alarm(tenant, thermostat, unique("Lifecycle")))["id"]["id"]
    acked = ok(tenant.post(f"/api/alarm/{alarm_id}/ack"))
    assert acked["status"] == "ACTIVE_ACK" and acked["ackTs"] > 0
    assert "Alarm was already acknowledged!" == assert_tb_error(tenant.post(f"/api/alarm/{alarm_id}/ack"),
                                                                400, 31)["message"]

    me = ok(tenant.get("/api/auth/user"))
    assigned = ok(tenant.post(f"/api/alarm/{alarm_id}/assign/{me['id']['id']}"))
    assert assigned["assigneeId"] == me["id"] and assigned["assignTs"] > 0
    assert assigned["assignee"]["email"] == me["email"] and assigned["assignee"]["id"] == me["id"]
    assert_tb_error(tenant.post(f"/api/alarm/{alarm_id}/assign/{me['id']['id']}"), 400, 31)
    unassigned = ok(tenant.delete(f"/api/alarm/{alarm_id}/assign"))
    assert unassigned["assigneeId"] is None and unassigned["assignee"] is None
    assert_tb_error(tenant.delete(f"/api/alarm/{alarm_id}/assign"), 400, 31)

    cleared = ok(tenant.post(f"/api/alarm/{alarm_id}/clear"))
    assert cleared["status"] == "CLEARED_ACK" and cleared["clearTs"] > 0
    assert "Alarm was already cleared!" == assert_tb_error(tenant.post(f"/api/alarm/{alarm_id}/clear"),
                                                           400, 31)["message"]
    assert tenant.delete(f"/api/alarm/{alarm_id}").json() is True
    assert_tb_error(tenant.get(f"/api/alarm/{alarm_id}"), 404, 32)

    log = ok(tenant.get(f"/api/audit/logs/entity/ALARM/{alarm_id}", params={"pageSize": 50, "page": 0}))
    assert {e["actionType"] for e in log["data"]} == {
        "ADDED", "ALARM_ACK", "ALARM_ASSIGNED", "ALARM_UNASSIGNED", "ALARM_CLEAR", "ALARM_DELETE"}


def test_save_with_state_fields_acks_clears_and_assigns_as_thingsboard_does(tenant):
    thermostat = device(tenant)
    me = ok(tenant.get("/api/auth/user"))
    alarm = ok(raise_alarm(tenant, thermostat, unique("Saved"), acknowledged=True, assigneeId=me["id"]))
    assert alarm["status"] == "ACTIVE_ACK" and alarm["assigneeId"] == me["id"]
    updated = ok(tenant.post("/api/alarm", json={**alarm, "severity": "WARNING", "cleared": True}))
    assert updated["id"] == alarm["id"] and updated["severity"] == "WARNING" and updated["status"] == "CLEARED_ACK"
    unknown = {**alarm, "id": {"entityType": "ALARM", "id": str(uuid.uuid4())}}
    assert_tb_error(tenant.post("/api/alarm", json=unknown), 404, 32)


def test_queries_with_every_filter(tenant):
    thermostat = device(tenant)
    prefix = unique("Q")
    made = {}
    for name, severity in (("critical", "CRITICAL"), ("major", "MAJOR"), ("minor", "MINOR"), ("warning", "WARNING")):
        made[name] = ok(raise_alarm(tenant, thermostat, f"{prefix} {name}", severity))
    key = {name: alarm["id"]["id"] for name, alarm in made.items()}
    me = ok(tenant.get("/api/auth/user"))
    ok(tenant.post(f"/api/alarm/{key['major']}/ack"))
    ok(tenant.post(f"/api/alarm/{key['minor']}/clear"))
    ok(tenant.post(f"/api/alarm/{key['warning']}/ack"))
    ok(tenant.post(f"/api/alarm/{key['warning']}/clear"))
    ok(tenant.post(f"/api/alarm/{key['critical']}/assign/{me['id']['id']}"))

    def found(**params) -> set[str]:
        return {k for k, v in key.items() if v in ids(alarms_of(tenant, thermostat, **params))}

    assert found() == set(key)
    assert found(searchStatus="ANY") == set(key)
    assert found(searchStatus="ACTIVE") == {"critical", "major"}
    assert found(searchStatus="CLEARED") == {"minor", "warning"}
    assert found(searchStatus="ACK") == {"major", "warning"}
    assert found(searchStatus="UNACK") == {"critical", "minor"}
    assert found(status="ACTIVE_UNACK") == {"critical"}
    assert found(status="ACTIVE_ACK") == {"major"}
    assert found(status="CLEARED_UNACK") == {"minor"}
    assert found(status="CLEARED_ACK") == {"warning"}
    assert found(assigneeId=me["id"]["id"]) == {"critical"}
    assert found(textSearch="MAJ") == {"major"}               # matches the severity
    assert found(textSearch="cleared_ack") == {"warning"}     # matches the status
    assert found(textSearch=f"{prefix} min") == {"minor"}     # matches the type
    newest = max(a["createdTime"] for a in made.values())
    assert found(startTime=newest + 1) == set()
    assert found(endTime=newest) == set(key)
    by_severity = alarms_of(tenant, thermostat, sortProperty="severity", sortOrder="DESC")
    assert [a["severity"] for a in by_severity] == ["CRITICAL", "MAJOR", "MINOR", "WARNING"]
    by_type = alarms_of(tenant, thermostat, sortProperty="type", sortOrder="ASC")
    assert [a["type"] for a in by_type] == sorted(a["type"] for a in made.values())
    assert by_type[0]["originatorName"] == thermostat["name"]
    paged = ok(tenant.get(f"/api/alarm/DEVICE/{thermostat['id']['id']}", params={"pageSize": 3, "page": 1}))
    assert (paged["totalElements"], paged["totalPages"], paged["hasNext"], len(paged["data"])) == (4, 2, False, 1)

    v2 = f"/api/v2/alarm/DEVICE/{thermostat['id']['id']}"
    listed = ok(tenant.get(v2, params={"pageSize": 10, "page": 0, "statusList": "ACTIVE,ACK",
                                       "severityList": ["MAJOR", "CRITICAL"]}))
    assert ids(listed["data"]) == {key["major"]}
    typed = ok(tenant.get(v2, params={"pageSize": 10, "page": 0, "typeList": f"{prefix} minor,{prefix} warning"}))
    assert ids(typed["data"]) == {key["minor"], key["warning"]}
    everywhere = ok(tenant.get("/api/v2/alarms", params={"pageSize": 1000, "page": 0,
                                                         "typeList": f"{prefix} critical"}))
    assert ids(everywhere["data"]) == {key["critical"]}
    tenant_wide = ok(tenant.get("/api/alarms", params={"pageSize": 1000, "page": 0, "textSearch": prefix,
                                                       "searchStatus": "CLEARED"}))
    assert ids(tenant_wide["data"]) == {key["minor"], key["warning"]}


def test_highest_severity_and_types(tenant):
    thermostat = device(tenant)
    path = f"/api/alarm/highestSeverity/DEVICE/{thermostat['id']['id']}"
    empty = tenant.get(path)
    assert empty.status_code == 200 and empty.content == b""
    prefix = unique("Sev")
    ok(raise_alarm(tenant, thermostat, f"{prefix} a", "MINOR"))
    major = ok(raise_alarm(tenant, thermostat, f"{prefix} b", "MAJOR"))
    assert tenant.get(path).json() == "MAJOR"
    ok(tenant.post(f"/api/alarm/{major['id']['id']}/clear"))
    assert tenant.get(path, params={"searchStatus": "ACTIVE"}).json() == "MINOR"
    assert tenant.get(path, params={"status": "CLEARED_UNACK"}).json() == "MAJOR"

    types = ok(tenant.get("/api/alarm/types", params={"pageSize": 10, "page": 0, "textSearch": prefix}))
    assert [t["type"] for t in types["data"]] == [f"{prefix} a", f"{prefix} b"]
    assert types["data"][0]["entityType"] == "ALARM" and types["data"][0]["tenantId"] == thermostat["tenantId"]
    desc = ok(tenant.get("/api/alarm/types", params={"pageSize": 1, "page": 0, "textSearch": prefix,
                                                     "sortOrder": "DESC"}))
    assert [t["type"] for t in desc["data"]] == [f"{prefix} b"] and desc["totalElements"] == 2


def test_propagation_to_parents_owner_and_tenant(tenant, customer_a_id):
    building, floor = asset(tenant), asset(tenant)
    sensor = device(tenant)
    for parent, child in ((building, floor), (floor, sensor)):
        ok(tenant.post("/api/relation", json={"from": parent["id"], "to": child["id"], "type": "Contains"}))
    spread = ok(raise_alarm(tenant, sensor, unique("Smoke"), propagate=True))["id"]["id"]
    local = ok(raise_alarm(tenant, sensor, unique("Battery")))["id"]["id"]
    managed_only = ok(raise_alarm(tenant, sensor, unique("Door"), propagate=True,
                                  propagateRelationTypes=["Manages"]))["id"]["id"]
    contains_only = ok(raise_alarm(tenant, sensor, unique("Water"), propagate=True,
                                   propagateRelationTypes=["Contains"]))["id"]["id"]
    assert ids(alarms_of(tenant, sensor)) == {spread, local, managed_only, contains_only}
    for parent in (floor, building):
        assert ids(alarms_of(tenant, parent)) == {spread, contains_only}
    assert tenant.get(f"/api/alarm/highestSeverity/ASSET/{building['id']['id']}").json() == "CRITICAL"

    owned = device(tenant, customer=customer_a_id)
    to_owner = ok(raise_alarm(tenant, owned, unique("Owner"), propagateToOwner=True))
    assert to_owner["customerId"] == {"entityType": "CUSTOMER", "id": customer_a_id}
    assert to_owner["id"]["id"] in ids(alarms_of(tenant, {"id": {"entityType": "CUSTOMER", "id": customer_a_id}}))
    tenant_id = owned["tenantId"]
    to_tenant = ok(raise_alarm(tenant, owned, unique("Tenant"), propagateToTenant=True))["id"]["id"]
    on_tenant = ids(alarms_of(tenant, {"id": tenant_id}, textSearch="Tenant"))
    assert to_tenant in on_tenant and to_owner["id"]["id"] not in on_tenant


def test_tenants_and_customers_see_only_their_alarms(tenant, other_tenant, customer_a, customer_b, customer_a_id):
    theirs = device(tenant, customer=customer_a_id)
    ours = device(tenant)
    customer_alarm = ok(raise_alarm(tenant, theirs, unique("Customer alarm")))
    tenant_alarm = ok(raise_alarm(tenant, ours, unique("Tenant alarm")))
    assert customer_alarm["customerId"]["id"] == customer_a_id
    cid, tid = customer_alarm["id"]["id"], tenant_alarm["id"]["id"]

    # another tenant: nothing exists
    for method, path in (("GET", f"/api/alarm/{cid}"), ("GET", f"/api/alarm/info/{cid}"),
                         ("POST", f"/api/alarm/{cid}/ack"), ("POST", f"/api/alarm/{cid}/clear"),
                         ("DELETE", f"/api/alarm/{cid}"), ("DELETE", f"/api/alarm/{cid}/assign")):
        assert_tb_error(other_tenant.request(method, path), 404, 32)
    assert_tb_error(other_tenant.get(f"/api/alarm/DEVICE/{theirs['id']['id']}", params={"pageSize": 10, "page": 0}),
                    404)
    assert_tb_error(raise_alarm(other_tenant, ours, "Hijack"), 404)
    everything = ok(other_tenant.get("/api/alarms", params={"pageSize": 1000, "page": 0}))
    assert not ids(everything["data"]) & {cid, tid}

    # the customer's user: its customer's alarms only, which it may acknowledge and clear
    assert ok(customer_a.get(f"/api/alarm/{cid}"))["id"]["id"] == cid
    assert_tb_error(customer_a.get(f"/api/alarm/{tid}"), 403, 20)
    assert_tb_error(customer_a.post(f"/api/alarm/{tid}/ack"), 403, 20)
    assert cid in ids(ok(customer_a.get("/api/alarms", params={"pageSize": 1000, "page": 0}))["data"])
    assert tid not in ids(ok(customer_a.get("/api/alarms", params={"pageSize": 1000, "page": 0}))["data"])
    assert ids(alarms_of(customer_a, theirs)) == {cid}
    assert ok(customer_a.post(f"/api/alarm/{cid}/ack"))["status"] == "ACTIVE_ACK"
    assert ok(customer_a.post(f"/api/alarm/{cid}/clear"))["status"] == "CLEARED_ACK"
    assert_tb_error(customer_b.get(f"/api/alarm/{cid}"), 403, 20)
    assert_tb_error(customer_b.post(f"/api/alarm/{cid}/ack"), 403, 20)
    assert cid not in ids(ok(customer_b.get("/api/alarms", params={"pageSize": 1000, "page": 0}))["data"])


def test_bad_input_gets_thingsboard_error_bodies(tenant):
    thermostat = device(tenant)
    entity_path = f"/api/alarm/DEVICE/{thermostat['id']['id']}"
    page = {"pageSize": 10, "page": 0}
    assert_tb_error(tenant.get("/api/alarm/not-a-uuid"), 400, 31)
    missing = str(uuid.uuid4())
    assert assert_tb_error(tenant.get(f"/api/alarm/{missing}"), 404, 32)["message"] == (
        f"Alarm with id [{missing}] is not found")
    assert_tb_error(tenant.post(f"/api/alarm/{missing}/ack"), 404, 32)
    assert_tb_error(tenant.delete(f"/api/alarm/{missing}"), 404, 32)
    assert_tb_error(raise_alarm(tenant, thermostat, "Bad", "SEVERE"), 400, 31)
    assert_tb_error(tenant.post("/api/alarm", json={"originator": thermostat["id"], "severity": "MAJOR"}), 400, 31)
    assert_tb_error(tenant.post("/api/alarm", json={"type": "No originator", "severity": "MAJOR"}), 400, 31)
    assert_tb_error(raise_alarm(tenant, thermostat, "Backwards", startTs=2000, endTs=1000), 400, 31)
    assert_tb_error(raise_alarm(tenant, {"id": {"entityType": "DEVICE", "id": missing}}, "Ghost"), 404, 32)
    assert_tb_error(raise_alarm(tenant, {"id": {"entityType": "GADGET", "id": missing}}, "Odd"), 400)
    assert_tb_error(tenant.get(entity_path, params={**page, "searchStatus": "SOMETIMES"}), 400, 31)
    assert_tb_error(tenant.get(entity_path, params={**page, "status": "ACTIVE"}), 400, 31)
    both = assert_tb_error(tenant.get(entity_path, params={**page, "searchStatus": "ACTIVE",
                                                           "status": "ACTIVE_ACK"}), 400, 31)
    assert "can't be specified at the same time" in both["message"]
    assert_tb_error(tenant.get(entity_path, params={**page, "sortProperty": "color"}), 400, 31)
    assert_tb_error(tenant.get(entity_path, params={**page, "assigneeId": "me"}), 400, 31)
    assert_tb_error(tenant.get(entity_path, params={"page": 0}), 400)
    assert_tb_error(tenant.get(f"/api/alarm/GADGET/{missing}", params=page), 400)
    assert_tb_error(tenant.get(f"/api/v2/alarm/DEVICE/{thermostat['id']['id']}",
                               params={**page, "severityList": "LOUD"}), 400, 31)
    alarm_id = ok(raise_alarm(tenant, thermostat, unique("Assign")))["id"]["id"]
    assert_tb_error(tenant.post(f"/api/alarm/{alarm_id}/assign/{missing}"), 404, 32)
    assert_tb_error(tenant.post(f"/api/alarm/{alarm_id}/assign/nobody"), 400, 31)
