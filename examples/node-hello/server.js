// Node example for Headway: answers with its version; /up is its health check.
// Listens on $HOST:$PORT (Headway sets both) and finishes in-flight requests on SIGTERM.
const fs = require("fs");
const express = require("express");

const version = fs.readFileSync(`${__dirname}/VERSION`, "utf8").trim();
const app = express();
app.get("/", (req, res) => res.json({ app: "node-hello", version }));
app.get("/up", (req, res) => res.json({ status: "ok", version }));

const server = app.listen(Number(process.env.PORT || 8080), process.env.HOST || "127.0.0.1");
process.on("SIGTERM", () => server.close(() => process.exit(0)));
