"""An independent gRPC client of the agent (Python grpcio, stubs generated from proto/ at run
time): checks health and reflection, reads GetStatus, then streams events.

usage: agent_client.py PROTO_DIR SOCKET SINCE_SEQ COUNT [KIND ...]
prints one JSON object per line: {"status": ...}, {"services": [...]}, {"health": ...}, then
one {"seq", "kind", "pid", "dst_port", "decision", "severity", "rule"} per event.
"""
import importlib
import json
import os
import sys
import tempfile

from grpc_tools import protoc
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc


def generate(proto_dir):
    out = tempfile.mkdtemp(prefix="sa-pb-")
    protos = [os.path.join("sovereign/agent/v1", f) for f in ("events.proto", "agent.proto")]
    rc = protoc.main(["protoc", f"-I{proto_dir}", f"--python_out={out}", f"--grpc_python_out={out}", *protos])
    if rc != 0:
        sys.exit(f"protoc failed: {rc}")
    sys.path.insert(0, out)
    return (importlib.import_module("sovereign.agent.v1.agent_pb2"),
            importlib.import_module("sovereign.agent.v1.agent_pb2_grpc"),
            importlib.import_module("sovereign.agent.v1.events_pb2"))


def main():
    proto_dir, socket, since, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    kinds = sys.argv[5:]
    agent_pb2, agent_grpc, events_pb2 = generate(proto_dir)
    # gRPC-core puts the socket path in :authority, which is not a valid HTTP/2 authority;
    # the agent's server (hyper) rejects it, so name the authority explicitly.
    channel = grpc.insecure_channel(f"unix://{socket}", options=[("grpc.default_authority", "localhost")])

    health = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="sovereign.agent.v1.AgentService"), timeout=10)
    print(json.dumps({"health": health_pb2.HealthCheckResponse.ServingStatus.Name(health.status)}))

    refl = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
    services = [s.name for r in responses for s in r.list_services_response.service]
    print(json.dumps({"services": sorted(services)}))

    stub = agent_grpc.AgentServiceStub(channel)
    st = stub.GetStatus(agent_pb2.GetStatusRequest(), timeout=10)
    print(json.dumps({"status": {"hooks": list(st.hooks), "policy": st.policy.name,
                                 "cgroup": st.cgroup, "journal_next_seq": st.journal_next_seq}}))

    req = agent_pb2.StreamEventsRequest(since_seq=since, filter=agent_pb2.EventFilter(kinds=kinds))
    got = 0
    for resp in stub.StreamEvents(req, timeout=30):
        if resp.WhichOneof("item") != "event":
            print(json.dumps({"missed": resp.missed.events}))
            continue
        e = resp.event
        body = e.WhichOneof("body")
        out = {"seq": e.seq, "body": body}
        if body == "flow":
            f = e.flow
            out.update(kind=events_pb2.FlowKind.Name(f.kind), pid=f.pid, dst_port=f.dst_port,
                       comm=f.comm)
            if f.HasField("verdict"):
                out.update(decision=events_pb2.Decision.Name(f.verdict.decision),
                           severity=events_pb2.Severity.Name(f.verdict.severity),
                           rule=f.verdict.rule, policy=f.verdict.policy.name)
        if body == "alert":
            a = e.alert
            out.update(agent_id=e.agent_id, agent_seq=e.agent_seq, count=a.count, pid=a.flow.pid,
                       rule=a.rule, severity=events_pb2.Severity.Name(a.severity))
        print(json.dumps(out), flush=True)
        got += 1
        if got >= count:
            break
    channel.close()


if __name__ == "__main__":
    main()
