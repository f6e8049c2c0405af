import { pool } from "./db";

async function migrate(): Promise<void> {
  await pool.query(
    "CREATE TABLE IF NOT EXISTS orders (id serial PRIMARY KEY, item text NOT NULL)",
  );
  console.log("migrations applied");
  await pool.end();
}

migrate().catch((err) => {
  console.error(err);
  process.exit(1);
});
