import os
import sqlite3

from flask import Flask, g, jsonify, request

app = Flask(__name__)
DATABASE = os.path.join(os.path.dirname(__file__), "data", "notes.db")


def get_db() -> sqlite3.Connection:
    if "db" not in g:
        g.db = sqlite3.connect(DATABASE)
        g.db.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT)")
    return g.db


@app.teardown_appcontext
def close_db(exc: BaseException | None) -> None:
    db = g.pop("db", None)
    if db is not None:
        db.close()


@app.route("/")
def index():  # type: ignore[no-untyped-def]
    return "<h1>Notes</h1>"


@app.route("/items", methods=["GET", "POST"])
def items():  # type: ignore[no-untyped-def]
    db = get_db()
    if request.method == "POST":
        cur = db.execute("INSERT INTO notes (body) VALUES (?)", (request.json["text"],))
        db.commit()
        return jsonify(id=cur.lastrowid, text=request.json["text"]), 201
    rows = db.execute("SELECT id, body FROM notes ORDER BY id").fetchall()
    return jsonify([{"id": i, "text": t} for i, t in rows])


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=int(os.environ.get("PORT", "5000")))
