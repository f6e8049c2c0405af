import { sql } from "./db";

await sql`CREATE TABLE IF NOT EXISTS bookmarks (id serial PRIMARY KEY, url text NOT NULL)`;
console.log("migrated");
await sql.close();
