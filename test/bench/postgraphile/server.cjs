// PostGraphile v4 as a library, configured for production (no query log,
// no GraphiQL, no schema watching), serving schema blog of DATABASE_URL on a
// free loopback port, which it prints as "listening <host:port>" once ready.
// Each request runs in a transaction with fraise.tenant set from the
// x-fraise-tenant header (pgSettings), so row-level security isolates
// tenants exactly as it does for Fraise.
'use strict';
process.env.NODE_ENV = 'production';
const http = require('node:http');
const { Pool } = require('pg');
const { postgraphile } = require('postgraphile');

const pool = new Pool({
  connectionString: process.env.DATABASE_URL,
  max: Number(process.env.POOL_MAX || 20),
});
const handler = postgraphile(pool, 'blog', {
  pgSettings: (req) => ({ 'fraise.tenant': String(req.headers['x-fraise-tenant'] || '') }),
  graphiql: false,
  disableQueryLog: true,
  watchPg: false,
  retryOnInitFail: false,
  enableQueryBatching: false,
  setofFunctionsContainNulls: false,
  legacyRelations: 'omit',
});

const server = http.createServer(handler);
server.keepAliveTimeout = 65000;
server.listen(0, '127.0.0.1', () => {
  const { address, port } = server.address();
  process.stdout.write(`listening ${address}:${port}\n`);
});
const stop = () => server.close(() => pool.end().then(() => process.exit(0)));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
