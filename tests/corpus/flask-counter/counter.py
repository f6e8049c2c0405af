import os

import redis
from flask import Flask, jsonify, request


def create_app() -> Flask:
    app = Flask(__name__)
    store = redis.from_url(os.environ.get("REDIS_URL", "redis://localhost:6379/0"),
                           decode_responses=True)

    @app.get("/health")
    def health():  # type: ignore[no-untyped-def]
        store.ping()
        return jsonify(ok=True)

    @app.post("/items")
    def hit():  # type: ignore[no-untyped-def]
        page = request.get_json()["text"]
        count = store.hincrby("hits", page, 1)
        return jsonify(text=page, count=count), 201

    @app.get("/items")
    def hits():  # type: ignore[no-untyped-def]
        return jsonify([{"text": k, "count": int(v)} for k, v in store.hgetall("hits").items()])

    return app
