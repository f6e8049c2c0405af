import { Hono } from "hono";
import { sql } from "./db";

const app = new Hono();

app.get("/", (c) => c.text("Hello Hono!"));

app.post("/items", async (c) => {
  const { text } = await c.req.json();
  const [row] = await sql`INSERT INTO bookmarks (url) VALUES (${text}) RETURNING id, url`;
  return c.json({ id: row.id, text: row.url }, 201);
});

app.get("/items", async (c) => {
  const rows = await sql`SELECT id, url FROM bookmarks ORDER BY id`;
  return c.json(rows.map((r: { id: number; url: string }) => ({ id: r.id, text: r.url })));
});

export default {
  port: Number(process.env.PORT ?? 3000),
  fetch: app.fetch,
};
