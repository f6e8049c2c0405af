import os

import psycopg
from flask import Flask, jsonify, request

app = Flask(__name__)


def db() -> psycopg.Connection:
    conn = psycopg.connect(os.environ["DATABASE_URL"])
    conn.execute("CREATE TABLE IF NOT EXISTS todos (id serial PRIMARY KEY, title text)")
    return conn


@app.route("/")
def hello():  # type: ignore[no-untyped-def]
    name = os.environ.get("NAME", "World")
    return f"Hello {name}!"


@app.post("/items")
def add():  # type: ignore[no-untyped-def]
    with db() as conn:
        row = conn.execute("INSERT INTO todos (title) VALUES (%s) RETURNING id, title",
                           (request.get_json()["text"],)).fetchone()
    return jsonify(id=row[0], text=row[1]), 201


@app.get("/items")
def items():  # type: ignore[no-untyped-def]
    with db() as conn:
        rows = conn.execute("SELECT id, title FROM todos ORDER BY id").fetchall()
    return jsonify([{"id": i, "text": t} for i, t in rows])


if __name__ == "__main__":
    app.run(debug=True, host="0.0.0.0", port=int(os.environ.get("PORT", "8080")))
