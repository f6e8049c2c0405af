"""Guestbook: standard library only. Entries live in data/app.db."""
import json
import os
import sqlite3
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

os.makedirs("data", exist_ok=True)
DB = os.path.join("data", "app.db")


def connect() -> sqlite3.Connection:
    conn = sqlite3.connect(DB)
    conn.execute("CREATE TABLE IF NOT EXISTS entries (id INTEGER PRIMARY KEY, text TEXT)")
    return conn


class Handler(BaseHTTPRequestHandler):
    def reply(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/items":
            with connect() as conn:
                rows = conn.execute("SELECT id, text FROM entries ORDER BY id").fetchall()
            self.reply(200, [{"id": i, "text": t} for i, t in rows])
        else:
            self.reply(200, {"guestbook": "hello"})

    def do_POST(self) -> None:
        if self.path != "/items":
            self.reply(404, {"error": "not found"})
            return
        length = int(self.headers.get("Content-Length", 0))
        text = json.loads(self.rfile.read(length))["text"]
        with connect() as conn:
            cur = conn.execute("INSERT INTO entries (text) VALUES (?)", (text,))
        self.reply(201, {"id": cur.lastrowid, "text": text})


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8000"))
    print(f"listening on {port}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", port), Handler).serve_forever()
