// Observers of the signed-in tenant: each rule with its recent
// deliveries and breaker, the backlog, and the dead-letter queue, whose
// entries an operator (or admin) can replay.
import { useEffect, useState } from "react";
import { api } from "./api.js";
import { fmtTime } from "./playground.jsx";

// Payload shows the start of a dead letter's event, the whole on demand.
function Payload({ value }) {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  if (!text || text.length <= 120) return <code className="payload">{text}</code>;
  return (
    <details>
      <summary><code className="payload">{text.slice(0, 120)}…</code></summary>
      <pre className="payload">{JSON.stringify(value, null, 2)}</pre>
    </details>
  );
}

export function Observers({ me }) {
  const [obs, setObs] = useState(null);
  const [dlq, setDlq] = useState(null);
  const [notice, setNotice] = useState("");
  const [error, setError] = useState("");
  const canReplay = (me.roles || []).some((r) => r === "operator" || r === "admin");

  async function load() {
    setError("");
    try {
      const [o, d] = await Promise.all([api("observers"), api("observers/dlq")]);
      setObs(o);
      setDlq(d || []);
    } catch (e) {
      setError(e.message);
    }
  }
  useEffect(() => {
    load();
  }, []);

  async function replay(id) {
    setNotice("");
    setError("");
    try {
      await api(`observers/dlq/${encodeURIComponent(id)}/replay`, { method: "POST" });
      setNotice(`Dead letter ${id} replayed.`);
      await load();
    } catch (e) {
      setError(`replay ${id}: ${e.message}`);
    }
  }

  if (!obs) return <p className={error ? "error" : ""}>{error || "Loading…"}</p>;
  return (
    <div className="observers">
      <div className="toolbar">
        <h2>Rules</h2>
        <span className="backlog" data-testid="backlog">
          Backlog: {obs.backlog.pending} pending, oldest {obs.backlog.oldestAgeSeconds}s
        </span>
        <button onClick={load}>Refresh</button>
      </div>
      {error && <p className="error" role="alert">{error}</p>}
      {notice && <p className="notice" role="status">{notice}</p>}
      <div className="rules">
        {obs.rules.length === 0 && <p className="muted">No rule for this tenant.</p>}
        {obs.rules.map((r) => (
          <article key={r.name} className="rule-card" data-rule={r.name}>
            <header>
              <h3>{r.name}</h3>
              <span className={"breaker " + r.breaker} data-breaker={r.breaker}>breaker {r.breaker}</span>
            </header>
            <p>
              <code>{r.table}</code> on {(r.events || []).join(", ")}
              {r.condition && <> when <code>{r.condition}</code></>} → <code>{r.action}</code>
            </p>
            <table className="grid small">
              <thead><tr><th>Time</th><th>Status</th><th>Attempts</th><th>Error</th></tr></thead>
              <tbody>
                {(r.deliveries || []).length === 0 && <tr><td colSpan={4} className="muted">No delivery yet.</td></tr>}
                {(r.deliveries || []).map((d, i) => (
                  <tr key={i} className={d.status}>
                    <td>{fmtTime(d.time)}</td>
                    <td>{d.status}</td>
                    <td>{d.attempts}</td>
                    <td>{d.error}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </article>
        ))}
      </div>
      <h2>Dead letters</h2>
      <table className="grid" data-testid="dlq">
        <thead><tr><th>Time</th><th>Rule</th><th>Attempts</th><th>Error</th><th>Payload</th>{canReplay && <th />}</tr></thead>
        <tbody>
          {dlq.length === 0 && <tr><td colSpan={6} className="muted">The dead-letter queue is empty.</td></tr>}
          {dlq.map((d) => (
            <tr key={d.id} data-dead-letter={d.id}>
              <td>{fmtTime(d.time)}</td>
              <td>{d.rule}</td>
              <td>{d.attempts}</td>
              <td>{d.error}</td>
              <td><Payload value={d.payload} /></td>
              {canReplay && (
                <td><button data-action="replay" onClick={() => replay(d.id)}>Replay</button></td>
              )}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
