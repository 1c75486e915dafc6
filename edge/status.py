"""The gateway's own HTTP listener: health for supervisors and operators."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

HealthCheck = Callable[[], tuple[bool, dict]]


def make_status_app(live: HealthCheck) -> web.Application:
    async def healthz(request: web.Request) -> web.Response:
        ok, detail = live()
        return web.json_response({"ok": ok, **detail}, status=200 if ok else 503)

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    return app


async def start_site(app: web.Application, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
