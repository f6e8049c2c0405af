import express, { Request, Response } from "express";
import { pool } from "./db";

const app = express();
app.use(express.json());

app.get("/health", (_req: Request, res: Response) => {
  res.json({ status: "ok" });
});

app.post("/items", async (req: Request, res: Response) => {
  const { rows } = await pool.query(
    "INSERT INTO orders (item) VALUES ($1) RETURNING id, item",
    [req.body.text],
  );
  res.status(201).json({ id: rows[0].id, text: rows[0].item });
});

app.get("/items", async (_req: Request, res: Response) => {
  const { rows } = await pool.query("SELECT id, item FROM orders ORDER BY id");
  res.json(rows.map((r) => ({ id: r.id, text: r.item })));
});

const port = Number(process.env.PORT ?? 3000);
app.listen(port, () => console.log(`orders-service on :${port}`));
