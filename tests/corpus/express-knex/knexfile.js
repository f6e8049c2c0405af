// Update with your config settings.

/**
 * @type { Object.<string, import("knex").Knex.Config> }
 */
const connection = {
  host: process.env.DB_HOST || '127.0.0.1',
  port: Number(process.env.DB_PORT || 5432),
  user: process.env.DB_USER,
  password: process.env.DB_PASSWORD,
  database: process.env.DB_NAME,
};

module.exports = {
  development: { client: 'pg', connection },
  production: {
    client: 'pg',
    connection,
    pool: { min: 2, max: 10 },
    migrations: { tableName: 'knex_migrations' },
  },
};
