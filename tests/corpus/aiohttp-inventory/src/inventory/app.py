import os

import asyncpg
from aiohttp import web

routes = web.RouteTableDef()


@routes.get("/ping")
async def ping(request: web.Request) -> web.Response:
    return web.json_response({"pong": True})


@routes.post("/items")
async def add_item(request: web.Request) -> web.Response:
    body = await request.json()
    row = await request.app["pool"].fetchrow(
        "INSERT INTO stock (name) VALUES ($1) RETURNING id, name", body["text"])
    return web.json_response({"id": row["id"], "text": row["name"]}, status=201)


@routes.get("/items")
async def list_items(request: web.Request) -> web.Response:
    rows = await request.app["pool"].fetch("SELECT id, name FROM stock ORDER BY id")
    return web.json_response([{"id": r["id"], "text": r["name"]} for r in rows])


async def pg_pool(app: web.Application):  # type: ignore[no-untyped-def]
    app["pool"] = await asyncpg.create_pool(os.environ["DATABASE_URL"])
    await app["pool"].execute("CREATE TABLE IF NOT EXISTS stock (id serial PRIMARY KEY, name text)")
    yield
    await app["pool"].close()


def create_app() -> web.Application:
    app = web.Application()
    app.add_routes(routes)
    app.cleanup_ctx.append(pg_pool)
    return app


def main() -> None:
    web.run_app(create_app(), port=int(os.environ.get("PORT", "8080")))
