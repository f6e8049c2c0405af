const express = require('express');
const db = require('./db');

const app = express();
app.use(express.json());

app.get('/', (req, res) => {
  res.json({ service: 'tasks-api' });
});

app.post('/items', async (req, res, next) => {
  try {
    const [task] = await db('tasks').insert({ title: req.body.text }).returning(['id', 'title']);
    res.status(201).json({ id: task.id, text: task.title });
  } catch (err) {
    next(err);
  }
});

app.get('/items', async (req, res, next) => {
  try {
    const tasks = await db('tasks').select('id', 'title').orderBy('id');
    res.json(tasks.map((t) => ({ id: t.id, text: t.title })));
  } catch (err) {
    next(err);
  }
});

const port = process.env.PORT || 3000;
app.listen(port, () => {
  console.log(`tasks-api listening on port ${port}`);
});
