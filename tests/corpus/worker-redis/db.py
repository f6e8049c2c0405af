import os

import psycopg
import redis

QUEUE = "signups"


def pg() -> psycopg.Connection:
    conn = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
    conn.execute("CREATE TABLE IF NOT EXISTS signups (id serial PRIMARY KEY, email text)")
    return conn


def queue() -> redis.Redis:
    return redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
