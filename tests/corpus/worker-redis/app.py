from db import QUEUE, pg, queue
from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/")
def index():  # type: ignore[no-untyped-def]
    return jsonify(queued=queue().llen(QUEUE))


@app.post("/items")
def enqueue():  # type: ignore[no-untyped-def]
    queue().lpush(QUEUE, request.get_json()["text"])
    return jsonify(queued=True), 202


@app.get("/items")
def processed():  # type: ignore[no-untyped-def]
    with pg() as conn:
        rows = conn.execute("SELECT id, email FROM signups ORDER BY id").fetchall()
    return jsonify([{"id": i, "text": t} for i, t in rows])
