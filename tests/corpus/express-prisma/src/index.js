const express = require('express');
const { PrismaClient } = require('@prisma/client');

const prisma = new PrismaClient();
const app = express();
app.use(express.json());

app.get('/', (req, res) => res.send('links'));

app.post('/items', async (req, res) => {
  const link = await prisma.link.create({ data: { url: req.body.text } });
  res.status(201).json({ id: link.id, text: link.url });
});

app.get('/items', async (req, res) => {
  const links = await prisma.link.findMany({ orderBy: { id: 'asc' } });
  res.json(links.map((l) => ({ id: l.id, text: l.url })));
});

const PORT = process.env.PORT || 3000;
app.listen(PORT, () => console.log(`Server ready at http://localhost:${PORT}`));
