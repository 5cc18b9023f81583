// The decision log: every allow and deny extauthz made, filtered on the
// server, each linked to its trace and to the playground.
import { useEffect, useState } from "react";
import { api } from "./api.js";
import { fmtTime, handoffKey } from "./playground.jsx";

const empty = { tenant: "", subject: "", operation: "", decision: "", reason: "", since: "", until: "", limit: "100" };

// toRFC3339 turns a datetime-local value into the API's RFC 3339 time.
const toRFC3339 = (v) => (v ? new Date(v).toISOString() : "");

export function Decisions({ me }) {
  const [filters, setFilters] = useState(empty);
  const [rows, setRows] = useState(null);
  const [error, setError] = useState("");
  const canPlay = (me.screens || []).includes("playground");

  async function search(f = filters) {
    setError("");
    try {
      setRows(await api("decisions", { query: { ...f, since: toRFC3339(f.since), until: toRFC3339(f.until) } }));
    } catch (e) {
      setError(e.message);
    }
  }
  useEffect(() => {
    search(empty);
  }, []);

  function open(d) {
    sessionStorage.setItem(handoffKey, JSON.stringify(d));
    location.hash = "#/playground?decision=" + encodeURIComponent(d.id);
  }
  const field = (name, props = {}) => (
    <label>
      {name[0].toUpperCase() + name.slice(1)}
      <input name={name} value={filters[name]} onChange={(e) => setFilters({ ...filters, [name]: e.target.value })} {...props} />
    </label>
  );
  return (
    <div className="decisions">
      <form className="filters" onSubmit={(e) => (e.preventDefault(), search())}>
        {field("tenant")}
        {field("subject")}
        {field("operation")}
        <label>
          Decision
          <select name="decision" value={filters.decision} onChange={(e) => setFilters({ ...filters, decision: e.target.value })}>
            <option value="">any</option>
            <option value="allow">allow</option>
            <option value="deny">deny</option>
          </select>
        </label>
        {field("reason")}
        {field("since", { type: "datetime-local" })}
        {field("until", { type: "datetime-local" })}
        {field("limit", { type: "number", min: 1, max: 1000 })}
        <button type="submit" className="primary">Search</button>
        <button type="button" onClick={() => (setFilters(empty), search(empty))}>Clear</button>
      </form>
      {error && <p className="error" role="alert">{error}</p>}
      {rows && (
        <table className="grid" data-testid="decisions">
          <thead>
            <tr><th>Time</th><th>Tenant</th><th>Subject</th><th>Operation</th><th>Decision</th><th>Reason</th><th>Trace</th>{canPlay && <th />}</tr>
          </thead>
          <tbody>
            {rows.length === 0 && (
              <tr><td colSpan={8} className="muted">No decision matches.</td></tr>
            )}
            {rows.map((d) => (
              <tr key={d.id} data-decision={d.id} className={d.decision}>
                <td>{fmtTime(d.time)}</td>
                <td>{d.tenant}</td>
                <td>{d.subject}</td>
                <td>{d.operation}</td>
                <td className={d.decision}>{d.decision}</td>
                <td>{d.reason}</td>
                <td>
                  {d.traceUrl ? (
                    <a href={d.traceUrl} target="_blank" rel="noreferrer">{(d.traceId || "trace").slice(0, 12)}</a>
                  ) : (
                    <code>{(d.traceId || "").slice(0, 12)}</code>
                  )}
                </td>
                {canPlay && (
                  <td>
                    <button className="link" data-action="open-in-playground" onClick={() => open(d)}>Open in playground</button>
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}
