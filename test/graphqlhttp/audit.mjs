// Runs the graphql-http server audits (serverAudits, the GraphQL-over-HTTP
// conformance suite) against a Fraise core and prints one JSON array of
// results on stdout. audit_test.go starts the core and reads the results.
//
// The core refuses any request without a valid identity assertion issued
// for it, so every request the audits make goes through a fetch that adds a
// freshly signed one (EdDSA compact JWS), bound to the request as extauthz
// binds it: method, path and the operation's hash (see operationHash).
// Environment:
//   FRAISE_AUDIT_URL     the core's /graphql URL
//   FRAISE_AUDIT_KEY     the Ed25519 private key, PKCS#8 PEM
//   FRAISE_AUDIT_KID     its key id, as the core's verifier names it
//   FRAISE_AUDIT_TENANT  the tenant the assertion names
import { createHash, createPrivateKey, randomUUID, sign } from 'node:crypto';
import { serverAudits } from 'graphql-http';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const url = env('FRAISE_AUDIT_URL');
const key = createPrivateKey(env('FRAISE_AUDIT_KEY'));
const kid = env('FRAISE_AUDIT_KID');
const tenant = env('FRAISE_AUDIT_TENANT');

const b64 = (s) => Buffer.from(s).toString('base64url');

const sha256 = (s) => createHash('sha256').update(s, 'utf8').digest('hex');

// operationHash names the operation a request runs as the core names it
// (core/graphql/request.OperationHash): the SHA-256 of the document's hash
// (the persisted hash, or the SHA-256 of the query), a newline and the
// operation name. A request this reading cannot name gets none: the core
// refuses it while decoding, before it compares.
function operationHash(method, url, body) {
  try {
    let query, operationName, extensions;
    if (method === 'GET') {
      const p = new URL(url).searchParams;
      query = p.get('query');
      operationName = p.get('operationName');
      extensions = p.get('extensions') ? JSON.parse(p.get('extensions')) : null;
    } else {
      ({ query, operationName, extensions } = JSON.parse(body));
    }
    const persisted = extensions?.persistedQuery?.sha256Hash;
    const doc = typeof persisted === 'string' ? persisted.toLowerCase() : sha256(query ?? '');
    return sha256(doc + '\n' + (operationName ?? ''));
  } catch {
    return undefined;
  }
}

function assertion(method, url, body) {
  const now = Math.floor(Date.now() / 1000);
  const input = b64(JSON.stringify({ alg: 'EdDSA', kid, typ: 'JWT' })) + '.' + b64(JSON.stringify({
    iss: 'fraise-extauthz', sub: 'graphql-http-audit', aud: ['fraise-core-graphql'],
    iat: now, exp: now + 60, jti: randomUUID(), tenant, roles: ['viewer'],
    method, path: new URL(url).pathname, op_sha256: operationHash(method, url, body),
  }));
  return input + '.' + sign(null, Buffer.from(input), key).toString('base64url');
}

const fetchFn = (input, init = {}) => {
  const method = (init.method ?? 'GET').toUpperCase();
  const headers = new Headers(init.headers);
  headers.set('x-fraise-assertion', assertion(method, String(input), typeof init.body === 'string' ? init.body : ''));
  return fetch(input, { ...init, headers });
};

const results = [];
for (const { id, name, fn } of serverAudits({ url, fetchFn })) {
  const r = await fn();
  const out = { id, name, status: r.status };
  if (r.status !== 'ok') {
    out.reason = r.reason;
    out.httpStatus = r.response.status;
    out.contentType = r.response.headers.get('content-type');
    try {
      out.body = await r.response.text();
    } catch {
      out.body = '(body already read)';
    }
  }
  results.push(out);
}
process.stdout.write(JSON.stringify(results) + '\n');
