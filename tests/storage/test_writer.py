"""Group commit into PostgreSQL: what a caller waited for is there, once, typed, and latest
values never go back in time."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from thingsray.kv import JsonValue
from thingsray.storage import connect
from thingsray.storage.writer import AttributeRow, TelemetryWriter, TsRow, WriteRequest


@pytest.fixture
async def db(platform):
    database = await connect(platform.database_url, max_size=4)
    yield database
    await database.close()


async def latest(db, entity_id):
    rows = await db.fetch(
        "SELECT d.key, l.ts, l.bool_v, l.str_v, l.long_v, l.dbl_v, l.json_v FROM ts_kv_latest l "
        "JOIN key_dictionary d ON d.key_id = l.key WHERE l.entity_id = $1", entity_id)
    return {r["key"]: r for r in rows}


async def test_concurrent_writers_share_commits_and_every_row_lands(db):
    writer = TelemetryWriter(db)
    devices = [uuid.uuid4() for _ in range(200)]
    await asyncio.gather(*(writer.write(WriteRequest([TsRow(d, "pulseCounter", 1000 + i, i),
                                                      TsRow(d, "leakage", 1000 + i, False)]))
                           for i, d in enumerate(devices)))
    assert writer.commits < 50  # 200 callers, a handful of transactions
    count = await db.fetchval("SELECT count(*) FROM ts_kv WHERE entity_id = ANY($1::uuid[])", devices)
    assert count == 400


async def test_values_keep_their_types(db):
    writer = TelemetryWriter(db)
    device = uuid.uuid4()
    await writer.write(WriteRequest([TsRow(device, "b", 1, True), TsRow(device, "l", 1, 42),
                                     TsRow(device, "d", 1, 36.6), TsRow(device, "s", 1, "on"),
                                     TsRow(device, "j", 1, JsonValue('{"a":[1,2]}'))]))
    rows = await latest(db, device)
    assert rows["b"]["bool_v"] is True and rows["l"]["long_v"] == 42 and rows["d"]["dbl_v"] == 36.6
    assert rows["s"]["str_v"] == "on" and rows["j"]["json_v"] == {"a": [1, 2]}


async def test_latest_never_moves_back_in_time_and_a_retry_stores_nothing_twice(db):
    writer = TelemetryWriter(db)
    device = uuid.uuid4()
    request = WriteRequest([TsRow(device, "t", 2000, 20)])
    await writer.write(request)
    await writer.write(WriteRequest([TsRow(device, "t", 1000, 10)]))  # an older point arrives late
    await writer.write(request)  # the sender retried
    assert (await latest(db, device))["t"]["long_v"] == 20
    assert await db.fetchval("SELECT count(*) FROM ts_kv WHERE entity_id = $1", device) == 2
    # two points for one key in one batch: the newer one is the latest
    await asyncio.gather(writer.write(WriteRequest([TsRow(device, "u", 5, 1)])),
                         writer.write(WriteRequest([TsRow(device, "u", 6, 2)])))
    assert (await latest(db, device))["u"]["long_v"] == 2


async def test_attributes_keep_the_newest_update(db):
    writer = TelemetryWriter(db)
    device = uuid.uuid4()
    await writer.write(WriteRequest(attributes=[AttributeRow(device, 1, "fw", "1.0", 10)]))
    await asyncio.gather(writer.write(WriteRequest(attributes=[AttributeRow(device, 1, "fw", "2.0", 30)])),
                         writer.write(WriteRequest(attributes=[AttributeRow(device, 1, "fw", "1.5", 20)])))
    value = await db.fetchval(
        "SELECT a.str_v FROM attribute_kv a JOIN key_dictionary d ON d.key_id = a.attribute_key "
        "WHERE a.entity_id = $1 AND d.key = 'fw'", device)
    assert value == "2.0"


async def test_a_failed_commit_fails_its_callers_and_the_writer_goes_on(db):
    writer = TelemetryWriter(db)
    with pytest.raises(Exception, match="int64"):
        await writer.write(WriteRequest([TsRow(uuid.uuid4(), "k", 2**70, 1)]))
    device = uuid.uuid4()
    await writer.write(WriteRequest([TsRow(device, "k", 1, 1)]))
    assert await db.fetchval("SELECT count(*) FROM ts_kv WHERE entity_id = $1", device) == 1
