"""Checks the agent's TCP API with TLS from Python grpcio: prints "SERVING" when the health
check passes, else "refused <status code>".

usage: tls_probe.py HOST:PORT CA_PEM [CERT_PEM KEY_PEM]
"""
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main():
    addr, ca = sys.argv[1], open(sys.argv[2], "rb").read()
    cert = key = None
    if len(sys.argv) > 4:
        cert, key = open(sys.argv[3], "rb").read(), open(sys.argv[4], "rb").read()
    creds = grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)
    channel = grpc.secure_channel(addr, creds, options=[("grpc.ssl_target_name_override", "localhost")])
    try:
        r = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="sovereign.agent.v1.AgentService"), timeout=5)
        print(health_pb2.HealthCheckResponse.ServingStatus.Name(r.status))
    except grpc.RpcError as e:
        print(f"refused {e.code().name}")


if __name__ == "__main__":
    main()
