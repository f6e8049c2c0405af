import { Pool } from "pg";

const pool = globalThis.pgPool ?? new Pool({ connectionString: process.env.DATABASE_URL });
globalThis.pgPool = pool;

let ready;

export async function query(text, params) {
  ready ??= pool.query(
    "CREATE TABLE IF NOT EXISTS entries (id serial PRIMARY KEY, message text NOT NULL)",
  );
  await ready;
  return pool.query(text, params);
}
