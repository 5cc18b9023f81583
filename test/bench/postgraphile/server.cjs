// PostGraphile v4 as a library, configured for production (no query log,
// no GraphiQL, no schema watching), serving the schemas PG_SCHEMA names
// (comma-separated, default blog) of DATABASE_URL on a free loopback port, which it prints as "listening
// <host:port>" once ready.
//
// Every request must carry the identity assertion the Fraise core requires
// (x-fraise-assertion: an EdDSA compact JWS signed by the key whose public
// half is in ASSERTION_PUB), verified here the same way, so that both
// servers do the same work to know who asks: signature, audience, issuer,
// expiry. Its tenant claim becomes the setting TENANT_SETTING (default
// fraise.tenant; app.tenant_id on a FraiseQL database) for the request's
// transaction (pgSettings), so row-level security isolates tenants exactly
// as it does for Fraise.
'use strict';
process.env.NODE_ENV = 'production';
const fs = require('node:fs');
const http = require('node:http');
const { createPublicKey, verify } = require('node:crypto');
const { Pool } = require('pg');
const { postgraphile } = require('postgraphile');

const publicKey = createPublicKey(fs.readFileSync(process.env.ASSERTION_PUB));
const LEEWAY = 5;

// tenantOf returns the verified assertion's tenant, or null.
function tenantOf(token) {
  if (typeof token !== 'string' || token.length > 16384) return null;
  const parts = token.split('.');
  if (parts.length !== 3) return null;
  try {
    const header = JSON.parse(Buffer.from(parts[0], 'base64url'));
    if (header.alg !== 'EdDSA') return null;
    if (!verify(null, Buffer.from(parts[0] + '.' + parts[1]), publicKey, Buffer.from(parts[2], 'base64url'))) return null;
    const c = JSON.parse(Buffer.from(parts[1], 'base64url'));
    const now = Math.floor(Date.now() / 1000);
    const aud = Array.isArray(c.aud) ? c.aud : [c.aud];
    if (c.iss !== 'fraise-extauthz' || !aud.includes('fraise-core-graphql')) return null;
    if (typeof c.exp !== 'number' || c.exp + LEEWAY < now) return null;
    if (typeof c.tenant !== 'string' || !c.sub) return null;
    return c.tenant;
  } catch {
    return null;
  }
}

const pool = new Pool({
  connectionString: process.env.DATABASE_URL,
  max: Number(process.env.POOL_MAX || 20),
});
const tenantSetting = process.env.TENANT_SETTING || 'fraise.tenant';
const handler = postgraphile(pool, (process.env.PG_SCHEMA || 'blog').split(','), {
  pgSettings: (req) => ({ [tenantSetting]: req.fraiseTenant }),
  graphiql: false,
  disableQueryLog: true,
  watchPg: false,
  retryOnInitFail: false,
  enableQueryBatching: false,
  setofFunctionsContainNulls: false,
  legacyRelations: 'omit',
});

const server = http.createServer((req, res) => {
  const tenant = tenantOf(req.headers['x-fraise-assertion']);
  if (tenant === null) {
    res.writeHead(401, { 'content-type': 'application/json' });
    res.end('{"errors":[{"message":"authentication required","extensions":{"code":"UNAUTHENTICATED"}}]}');
    return;
  }
  req.fraiseTenant = tenant;
  handler(req, res);
});
server.keepAliveTimeout = 65000;
server.listen(0, '127.0.0.1', () => {
  const { address, port } = server.address();
  process.stdout.write(`listening ${address}:${port}\n`);
});
const stop = () => server.close(() => pool.end().then(() => process.exit(0)));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
