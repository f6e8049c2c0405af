"""Hello: the example app Headway deploys. Answers with its version; /up is its health check.
A file named BROKEN makes a broken release: "crash" exits at start, anything else fails /up.
A file named FAULTS makes a subtly bad one, healthy but worse on "/": "errors=0.05" answers
500 to 5% of requests, "delay=0.2" adds 200 ms to each (both may be given, one per line)."""

import asyncio
import os
import random
import sys
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Response

HERE = Path(__file__).parent
VERSION = (HERE / "VERSION").read_text().strip()
BROKEN = (HERE / "BROKEN").read_text().strip() if (HERE / "BROKEN").exists() else None

FAULTS = dict(line.split("=") for line in (HERE / "FAULTS").read_text().split()) \
    if (HERE / "FAULTS").exists() else {}
ERRORS, DELAY = float(FAULTS.get("errors", 0)), float(FAULTS.get("delay", 0))

if BROKEN == "crash":
    sys.exit("hello: refusing to start (BROKEN=crash)")

app = FastAPI()


@app.get("/")
async def index(response: Response) -> dict[str, str]:
    if DELAY:
        await asyncio.sleep(DELAY)
    if ERRORS and random.random() < ERRORS:
        response.status_code = 500
    return {"app": "hello", "version": VERSION, "instance": os.environ.get("HEADWAY_INSTANCE", "")}


@app.get("/slow")
async def slow(seconds: float = 2.0) -> dict[str, str]:
    """A long request, to show that a deploy lets in-flight requests finish."""
    await asyncio.sleep(min(seconds, 30))
    return {"app": "hello", "version": VERSION, "slept": str(seconds)}


@app.get("/up")
def up(response: Response) -> dict[str, str]:
    if BROKEN is not None:
        response.status_code = 503
        return {"status": "broken"}
    return {"status": "ok", "version": VERSION}


if __name__ == "__main__":
    # uvicorn stops accepting on SIGTERM and finishes in-flight requests first.
    uvicorn.run(app, host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ["PORT"]),
                access_log=False, timeout_graceful_shutdown=10, log_level="warning")
