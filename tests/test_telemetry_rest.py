"""/api/plugins/telemetry: reads of data written straight into the database, time series deletes,
and writes through the live data path (these need ``services.live``: the shards).

Every test uses its own keys (``unique``), so tests sharing the demo devices never see each
other's data.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
from tb_rest_client.models import DeviceId
from tb_rest_client.rest import ApiException
from tb_rest_client.rest_client import RestClient

from tests.conftest import CUSTOMER_A, assert_tb_error
from tests.tenancy import other_tenant_client
from thingsray.kv import JsonValue
from thingsray.storage import connect
from thingsray.storage.writer import AttributeRow, TelemetryWriter, TsRow, WriteRequest

BASE = 1_700_000_000_000
PATH = "/api/plugins/telemetry/DEVICE/{}"


def key(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def write(database_url: str, ts: list[TsRow] = (), attributes: list[AttributeRow] = ()) -> None:
    async def go() -> None:
        db = await connect(database_url, max_size=2)
        try:
            await TelemetryWriter(db, linger_s=0).write(WriteRequest(list(ts), True, list(attributes)))
        finally:
            await db.close()

    asyncio.run(go())


def device_id(tenant, name: str) -> str:
    response = tenant.get("/api/tenant/devices", params={"deviceName": name})
    assert response.status_code == 200, response.text
    return response.json()["id"]["id"]


@pytest.fixture(scope="module")
def a1(tenant) -> str:
    return device_id(tenant, "Test Device A1")


@pytest.fixture(scope="module")
def b1(tenant) -> str:
    return device_id(tenant, "Test Device B1")


def series(database_url: str, device: str, name: str, values: list, step: int = 1000, start: int = BASE) -> None:
    write(database_url, [TsRow(uuid.UUID(device), name, start + i * step, v) for i, v in enumerate(values)])


# --- latest values -------------------------------------------------------------------------------
def test_latest_values_are_strings_by_default_and_typed_when_strict(tenant, a1, database_url):
    k = {t: key(t) for t in ("dbl", "lng", "flag", "text", "obj", "big")}
    rows = [TsRow(uuid.UUID(a1), k["dbl"], BASE, 36.7), TsRow(uuid.UUID(a1), k["lng"], BASE, 42),
            TsRow(uuid.UUID(a1), k["flag"], BASE, True), TsRow(uuid.UUID(a1), k["text"], BASE, "abc"),
            TsRow(uuid.UUID(a1), k["obj"], BASE, JsonValue.of({"a": [1, 2]})),
            TsRow(uuid.UUID(a1), k["big"], BASE + 5, 1e10), TsRow(uuid.UUID(a1), k["big"], BASE, 1.0)]
    write(database_url, rows)
    keys = ",".join(k.values())
    plain = tenant.get(PATH.format(a1) + "/values/timeseries", params={"keys": keys}).json()
    assert plain[k["dbl"]] == [{"ts": BASE, "value": "36.7"}]
    assert plain[k["lng"]][0]["value"] == "42"
    assert plain[k["flag"]][0]["value"] == "true"
    assert plain[k["text"]][0]["value"] == "abc"
    assert plain[k["obj"]][0]["value"] == '{"a":[1,2]}'
    assert plain[k["big"]] == [{"ts": BASE + 5, "value": "1.0E10"}]  # Java's Double.toString
    assert list(plain) == list(k.values())  # in the order asked
    strict = tenant.get(PATH.format(a1) + "/values/timeseries",
                        params={"keys": keys, "useStrictDataTypes": "true"}).json()
    assert strict[k["dbl"]][0]["value"] == 36.7
    assert strict[k["lng"]][0]["value"] == 42
    assert strict[k["flag"]][0]["value"] is True
    assert strict[k["obj"]][0]["value"] == {"a": [1, 2]}
    everything = tenant.get(PATH.format(a1) + "/values/timeseries").json()
    assert set(k.values()) <= set(everything)
    listed = tenant.get(PATH.format(a1) + "/keys/timeseries").json()
    assert set(k.values()) <= set(listed) and listed == sorted(listed)


def test_latest_of_a_key_without_data_is_null_as_thingsboard_answers(tenant, a1):
    missing = key("missing")
    answer = tenant.get(PATH.format(a1) + "/values/timeseries", params={"keys": missing}).json()
    assert answer[missing][0]["value"] is None and isinstance(answer[missing][0]["ts"], int)


# --- history -------------------------------------------------------------------------------------
def test_history_raw_points_are_limited_ordered_and_end_exclusive(tenant, a1, database_url):
    k = key("raw")
    series(database_url, a1, k, [1, 2, 3, 4, 5])
    path = PATH.format(a1) + "/values/timeseries"
    window = {"keys": k, "startTs": BASE, "endTs": BASE + 4000}
    desc = tenant.get(path, params={**window, "limit": 2}).json()
    assert desc == {k: [{"ts": BASE + 3000, "value": "4"}, {"ts": BASE + 2000, "value": "3"}]}
    asc = tenant.get(path, params={**window, "limit": 2, "orderBy": "ASC", "useStrictDataTypes": True}).json()
    assert asc == {k: [{"ts": BASE, "value": 1}, {"ts": BASE + 1000, "value": 2}]}
    history = tenant.get(path + "/history", params={**window, "orderBy": "ASC"}).json()
    assert [p["value"] for p in history[k]] == ["1", "2", "3", "4"]  # the point at endTs is out
    empty = tenant.get(path, params={"keys": k, "startTs": 0, "endTs": BASE}).json()
    assert empty == {}


@pytest.mark.parametrize(("agg", "strict", "plain"), [
    ("MIN", [1, 3, 5], ["1", "3", "5"]),
    ("MAX", [2, 4, 6], ["2", "4", "6"]),
    ("SUM", [3, 7, 11], ["3", "7", "11"]),
    ("AVG", [1.5, 3.5, 5.5], ["1.5", "3.5", "5.5"]),
    ("COUNT", [2, 2, 2], ["2", "2", "2"]),
])
def test_aggregation_in_buckets_stamped_with_their_middle(tenant, a1, database_url, agg, strict, plain):
    k = key("agg")
    series(database_url, a1, k, [1, 2, 3, 4, 5, 6])
    params = {"keys": k, "startTs": BASE, "endTs": BASE + 6000, "interval": 2000, "agg": agg}
    typed = tenant.get(PATH.format(a1) + "/values/timeseries", params={**params, "useStrictDataTypes": True})
    assert typed.status_code == 200, typed.text
    assert typed.json()[k] == [{"ts": BASE + 1000 + i * 2000, "value": v} for i, v in enumerate(strict)]
    strings = tenant.get(PATH.format(a1) + "/values/timeseries", params=params).json()
    assert [p["value"] for p in strings[k]] == plain


def test_aggregation_mixes_longs_and_doubles_and_cuts_the_last_bucket(tenant, a1, database_url):
    k = key("mixed")
    series(database_url, a1, k, [1, 2.5, 4, 10], step=1000)
    params = {"keys": k, "startTs": BASE, "endTs": BASE + 3000, "interval": 2000, "useStrictDataTypes": True}
    path = PATH.format(a1) + "/values/timeseries"
    total = tenant.get(path, params={**params, "agg": "SUM"}).json()[k]
    # buckets [0, 2000) and [2000, 3000): the last one is cut at endTs, its middle at 2500
    assert total == [{"ts": BASE + 1000, "value": 3.5}, {"ts": BASE + 2500, "value": 4}]
    low = tenant.get(path, params={**params, "agg": "MIN"}).json()[k]
    assert low[0]["value"] == 1.0 and isinstance(low[0]["value"], float)
    average = tenant.get(path, params={**params, "agg": "AVG", "useStrictDataTypes": False}).json()[k]
    assert [p["value"] for p in average] == ["1.75", "4.0"]  # AVG is a double, even of longs


def test_aggregation_without_interval_returns_raw_points_and_too_many_buckets_is_400(tenant, a1, database_url):
    k = key("noint")
    series(database_url, a1, k, [7, 8])
    path = PATH.format(a1) + "/values/timeseries"
    raw = tenant.get(path, params={"keys": k, "startTs": BASE, "endTs": BASE + 5000, "agg": "MAX"}).json()
    assert [p["value"] for p in raw[k]] == ["8", "7"]
    assert_tb_error(tenant.get(path, params={"keys": k, "startTs": 0, "endTs": BASE, "interval": 1,
                                             "agg": "AVG"}), 400)


# --- attributes ----------------------------------------------------------------------------------
def test_attributes_by_scope_and_all_with_their_types_and_update_time(tenant, a1, database_url):
    client_k, server_k, shared_k, json_k = key("cs"), key("ss"), key("sh"), key("js")
    entity = uuid.UUID(a1)
    write(database_url, attributes=[AttributeRow(entity, 1, client_k, 21.5, BASE + 1),
                                    AttributeRow(entity, 2, server_k, "on", BASE + 2),
                                    AttributeRow(entity, 3, shared_k, 7, BASE + 3),
                                    AttributeRow(entity, 2, json_k, JsonValue.of({"x": True}), BASE + 4)])
    path = PATH.format(a1)
    server = tenant.get(path + "/values/attributes/SERVER_SCOPE", params={"keys": f"{server_k},{json_k}"}).json()
    assert sorted(server, key=lambda a: a["key"]) == sorted([
        {"key": server_k, "value": "on", "lastUpdateTs": BASE + 2},
        {"key": json_k, "value": {"x": True}, "lastUpdateTs": BASE + 4}], key=lambda a: a["key"])
    mine = f"{client_k},{server_k},{shared_k}"
    every = tenant.get(path + "/values/attributes", params={"keys": mine}).json()
    assert [(a["key"], a["value"]) for a in every] == [(client_k, 21.5), (server_k, "on"), (shared_k, 7)]
    shared = tenant.get(path + "/values/attributes/SHARED_SCOPE").json()
    assert {"key": shared_k, "value": 7, "lastUpdateTs": BASE + 3} in shared
    assert all(a["key"] != server_k for a in shared)
    assert client_k in tenant.get(path + "/keys/attributes/CLIENT_SCOPE").json()
    assert server_k not in tenant.get(path + "/keys/attributes/CLIENT_SCOPE").json()
    assert {client_k, server_k, shared_k} <= set(tenant.get(path + "/keys/attributes").json())
    # the demo data gives every device the server attribute "active"
    assert "active" in tenant.get(path + "/keys/attributes/SERVER_SCOPE").json()


# --- who may read ----------------------------------------------------------------------------------
def test_customer_reads_its_devices_only_and_other_tenants_nothing(
        base_url, database_url, customer_a, customer_b, a1, b1):
    k = key("auth")
    series(database_url, a1, k, [1])
    series(database_url, b1, k, [2])
    assert customer_a.get(PATH.format(a1) + "/values/timeseries", params={"keys": k}).json()[k][0]["value"] == "1"
    assert customer_b.get(PATH.format(b1) + "/values/timeseries", params={"keys": k}).json()[k][0]["value"] == "2"
    for path in ("/values/timeseries", "/keys/timeseries", "/values/attributes", "/keys/attributes"):
        assert_tb_error(customer_a.get(PATH.format(b1) + path, params={"keys": k}), 403, 20)
        assert_tb_error(customer_b.get(PATH.format(a1) + path, params={"keys": k}), 403, 20)
    with other_tenant_client(base_url, database_url) as other:
        assert_tb_error(other.get(PATH.format(a1) + "/values/timeseries", params={"keys": k}), 404, 32)
        assert_tb_error(other.get(PATH.format(a1) + "/values/attributes"), 404, 32)
        assert_tb_error(other.delete(PATH.format(a1) + "/timeseries/delete",
                                     params={"keys": k, "deleteAllDataForKeys": True}), 404, 32)
    assert_tb_error(customer_a.delete(PATH.format(b1) + "/timeseries/delete",
                                      params={"keys": k, "deleteAllDataForKeys": True}), 403, 20)
    assert customer_b.get(PATH.format(b1) + "/values/timeseries", params={"keys": k}).json()[k][0]["value"] == "2"


def test_bad_input_is_a_thingsboard_400_and_unknown_ids_404(tenant, anonymous, a1):
    assert_tb_error(anonymous.get(PATH.format(a1) + "/values/timeseries"), 401, 10)
    assert_tb_error(tenant.get(PATH.format("not-a-uuid") + "/values/timeseries"), 400)
    assert_tb_error(tenant.get(f"/api/plugins/telemetry/WIDGET/{a1}/values/timeseries"), 400)
    assert_tb_error(tenant.get(PATH.format(uuid.uuid4()) + "/values/timeseries"), 404, 32)
    assert_tb_error(tenant.get(PATH.format(a1) + "/values/attributes/NO_SCOPE"), 400)
    history = PATH.format(a1) + "/values/timeseries/history"
    assert_tb_error(tenant.get(history, params={"keys": "a", "startTs": "yesterday", "endTs": 5}), 400)
    assert_tb_error(tenant.get(history, params={"keys": "a", "startTs": 0}), 400)
    assert_tb_error(tenant.get(history, params={"keys": "a", "startTs": 0, "endTs": 5, "agg": "MEDIAN",
                                                "interval": 1}), 400)
    assert_tb_error(tenant.get(history, params={"keys": "a", "startTs": 0, "endTs": 5, "orderBy": "UP"}), 400)
    assert_tb_error(tenant.get(history, params={"keys": "a", "startTs": 0, "endTs": 5, "limit": 0}), 400)
    assert_tb_error(tenant.get(history, params={"keys": "a", "startTs": 9, "endTs": 5}), 400)
    assert_tb_error(tenant.get(history, params={"keys": "a", "startTs": 0, "endTs": 2**70}), 400)
    assert_tb_error(tenant.get(history, params={"startTs": 0, "endTs": 5}), 400)


# --- deleting time series (straight to the database) -------------------------------------------------
def test_delete_a_time_range_keeps_the_rest_and_can_rewrite_the_latest(tenant, a1, database_url):
    k = key("del")
    series(database_url, a1, k, [1, 2, 3, 4])
    path = PATH.format(a1)
    deleted = tenant.delete(path + "/timeseries/delete", params={
        "keys": k, "startTs": BASE + 2000, "endTs": BASE + 4000, "rewriteLatestIfDeleted": True})
    assert deleted.status_code == 200, deleted.text
    left = tenant.get(path + "/values/timeseries", params={"keys": k, "startTs": 0, "endTs": BASE + 10_000}).json()
    assert [p["value"] for p in left[k]] == ["2", "1"]
    latest = tenant.get(path + "/values/timeseries", params={"keys": k}).json()
    assert latest[k] == [{"ts": BASE + 1000, "value": "2"}]  # rewritten from what is left
    tenant.delete(path + "/timeseries/delete", params={"keys": k, "deleteAllDataForKeys": True})
    assert k not in tenant.get(path + "/keys/timeseries").json()
    window = {"keys": k, "startTs": 0, "endTs": BASE + 10_000}
    assert tenant.get(path + "/values/timeseries", params=window).json() == {}


def test_delete_keeps_the_latest_when_asked(tenant, a1, database_url):
    k = key("keep")
    series(database_url, a1, k, [1, 2])
    path = PATH.format(a1)
    tenant.delete(path + "/timeseries/delete", params={"keys": k, "deleteAllDataForKeys": True,
                                                        "deleteLatest": False})
    assert tenant.get(path + "/values/timeseries", params={"keys": k}).json()[k][0]["value"] == "2"
    assert_tb_error(tenant.delete(path + "/timeseries/delete", params={"keys": ""}), 400)
    assert_tb_error(tenant.delete(path + "/timeseries/delete", params={"keys": k}), 400)  # no range


def test_tb_rest_client_reads_latest_history_and_attributes(base_url, a1, database_url):
    k = key("client")
    series(database_url, a1, k, [10, 20, 30])
    rest = RestClient(base_url=base_url)
    rest.login(username=CUSTOMER_A[0], password=CUSTOMER_A[1])
    device = DeviceId(id=a1, entity_type="DEVICE")
    latest = rest.get_latest_timeseries(device, keys=k)
    assert latest[k][0].value == "30"
    history = rest.get_timeseries(device, start_ts=BASE, end_ts=BASE + 3000, keys=k, agg="SUM", interval=3000,
                                  use_strict_data_types=True)
    assert [(p.ts, p.value) for p in history[k]] == [(BASE + 1500, 60)]
    assert k in rest.get_timeseries_keys_v1(device)
    assert any(a.key == "active" for a in rest.get_attributes_by_scope(device, "SERVER_SCOPE"))


# --- writes through services.live ----------------------------------------------------------------
@pytest.fixture(scope="module")
def own_device(tenant) -> Iterator[str]:
    response = tenant.post("/api/device", json={"name": f"Telemetry REST {uuid.uuid4().hex[:8]}"})
    assert response.status_code == 200, response.text
    yield response.json()["id"]["id"]
    tenant.delete(f"/api/device/{response.json()['id']['id']}")


def test_post_telemetry_stores_every_json_form_typed_as_devices_do(tenant, own_device):
    path = PATH.format(own_device)
    k = key("posted")
    saved = tenant.post(path + "/timeseries/ANY", json=[{"ts": BASE, "values": {k: "42"}},
                                                        {"ts": BASE + 1000, "values": {k: 43.5}}])
    assert saved.status_code == 200, saved.text
    history = tenant.get(path + "/values/timeseries", params={"keys": k, "startTs": BASE, "endTs": BASE + 2000,
                                                               "orderBy": "ASC", "useStrictDataTypes": True}).json()
    assert history[k] == [{"ts": BASE, "value": 42}, {"ts": BASE + 1000, "value": 43.5}]
    now_key = key("now")
    assert tenant.post(path + "/timeseries/ANY/86400", json={now_key: True}).status_code == 200
    latest = tenant.get(path + "/values/timeseries", params={"keys": now_key, "useStrictDataTypes": True}).json()
    assert latest[now_key][0]["value"] is True and latest[now_key][0]["ts"] > BASE
    assert_tb_error(tenant.post(path + "/timeseries/ANY", content=b"{nope"), 400)
    assert_tb_error(tenant.post(path + "/timeseries/ANY", json={}), 400)
    assert_tb_error(tenant.post(path + "/timeseries/ANY", json={"ts": "soon", "values": {"a": 1}}), 400)


def test_post_attributes_keeps_strings_refuses_client_scope_and_deletes(tenant, customer_a, own_device, a1):
    path = PATH.format(own_device)
    k, j = key("attr"), key("json")
    assert tenant.post(path + "/attributes/SERVER_SCOPE", json={k: "42", j: {"deep": [1]}}).status_code == 200
    answer = tenant.get(path + "/values/attributes/SERVER_SCOPE", params={"keys": f"{k},{j}"}).json()
    assert {a["key"]: a["value"] for a in answer} == {k: "42", j: {"deep": [1]}}
    assert all(isinstance(a["lastUpdateTs"], int) for a in answer)
    legacy = key("legacy")
    assert tenant.post(f"/api/plugins/telemetry/{own_device}/SHARED_SCOPE", json={legacy: 1}).status_code == 200
    assert tenant.post(f"/api/plugins/telemetry/DEVICE/{own_device}/SHARED_SCOPE",
                       json={legacy: 2}).status_code == 200
    shared = tenant.get(path + "/values/attributes/SHARED_SCOPE", params={"keys": legacy}).json()
    assert shared[0]["value"] == 2
    assert_tb_error(tenant.post(path + "/attributes/CLIENT_SCOPE", json={k: 1}), 400)
    assert_tb_error(tenant.post(path + "/attributes/SERVER_SCOPE", json=[1, 2]), 400)
    assert_tb_error(tenant.post(path + "/attributes/SERVER_SCOPE", json={"": 1}), 400)
    assert_tb_error(tenant.post(path + "/attributes/SERVER_SCOPE", json={k: 2**70}), 400)
    removed = tenant.delete(path + "/SERVER_SCOPE", params={"keys": k})
    assert removed.status_code == 200, removed.text
    assert tenant.get(path + "/values/attributes/SERVER_SCOPE", params={"keys": k}).json() == []
    legacy_delete = tenant.delete(f"/api/plugins/telemetry/{own_device}/SHARED_SCOPE", params={"keys": legacy})
    assert legacy_delete.status_code == 200
    assert tenant.get(path + "/values/attributes/SHARED_SCOPE", params={"keys": legacy}).json() == []
    # a customer user writes attributes of its customer's device, not of a device it cannot see
    mine = key("cust")
    assert customer_a.post(PATH.format(a1) + "/attributes/SHARED_SCOPE", json={mine: "x"}).status_code == 200
    assert_tb_error(customer_a.post(path + "/attributes/SHARED_SCOPE", json={mine: "x"}), 403, 20)


def test_writes_are_audited(tenant, own_device):
    k = key("audited")
    assert tenant.post(PATH.format(own_device) + "/attributes/SERVER_SCOPE", json={k: 1}).status_code == 200
    logs = tenant.get(f"/api/audit/logs/entity/DEVICE/{own_device}", params={"pageSize": 50, "page": 0}).json()
    assert any(entry["actionType"] == "ATTRIBUTES_UPDATED" for entry in logs["data"])


def test_tb_rest_client_saves_attributes_and_telemetry(base_url, own_device):
    rest = RestClient(base_url=base_url)
    rest.login(username="tenant@thingsboard.org", password="tenant")
    device = DeviceId(id=own_device, entity_type="DEVICE")
    k = key("clientw")
    rest.save_entity_attributes_v2(device, "SERVER_SCOPE", {k: 5})
    assert [a.value for a in rest.get_attributes_by_scope(device, "SERVER_SCOPE", keys=k)] == [5]
    rest.save_entity_telemetry(device, "ANY", {"ts": BASE, "values": {k: 1.5}})
    assert rest.get_latest_timeseries(device, keys=k)[k][0].value == "1.5"
    with pytest.raises(ApiException) as refused:
        rest.save_entity_attributes_v2(device, "CLIENT_SCOPE", {k: 5})
    assert refused.value.status == 400
