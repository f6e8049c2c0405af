'use strict';

const express = require('express');
const { Pool } = require('pg');

const pool = new Pool({ connectionString: process.env.DATABASE_URL });
const app = express();
app.use(express.json());

app.get('/healthz', async (req, res) => {
  try {
    await pool.query('SELECT 1');
    res.send('ok');
  } catch (err) {
    res.status(503).send(err.message);
  }
});

app.post('/items', async (req, res) => {
  const { rows } = await pool.query(
    'INSERT INTO visits (path) VALUES ($1) RETURNING id, path', [req.body.text]);
  res.status(201).json({ id: rows[0].id, text: rows[0].path });
});

app.get('/items', async (req, res) => {
  const { rows } = await pool.query('SELECT id, path FROM visits ORDER BY id');
  res.json(rows.map((r) => ({ id: r.id, text: r.path })));
});

async function main() {
  await pool.query('CREATE TABLE IF NOT EXISTS visits (id serial PRIMARY KEY, path text)');
  const port = process.env.PORT || 8080;
  app.listen(port, () => console.log(`visits listening on ${port}`));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
