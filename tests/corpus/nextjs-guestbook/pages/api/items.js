import { query } from "../../lib/db";

export default async function handler(req, res) {
  if (req.method === "POST") {
    const { rows } = await query(
      "INSERT INTO entries (message) VALUES ($1) RETURNING id, message",
      [req.body.text],
    );
    return res.status(201).json({ id: rows[0].id, text: rows[0].message });
  }
  const { rows } = await query("SELECT id, message FROM entries ORDER BY id");
  res.status(200).json(rows.map((r) => ({ id: r.id, text: r.message })));
}
