"""A webhook receiver for the webhook sink test: HTTPS (Python's ssl, not our code).

    webhook_receiver.py CERT KEY PORT LOG FAILURES

Answers the first FAILURES POSTs with 500, every later one with 200. Appends one JSON line per
POST to LOG: path, status answered, Idempotency-Key, the time it arrived (received_ns, Unix
nanoseconds), the client's port (one per connection), the body (parsed). Prints "ready" once
listening.
"""
import http.server
import json
import ssl
import sys
import threading
import time

cert, key, port, log_path, failures = sys.argv[1:6]
remaining = [int(failures)]
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The reply's headers and body are two writes: with Nagle's algorithm the body would wait
    # for the client's delayed ACK (40 ms a POST), which no real receiver does.
    disable_nagle_algorithm = True

    def do_POST(self):  # noqa: N802 (http.server's naming)
        received_ns = time.time_ns()
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with lock:
            status = 500 if remaining[0] > 0 else 200
            remaining[0] -= 1
            with open(log_path, "a") as log:
                log.write(json.dumps({
                    "path": self.path,
                    "status": status,
                    "key": self.headers.get("Idempotency-Key"),
                    "content_type": self.headers.get("Content-Type"),
                    "token": self.headers.get("Authorization"),
                    "received_ns": received_ns,
                    "client_port": self.client_address[1],
                    "body": json.loads(body),
                }) + "\n")
        reply = b'{"ok":true}' if status == 200 else b'{"error":"try later"}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
print("ready", flush=True)
server.serve_forever()
