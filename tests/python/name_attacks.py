"""What a hostile workload does to the names the agent's verdicts rest on, with real sockets.

Each subcommand is one attack, run inside the watched cgroup by tests/tests/name_attacks.rs:

  forge-udp             an unsolicited DNS answer sent from port 53 on the host (no query)
  netns-resolver        a DNS server of the workload's own on the trusted stub address
                        127.0.0.53, in a user+network namespace of its own, answering its query
  pod-resolver          a DNS server on 127.0.0.53 in the network namespace it is started in
                        (a pod's sidecar), answering every query with A_ADDR until killed
  reconnect A B SNI     a ClientHello naming SNI to A, then connect(AF_UNSPEC) and the same
                        socket connected to B (plain HTTP)
  segmented IP PORT SNI N   a ClientHello whose first TCP segment is N bytes
  flood N               N answers for N addresses from a resolver of the workload's own

Every DNS message is built here, byte by byte; the ClientHello is OpenSSL's own (ssl module).
"""
import ctypes
import os
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time

A_NAME = "llm.sovereign.example"
A_ADDR = "203.0.113.20"


def qname(name):
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"


def query(qid, name):
    return struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname(name) + struct.pack(">HH", 1, 1)


def answer(qid, name, addr, ttl=300):
    head = struct.pack(">HHHHHH", qid, 0x8180, 1, 1, 0, 0)
    question = qname(name) + struct.pack(">HH", 1, 1)
    record = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, ttl, 4) + socket.inet_aton(addr)
    return head + question + record


def parse_question(msg):
    """(id, name) of a query."""
    qid = struct.unpack(">H", msg[:2])[0]
    labels, i = [], 12
    while msg[i]:
        labels.append(msg[i + 1 : i + 1 + msg[i]].decode())
        i += 1 + msg[i]
    return qid, ".".join(labels)


def serve_dns(sock, resolve, count):
    """Answers `count` queries on `sock`, each with resolve(name)."""
    for _ in range(count):
        msg, peer = sock.recvfrom(512)
        qid, name = parse_question(msg)
        sock.sendto(answer(qid, name, resolve(name)), peer)


def forge_udp():
    victim = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    victim.bind(("127.0.0.1", 0))
    forger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    forger.bind(("127.0.0.53", 53))
    forger.sendto(answer(0x4242, A_NAME, A_ADDR), victim.getsockname())
    victim.settimeout(5)
    victim.recvfrom(512)
    print("forged answer delivered", flush=True)


def netns_resolver():
    # Inside `unshare -Urn`: loopback up, then a server on the trusted stub address.
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "addr", "add", "127.0.0.53/8", "dev", "lo"], check=False)
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.53", 53))
    t = threading.Thread(target=serve_dns, args=(server, lambda _: A_ADDR, 1), daemon=True)
    t.start()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.settimeout(5)
    client.sendto(query(0x1111, A_NAME), ("127.0.0.53", 53))
    msg, _ = client.recvfrom(512)
    assert msg[:2] == b"\x11\x11"
    t.join(5)
    print("own resolver answered", flush=True)


def pod_resolver():
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.53", 53))
    print("serving", flush=True)
    serve_dns(server, lambda _: A_ADDR, 1_000_000)


def client_hello(sni):
    """OpenSSL's ClientHello for `sni`, as bytes."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def disconnect(sock):
    """connect(fd, {AF_UNSPEC}): dissolves the connection, keeps the socket (and its cookie)."""
    libc = ctypes.CDLL(None, use_errno=True)
    unspec = struct.pack("=H14x", socket.AF_UNSPEC)
    buf = ctypes.create_string_buffer(unspec, len(unspec))
    if libc.connect(sock.fileno(), buf, len(unspec)) != 0:
        raise OSError(ctypes.get_errno(), "connect(AF_UNSPEC)")


def reconnect(first, second, sni):
    host, port = first.rsplit(":", 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.connect((host, int(port)))
    s.sendall(client_hello(sni))
    s.settimeout(2)
    try:
        s.recv(4096)  # the server's answer: the hello was sent and read
    except socket.timeout:
        pass
    time.sleep(0.2)
    disconnect(s)
    time.sleep(0.2)
    host, port = second.rsplit(":", 1)
    s.settimeout(5)
    s.connect((host, int(port)))
    s.sendall(b"GET / HTTP/1.0\r\nHost: exfil\r\n\r\n")
    while s.recv(4096):
        pass
    s.close()
    print("reconnected", flush=True)


def segmented(ip, port, sni, first):
    hello = client_hello(sni)
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.connect((ip, int(port)))
    s.sendall(hello[:first])
    time.sleep(0.1)  # its own segment, acknowledged before the rest
    s.sendall(hello[first:])
    s.settimeout(2)
    try:
        s.recv(4096)
    except socket.timeout:
        pass
    s.close()
    print("segmented hello sent", flush=True)


def flood(n):
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.3", 53))

    def resolve(name):
        i = int(name.split(".")[0][1:])
        return "10.%d.%d.1" % (i // 256, i % 256)

    t = threading.Thread(target=serve_dns, args=(server, resolve, n), daemon=True)
    t.start()
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.settimeout(5)
    for i in range(n):
        client.sendto(query(i, "n%d.flood.example" % i), ("127.0.0.3", 53))
        client.recvfrom(512)
    t.join(5)
    print("flooded %d names" % n, flush=True)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "forge-udp":
        forge_udp()
    elif cmd == "netns-resolver":
        netns_resolver()
    elif cmd == "pod-resolver":
        pod_resolver()
    elif cmd == "reconnect":
        reconnect(*args)
    elif cmd == "segmented":
        segmented(args[0], args[1], args[2], int(args[3]))
    elif cmd == "flood":
        flood(int(args[0]))
    else:
        sys.exit("unknown attack %r" % cmd)


if __name__ == "__main__":
    main()
