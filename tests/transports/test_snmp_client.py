"""The SNMP client against real agents (snmpsim): GET and SET over V1, V2C and V3, and what an agent
that is dead, refuses or has no such object makes of a request."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.transports.snmp_agent import DeadAgent, SnmpSimAgent, V3User
from thingsray.transports.snmp import SnmpClient, SnmpDeviceConfig, SnmpFailure, SnmpProtocolVersion, SnmpRequestError
from thingsray.transports.snmp.config import oid_tuple
from thingsray.transports.snmp.values import snmp_text, to_snmp

RECORDS = """
1.3.6.1.2.1.1.1.0|4|Test agent
1.3.6.1.2.1.1.3.0|67|12345
1.3.6.1.4.1.99.1.0|2|42
1.3.6.1.4.1.99.2.0|4|36.6
1.3.6.1.4.1.99.4.0|65|1234
1.3.6.1.4.1.99.5.0|70|9876543210
1.3.6.1.4.1.99.7.0|64|10.0.0.1
1.3.6.1.4.1.99.8.0|4x|00ff10
1.3.6.1.4.1.99.20.0|4:writecache|value=initial
1.3.6.1.4.1.99.22.0|2:error|op=set,status=notwritable,value=7
"""
USERS = (V3User("sha-aes", "authpass-1", "SHA", "privpass-1", "AES"),
         V3User("md5-des", "authpass-2", "MD5", "privpass-2", "DES"),
         V3User("sha256-aes256", "authpass-3", "SHA256", "privpass-3", "AES256BLMT"),
         V3User("sha512-aes192", "authpass-4", "SHA512", "privpass-4", "AES192BLMT"))
V3_PROTOCOLS = {"sha-aes": ("SHA_1", "AES_128"), "md5-des": ("MD5", "DES"), "sha256-aes256": ("SHA_256", "AES_256"),
                "sha512-aes192": ("SHA_512", "AES_192")}


@pytest.fixture(scope="module")
def agent() -> Iterator[SnmpSimAgent]:
    with SnmpSimAgent({"public": RECORDS, "private": RECORDS}, USERS) as running:
        yield running


@pytest.fixture
async def client() -> AsyncIterator[SnmpClient]:
    snmp = SnmpClient()
    yield snmp
    snmp.close()


def community(port: int, version: str = "V2C", name: str = "public") -> SnmpDeviceConfig:
    return SnmpDeviceConfig.from_json({"host": "127.0.0.1", "port": port, "protocolVersion": version,
                                       "community": name})


def v3(port: int, user: str, *, auth: str | None = None, engine_id: str = SnmpSimAgent.ENGINE_ID) -> SnmpDeviceConfig:
    index = [u.name for u in USERS].index(user)
    auth_protocol, privacy_protocol = V3_PROTOCOLS[user]
    return SnmpDeviceConfig.from_json({
        "host": "127.0.0.1", "port": port, "protocolVersion": "V3", "username": user, "securityName": user,
        "contextName": "public", "authenticationProtocol": auth_protocol,
        "authenticationPassphrase": auth or USERS[index].auth_key, "privacyProtocol": privacy_protocol,
        "privacyPassphrase": USERS[index].priv_key, "engineId": engine_id})


OID = oid_tuple


@pytest.mark.parametrize("version", ["V1", "V2C"])
async def test_get_answers_each_value_and_names_the_oids_without_one(agent: SnmpSimAgent, client: SnmpClient,
                                                                     version: str) -> None:
    remote = client.agent(community(agent.port, version), 2000, 1)
    wanted = [OID("1.3.6.1.2.1.1.1.0"), OID("1.3.6.1.4.1.99.77.0"), OID("1.3.6.1.4.1.99.1.0"), OID("1.3.6.1.2.1.1.3.0")]
    response = await remote.get(wanted)
    assert {oid: snmp_text(v) for oid, v in response.values.items()} == {
        OID("1.3.6.1.2.1.1.1.0"): "Test agent", OID("1.3.6.1.4.1.99.1.0"): "42", OID("1.3.6.1.2.1.1.3.0"): "12345"}
    # V1 answers noSuchName for the whole request; the client drops that OID and asks again
    expected = "noSuchName" if version == "V1" else ("noSuchObject", "noSuchInstance")
    assert list(response.missing) == [OID("1.3.6.1.4.1.99.77.0")]
    assert response.missing[OID("1.3.6.1.4.1.99.77.0")] in expected
    await remote.close()


async def test_every_kind_of_value_has_its_text(agent: SnmpSimAgent, client: SnmpClient) -> None:
    remote = client.agent(community(agent.port), 2000, 1)
    response = await remote.get([OID(f"1.3.6.1.4.1.99.{n}.0") for n in (2, 4, 5, 7, 8)])
    assert [snmp_text(response.values[OID(f"1.3.6.1.4.1.99.{n}.0")]) for n in (2, 4, 5, 7, 8)] == [
        "36.6", "1234", "9876543210", "10.0.0.1", "00:ff:10"]


async def test_more_oids_than_one_request_takes_go_in_several(agent: SnmpSimAgent) -> None:
    snmp = SnmpClient(max_request_oids=2)
    try:
        remote = snmp.agent(community(agent.port), 2000, 1)
        response = await remote.get([OID(f"1.3.6.1.4.1.99.{n}.0") for n in (1, 2, 4, 5, 7)])
        assert len(response.values) == 5
    finally:
        snmp.close()


@pytest.mark.parametrize("user", [u.name for u in USERS])
async def test_v3_auth_priv_reads_the_agent(agent: SnmpSimAgent, client: SnmpClient, user: str) -> None:
    remote = client.agent(v3(agent.port, user), 2000, 1)
    response = await remote.get([OID("1.3.6.1.4.1.99.1.0")])
    assert snmp_text(response.values[OID("1.3.6.1.4.1.99.1.0")]) == "42"


async def test_v3_discovers_the_engine_id_when_none_is_configured(agent: SnmpSimAgent, client: SnmpClient) -> None:
    remote = client.agent(v3(agent.port, "sha-aes", engine_id=""), 2000, 1)
    response = await remote.get([OID("1.3.6.1.2.1.1.1.0")])
    assert snmp_text(response.values[OID("1.3.6.1.2.1.1.1.0")]) == "Test agent"


async def test_v3_with_a_wrong_passphrase_fails_without_an_answer(agent: SnmpSimAgent, client: SnmpClient) -> None:
    remote = client.agent(v3(agent.port, "sha-aes", auth="not-the-passphrase"), 300, 0)
    with pytest.raises(SnmpRequestError) as raised:
        await remote.get([OID("1.3.6.1.4.1.99.1.0")])
    assert raised.value.failure in (SnmpFailure.TIMEOUT, SnmpFailure.TRANSPORT)
    good = client.agent(v3(agent.port, "sha-aes"), 2000, 1)  # a device with the right one is not disturbed
    assert OID("1.3.6.1.4.1.99.1.0") in (await good.get([OID("1.3.6.1.4.1.99.1.0")])).values


async def test_set_writes_a_writable_object(agent: SnmpSimAgent, client: SnmpClient) -> None:
    remote = client.agent(community(agent.port, name="private"), 2000, 1)
    oid = OID("1.3.6.1.4.1.99.20.0")
    answer = await remote.set([(oid, to_snmp("changed", None))])
    assert snmp_text(answer.values[oid]) == "changed"
    assert snmp_text((await remote.get([oid])).values[oid]) == "changed"


@pytest.mark.parametrize("version", ["V1", "V2C"])
async def test_a_refused_set_is_an_agent_error(agent: SnmpSimAgent, client: SnmpClient, version: str) -> None:
    remote = client.agent(community(agent.port, version), 2000, 1)
    with pytest.raises(SnmpRequestError) as raised:
        await remote.set([(OID("1.3.6.1.4.1.99.22.0"), to_snmp("5", None))])
    assert raised.value.failure is SnmpFailure.AGENT_ERROR
    assert ("notWritable" if version == "V2C" else "noSuchName") in str(raised.value)


async def test_a_dead_agent_times_out(client: SnmpClient) -> None:
    dead = DeadAgent()
    try:
        remote = client.agent(community(dead.port), 200, 1)
        with pytest.raises(SnmpRequestError) as raised:
            await remote.get([OID("1.3.6.1.2.1.1.1.0")])
        assert raised.value.failure is SnmpFailure.TIMEOUT
    finally:
        dead.close()


async def test_a_host_that_does_not_resolve_is_a_transport_error(client: SnmpClient) -> None:
    remote = client.agent(SnmpDeviceConfig.from_json({"host": "no-such-host.invalid", "port": 161}), 200, 0)
    with pytest.raises(SnmpRequestError) as raised:
        await remote.get([OID("1.3.6.1.2.1.1.1.0")])
    assert raised.value.failure is SnmpFailure.TRANSPORT


async def test_v3_agents_of_other_credentials_get_engines_of_their_own(agent: SnmpSimAgent, client: SnmpClient) -> None:
    first = client.agent(v3(agent.port, "sha-aes"), 2000, 1)
    same = client.agent(v3(agent.port, "sha-aes"), 2000, 1)
    other = client.agent(v3(agent.port, "md5-des"), 2000, 1)
    plain = client.agent(community(agent.port), 2000, 1)
    assert client.engine_count == 3
    for remote in (first, same, other, plain):
        await remote.close()
    assert client.engine_count == 1  # the shared community engine stays
    assert SnmpProtocolVersion.V3 is first.config.protocol_version
