"""A reverse proxy as operators put in front of the central (TLS left out), as its own process.

Like nginx with `proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for`, it passes each
request on with the connection's peer appended to whatever X-Forwarded-For the client sent,
and passes the answer back (redirects and cookies untouched):

    python -m tests.helpers.reverse_proxy --port 8443 --backend http://127.0.0.1:8080

`ReverseProxy` starts it from a test, on a free loopback port.
"""

from __future__ import annotations

import argparse
import sys
import urllib.request
from pathlib import Path

import aiohttp
from aiohttp import web

from lab.processes import Process, free_port, wait_for

# Hop-by-hop, or recomputed by the client library on the way on.
HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive"}


def forwarded_for(request: web.Request) -> str:
    sent = ", ".join(request.headers.getall("X-Forwarded-For", []))
    return f"{sent}, {request.remote}" if sent else str(request.remote)


def proxy_app(backend: str) -> web.Application:
    app = web.Application()
    client: dict[str, aiohttp.ClientSession] = {}

    async def start(app: web.Application) -> None:
        client["session"] = aiohttp.ClientSession(auto_decompress=False)

    async def stop(app: web.Application) -> None:
        await client["session"].close()

    async def forward(request: web.Request) -> web.Response:
        headers = {
            name: value for name, value in request.headers.items()
            if name.lower() not in HOP_HEADERS and name.lower() != "x-forwarded-for"
        }
        headers["X-Forwarded-For"] = forwarded_for(request)
        async with client["session"].request(
            request.method,
            f"{backend}{request.rel_url}",
            headers=headers,
            data=await request.read(),
            allow_redirects=False,
        ) as answer:
            body = await answer.read()
            passed = [(k, v) for k, v in answer.headers.items() if k.lower() not in HOP_HEADERS]
        response = web.Response(status=answer.status, body=body)
        for name, value in passed:
            response.headers.add(name, value)
        return response

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_route("*", "/{path:.*}", forward)
    return app


class ReverseProxy(Process):
    def __init__(self, folder: Path, backend: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        folder.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "tests.helpers.reverse_proxy"]
        argv += ["--port", str(self.port), "--backend", backend]
        super().__init__("reverse-proxy", argv, folder)

    def start(self) -> None:
        super().start()

        def answering() -> bool:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1):
                    return True
            except OSError:
                return False

        wait_for(answering, 20, what="the reverse proxy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--backend", required=True, help="the central's URL")
    args = parser.parse_args()
    web.run_app(proxy_app(args.backend.rstrip("/")), host="127.0.0.1", port=args.port,
                print=None, access_log=None)


if __name__ == "__main__":
    main()
