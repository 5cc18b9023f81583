// The console's calls to its API (contract: /console/api/*). Every call
// is same-origin with the session cookie; every write carries the CSRF
// token the server set in the fraise_csrf cookie, which is how the server
// tells this page's writes from a cross-site form's.

// The API's base: the app is served at /console/ (index.html) and
// /console/login, so a path relative to the document resolves there.
export const apiBase = new URL("api/", document.baseURI.replace(/login$/, "")).pathname;

export function csrfToken() {
  const m = document.cookie.match(/(?:^|;\s*)fraise_csrf=([^;]*)/);
  return m ? decodeURIComponent(m[1]) : "";
}

// ApiError carries the contract's error body: {"error":{"code","message"}}.
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

export async function api(path, { method = "GET", body, query } = {}) {
  let url = apiBase + path;
  if (query) {
    const qs = new URLSearchParams(Object.entries(query).filter(([, v]) => v !== "" && v != null));
    if ([...qs].length) url += "?" + qs;
  }
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    headers["X-CSRF-Token"] = csrfToken();
    if (body !== undefined) headers["Content-Type"] = "application/json";
  }
  const res = await fetch(url, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (res.status === 401) {
    // The session expired or was never there: only the login page answers.
    location.assign(apiBase.replace(/api\/$/, "login"));
    throw new ApiError(401, "unauthenticated", "signed out");
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) {
    const e = (data && data.error) || {};
    throw new ApiError(res.status, e.code, e.message || text.slice(0, 200));
  }
  return data;
}
