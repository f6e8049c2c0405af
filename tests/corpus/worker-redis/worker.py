"""Takes signups off the Redis list and stores them in PostgreSQL."""
import logging

from db import QUEUE, pg, queue

logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(message)s")
log = logging.getLogger("worker")


def main() -> None:
    conn, q = pg(), queue()
    log.info("waiting for jobs on %s", QUEUE)
    while True:
        job = q.brpop([QUEUE], timeout=5)
        if job is None:
            continue
        conn.execute("INSERT INTO signups (email) VALUES (%s)", (job[1],))
        log.info("stored %s", job[1])


if __name__ == "__main__":
    main()
