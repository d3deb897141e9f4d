"""An independent JetStream client for the nats sink test (nats-py, not our code).

    jetstream.py create SERVERS STREAM SUBJECT REPLICAS   the stream (as docs/sinks.md advises)
    jetstream.py count SERVERS STREAM                     how many messages the stream holds
    jetstream.py dump SERVERS STREAM                      every message, in stream order, as
                                                          JSON lines: stream_seq, subject,
                                                          msg_id, agent, journal, seq, kind
    jetstream.py publish SERVERS STREAM SUBJECT AGENT JOURNAL HEX
                                                          one message as an agent's nats sink
                                                          would (HEX: the payload's bytes)

SERVERS is a comma-separated list of nats:// URLs.
"""
import asyncio
import json
import sys

import nats
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig


async def create(servers, stream, subject, replicas):
    nc = await nats.connect(servers=servers, connect_timeout=5)
    js = nc.jetstream(timeout=10)
    # Clustered stream creation waits for a meta leader; retry while the cluster forms.
    for attempt in range(60):
        try:
            await js.add_stream(
                StreamConfig(
                    name=stream,
                    subjects=[subject],
                    retention=RetentionPolicy.LIMITS,
                    storage=StorageType.FILE,
                    discard=DiscardPolicy.OLD,
                    num_replicas=replicas,
                    # Re-sends after an outage come within this window (docs/sinks.md).
                    duplicate_window=600.0,
                    max_age=0,
                )
            )
            break
        except Exception as e:  # noqa: BLE001 (the cluster may still be electing)
            if attempt == 59:
                raise
            print(f"waiting for the cluster: {e!r}", file=sys.stderr)
            await asyncio.sleep(0.5)
    await nc.close()


async def dump(servers, stream):
    nc = await nats.connect(servers=servers, connect_timeout=5)
    js = nc.jetstream(timeout=10)
    info = await js.stream_info(stream)
    last = info.state.last_seq
    out = sys.stdout
    if info.state.messages > 0:
        sub = await js.pull_subscribe(
            "", durable=None, stream=stream, config=nats.js.api.ConsumerConfig(
                deliver_policy=nats.js.api.DeliverPolicy.ALL,
                ack_policy=nats.js.api.AckPolicy.NONE,
            )
        )
        seen = 0
        while seen < last:
            try:
                msgs = await sub.fetch(5000, timeout=5)
            except nats.errors.TimeoutError:
                break
            for m in msgs:
                seen = m.metadata.sequence.stream
                headers = m.headers or {}
                body = json.loads(m.data)
                out.write(json.dumps({
                    "stream_seq": seen,
                    "subject": m.subject,
                    "msg_id": headers.get("Nats-Msg-Id"),
                    "agent": headers.get("Sovereign-Agent"),
                    "journal": headers.get("Sovereign-Journal"),
                    "seq": int(headers.get("Sovereign-Seq", "-1")),
                    "kind": body.get("kind"),
                    "body_seq": body.get("seq"),
                }) + "\n")
    out.flush()
    await nc.close()


async def count(servers, stream):
    nc = await nats.connect(servers=servers, connect_timeout=5)
    info = await nc.jetstream(timeout=10).stream_info(stream)
    print(info.state.messages)
    await nc.close()


async def publish(servers, stream, subject, agent, journal, payload):
    nc = await nats.connect(servers=servers, connect_timeout=5)
    ack = await nc.jetstream(timeout=10).publish(
        subject,
        payload,
        stream=stream,
        headers={"Sovereign-Agent": agent, "Sovereign-Journal": journal},
    )
    print(ack.seq)
    await nc.close()


def main():
    command, servers, stream = sys.argv[1], sys.argv[2].split(","), sys.argv[3]
    if command == "create":
        asyncio.run(create(servers, stream, sys.argv[4], int(sys.argv[5])))
    elif command == "count":
        asyncio.run(count(servers, stream))
    elif command == "publish":
        subject, agent, journal, payload = sys.argv[4:8]
        asyncio.run(publish(servers, stream, subject, agent, journal, bytes.fromhex(payload)))
    elif command == "dump":
        asyncio.run(dump(servers, stream))
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
