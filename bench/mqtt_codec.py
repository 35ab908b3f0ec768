"""How fast the MQTT codec decodes a stream of QoS 1 telemetry PUBLISHes and encodes PUBACKs.

The codec is ours (thingsray/transports/mqtt/codec.py): no pure-Python MQTT library on the
package index offers a server-side incremental decoder for both 3.1.1 and 5 that we could drop
in, and paho's is client-side and tied to its socket loop. This prints packets per second so the
codec's share of a transport's CPU can be judged against the ingest figures.

    python bench/mqtt_codec.py [--packets 200000]
"""

from __future__ import annotations

import argparse
import json
import time

from thingsray.transports.mqtt import codec
from thingsray.transports.mqtt.codec import MQTT_5, MQTT_311, Decoder, PacketType

PAYLOAD = b'{"pulseCounter":123456,"leakage":false,"batteryLevel":87}'


def measure(level: int, packets: int) -> dict[str, float]:
    frames = b"".join(codec.publish(level, "v1/devices/me/telemetry", PAYLOAD, qos=1, packet_id=(i % 65535) + 1)
                      for i in range(packets))
    decoder = Decoder()
    decoder.protocol_level = level
    started = time.perf_counter()
    decoded = 0
    for offset in range(0, len(frames), 65536):  # as a socket delivers it
        decoded += len(decoder.feed(frames[offset:offset + 65536]))
    decode_s = time.perf_counter() - started
    assert decoded == packets
    started = time.perf_counter()
    for i in range(packets):
        codec.ack(level, PacketType.PUBACK, (i % 65535) + 1)
    encode_s = time.perf_counter() - started
    return {"decode_per_s": round(packets / decode_s), "puback_encode_per_s": round(packets / encode_s)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=200_000)
    args = parser.parse_args()
    results = {"MQTT 3.1.1": measure(MQTT_311, args.packets), "MQTT 5": measure(MQTT_5, args.packets)}
    print(f"{'protocol':<12} {'PUBLISH decoded/s':>18} {'PUBACK encoded/s':>17}")
    for name, r in results.items():
        print(f"{name:<12} {r['decode_per_s']:>18,} {r['puback_encode_per_s']:>17,}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
