"""A local S3 server for the tests, and a fault-injecting proxy in front of it.

The server is moto in server mode (real HTTP on 127.0.0.1, conditional writes
included), never a mock of the client: predstore talks to it through obstore
exactly as it talks to AWS. :class:`FaultProxy` forwards every request to the
server and, when told, fails one: a 503 or 403 answer, a request that never
gets an answer (a timeout), a request that is carried out but whose answer is
dropped (the connection closes), or a conditional put stripped of its
condition (a service that ignores ``If-None-Match``). It also counts requests
and the bytes of the bodies it returns, which is how tests see what a read
costs.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing-key", "AWS_SECRET_ACCESS_KEY": "testing-secret"}


class MotoServer:
    """moto's S3 in server mode on 127.0.0.1, at a free port."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"

    def stop(self) -> None:
        self._server.stop()

    def new_bucket(self) -> str:
        """A new empty bucket's name."""
        name = f"b-{uuid.uuid4().hex[:16]}"
        host, port = self.endpoint.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        connection.request("PUT", f"/{name}")
        response = connection.getresponse()
        response.read()
        assert response.status == 200, response.status
        return name

    def _boto3(self) -> Any:
        """An independent client for the tests' own checks (not the one predstore uses)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="x",
            aws_secret_access_key="x",
        )

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object key under ``prefix``."""
        client = self._boto3()
        keys: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return keys

    def multipart_uploads(self, bucket: str) -> list[str]:
        """The keys of the multipart uploads started and neither completed nor aborted."""
        uploads = self._boto3().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        return [u["Key"] for u in uploads]


@dataclass
class Fault:
    """Fail the ``nth`` (1-based) request that ``matches``, in the way ``kind`` says."""

    kind: str  # "503", "403", "bad_key", "timeout", "drop_response", "ignore_condition", "reset"
    matches: Callable[[str, str, dict[str, str]], bool]
    nth: int = 1
    times: int = 1
    seen: int = 0
    fired: int = 0


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    status: int = 0
    body_bytes: int = 0


@dataclass
class FaultProxy:
    """An HTTP proxy on 127.0.0.1 in front of ``upstream`` that injects :class:`Fault` s."""

    upstream: str
    faults: list[Fault] = field(default_factory=list)
    log: list[Request] = field(default_factory=list)
    endpoint: str = ""

    def __post_init__(self) -> None:
        proxy = self
        host, port = self.upstream.removeprefix("http://").split(":")

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = dict(self.headers.items())
                request = Request(self.command, self.path, headers)
                proxy.log.append(request)
                fault = proxy._fault_for(self.command, self.path, headers)
                kind = fault.kind if fault else None
                if kind in ("503", "403", "bad_key"):
                    status, code = {
                        "503": (503, "SlowDown"),
                        "403": (403, "AccessDenied"),
                        "bad_key": (403, "InvalidAccessKeyId"),  # what S3 says to wrong keys
                    }[kind]
                    self._answer(status, f"<Error><Code>{code}</Code></Error>".encode())
                    request.status = status
                    return
                if kind == "timeout":
                    time.sleep(3)
                    self.close_connection = True
                    return
                if kind == "reset":
                    self.close_connection = True
                    return
                if kind == "ignore_condition":
                    headers = {k: v for k, v in headers.items() if k.lower() != "if-none-match"}
                connection = http.client.HTTPConnection(host, int(port), timeout=60)
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                request.status = response.status
                if kind == "drop_response":  # carried out, but the answer never arrives
                    self.close_connection = True
                    return
                request.body_bytes = len(data)
                self.send_response(response.status)
                for k, v in response.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v)
                length = response.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _answer(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self._lock = threading.Lock()

    def _fault_for(self, method: str, path: str, headers: dict[str, str]) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.fired < fault.times and fault.matches(method, path, headers):
                    fault.seen += 1
                    if fault.seen >= fault.nth:
                        fault.fired += 1
                        return fault
        return None

    def add(self, fault: Fault) -> Fault:
        self.faults.append(fault)
        return fault

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def put_to(
    key_part: str, *, conditional: bool | None = None
) -> Callable[[str, str, dict[str, str]], bool]:
    """A matcher of PUT requests whose path holds ``key_part`` (only conditional ones, if asked)."""

    def matches(method: str, path: str, headers: dict[str, str]) -> bool:
        if method != "PUT" or key_part not in path:
            return False
        has = any(k.lower() == "if-none-match" for k in headers)
        return conditional is None or has == conditional

    return matches
