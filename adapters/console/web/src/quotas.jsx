// Quotas and limits: each tenant's tier, usage against its quotas (bars)
// and its rate-limit and admission refusals over time (a line chart),
// drawn as SVG here: no chart library, nothing loaded from elsewhere.
import { useEffect, useState } from "react";
import { api } from "./api.js";

function Bar({ name, used, limit }) {
  const share = limit > 0 ? Math.min(used / limit, 1) : 0;
  const level = share >= 0.9 ? "high" : share >= 0.7 ? "mid" : "low";
  return (
    <div className="quota" data-quota={name}>
      <span className="qname">{name}</span>
      <svg viewBox="0 0 200 14" className="bar" role="img" aria-label={`${name}: ${used} of ${limit}`}>
        <rect x="0" y="0" width="200" height="14" rx="3" className="track" />
        <rect x="0" y="0" width={Math.round(200 * share)} height="14" rx="3" className={"fill " + level} />
      </svg>
      <span className="qnum">{used} / {limit || "∞"}</span>
    </div>
  );
}

// Chart draws refusals over time: one polyline per kind, the time axis
// from the first to the last sample.
function Chart({ points }) {
  const W = 560, H = 160, L = 36, B = 22, T = 8, R = 8;
  if (!points || points.length === 0) return <p className="muted">No refusal recorded.</p>;
  const times = points.map((p) => new Date(p.time).getTime());
  const t0 = Math.min(...times), t1 = Math.max(...times);
  const max = Math.max(1, ...points.map((p) => Math.max(p.ratelimit || 0, p.admission || 0)));
  const x = (t) => L + (t1 === t0 ? (W - L - R) / 2 : ((t - t0) / (t1 - t0)) * (W - L - R));
  const y = (v) => T + (1 - v / max) * (H - T - B);
  const line = (k) => points.map((p, i) => `${x(times[i]).toFixed(1)},${y(p[k] || 0).toFixed(1)}`).join(" ");
  const label = (t) => new Date(t).toISOString().slice(11, 16);
  return (
    <svg viewBox={`0 0 ${W} ${H}`} className="chart" role="img" aria-label="refusals over time">
      <line x1={L} y1={H - B} x2={W - R} y2={H - B} className="axis" />
      <line x1={L} y1={T} x2={L} y2={H - B} className="axis" />
      <text x={L - 4} y={T + 8} className="tick end">{max}</text>
      <text x={L - 4} y={H - B} className="tick end">0</text>
      <text x={L} y={H - 6} className="tick">{label(t0)}</text>
      <text x={W - R} y={H - 6} className="tick end">{label(t1)}</text>
      <polyline points={line("ratelimit")} className="series ratelimit" />
      <polyline points={line("admission")} className="series admission" />
      {points.map((p, i) => (
        <g key={i}>
          <circle cx={x(times[i])} cy={y(p.ratelimit || 0)} r="2.5" className="dot ratelimit" />
          <circle cx={x(times[i])} cy={y(p.admission || 0)} r="2.5" className="dot admission" />
        </g>
      ))}
    </svg>
  );
}

export function Quotas() {
  const [tenants, setTenants] = useState(null);
  const [error, setError] = useState("");
  useEffect(() => {
    api("quotas").then(setTenants, (e) => setError(e.message));
  }, []);
  if (!tenants) return <p className={error ? "error" : ""}>{error || "Loading…"}</p>;
  return (
    <div className="quotas">
      {tenants.length === 0 && <p className="muted">No tenant.</p>}
      {tenants.map((t) => (
        <article key={t.tenant} className="tenant-card" data-tenant={t.tenant}>
          <header>
            <h3>{t.tenant}</h3>
            <span className="pill">{t.tier}</span>
          </header>
          {(t.quotas || []).map((q) => (
            <Bar key={q.name} {...q} />
          ))}
          <h4>
            Refusals over time <span className="legend ratelimit">rate limit</span> <span className="legend admission">admission</span>
          </h4>
          <Chart points={t.refusals} />
        </article>
      ))}
    </div>
  );
}
