"""A recording proxy between a real agent and sqreen-server, used to
capture the agents' exact bodies for sqreen-server/tests/fixtures/agents/.

    python3 capture_proxy.py LISTEN_PORT UPSTREAM_PORT OUT.jsonl

Each exchange is one JSON line: method, path, the request headers that
matter, the request body (parsed JSON when it is JSON), the status and the
answer body. Secrets are not written: X-Api-Key and X-Session-Key are
replaced by a marker.
"""
import http.client
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LISTEN, UPSTREAM, OUT = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
LOCK = threading.Lock()
KEPT = ("content-type", "content-encoding", "user-agent")


def parsed(body):
    try:
        return json.loads(body.decode("utf-8")) if body else None
    except ValueError:
        return {"_raw": body.decode("utf-8", "replace")[:2000]}


class Handler(BaseHTTPRequestHandler):
    def _forward(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        conn = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=30)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        conn.request(self.command, self.path, body=body or None, headers=headers)
        resp = conn.getresponse()
        answer = resp.read()
        with LOCK, open(OUT, "a") as out:
            out.write(json.dumps({
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items() if k.lower() in KEPT},
                "credential": "api-key" if "x-api-key" in self.headers
                else ("session" if "x-session-key" in self.headers else None),
                "body": parsed(body),
                "status": resp.status,
                "answer": parsed(answer),
            }) + "\n")
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_POST = do_PUT = _forward

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", LISTEN), Handler).serve_forever()
