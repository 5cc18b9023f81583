// The policy playground: the live policy set loaded read-only into a
// draft that lives only in this page. Every action sends the draft's
// files to the server, which compiles and evaluates them with OPA beside
// the live set; nothing here can change the live policy, and exporting
// gives a diff to review instead.
import { useEffect, useMemo, useState } from "react";
import { api } from "./api.js";
import { Editor } from "./editor.jsx";
import { regoLanguage } from "./rego.js";

// The draft outlives a visit to another screen (module state), not a reload.
const saved = { live: null, draft: null, input: "" };

// A decision chosen in the decision log ("open in playground") is handed
// over through sessionStorage, so the hash route stays a plain link.
export const handoffKey = "fraise.playground.decision";

function Verdict({ title, v }) {
  if (!v) return null;
  return (
    <div className={"verdict " + (v.allow ? "allow" : "deny")} data-verdict={title.toLowerCase()}>
      <h4>{title}</h4>
      <p className="badge">{v.allow ? "allow" : "deny"}</p>
      <dl>
        <dt>Reason</dt>
        <dd className="reason">{v.reason || "—"}</dd>
        <dt>Rule</dt>
        <dd className="rule"><code>{v.rule || "—"}</code></dd>
      </dl>
      {v.notes && v.notes.length > 0 && (
        <details>
          <summary>Explain notes ({v.notes.length})</summary>
          <pre className="notes">{v.notes.map((n) => (typeof n === "string" ? n : JSON.stringify(n))).join("\n")}</pre>
        </details>
      )}
    </div>
  );
}

export function Playground({ params }) {
  const [live, setLive] = useState(saved.live);
  const [draft, setDraft] = useState(saved.draft);
  const [active, setActive] = useState(0);
  const [input, setInput] = useState(saved.input);
  const [form, setForm] = useState({ role: "viewer", operation: "query", fields: "", dataset: "", subject: "", tenant: "" });
  const [check, setCheck] = useState(null);
  const [result, setResult] = useState(null);
  const [tests, setTests] = useState(null);
  const [replay, setReplay] = useState(null);
  const [limit, setLimit] = useState(100);
  const [diff, setDiff] = useState(null);
  const [source, setSource] = useState("");
  const [busy, setBusy] = useState("");
  const [error, setError] = useState("");

  useEffect(() => {
    if (saved.live) return;
    api("policies").then(
      (p) => {
        saved.live = p;
        saved.draft = p.files.map((f) => ({ ...f }));
        setLive(p);
        setDraft(saved.draft);
      },
      (e) => setError(e.message),
    );
  }, []);

  useEffect(() => {
    saved.draft = draft;
    saved.input = input;
  }, [draft, input]);

  // Open a decision handed over by the decision log and evaluate it.
  useEffect(() => {
    const id = params && params.get("decision");
    if (!id || !draft) return;
    const raw = sessionStorage.getItem(handoffKey);
    if (!raw) return;
    const d = JSON.parse(raw);
    if (String(d.id) !== id) return;
    sessionStorage.removeItem(handoffKey);
    const text = JSON.stringify(d.input, null, 2);
    setInput(text);
    setSource(`decision ${d.id}: ${d.decision} ${d.operation || ""} by ${d.subject || "?"} (${d.reason || "no reason"})`);
    evaluate(text);
    // evaluate reads the draft of this render: run once per handed-over decision.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [params && params.get("decision"), draft === null]);

  const dirty = useMemo(
    () => !!(live && draft) && draft.some((f, i) => !live.files[i] || live.files[i].content !== f.content),
    [live, draft],
  );

  async function run(name, fn) {
    setBusy(name);
    setError("");
    try {
      await fn();
    } catch (e) {
      setError(`${name}: ${e.message}`);
    } finally {
      setBusy("");
    }
  }

  const files = () => draft.map(({ path, content }) => ({ path, content }));
  const doCheck = () => run("check", async () => setCheck(await api("policies/check", { method: "POST", body: { files: files() } })));
  function evaluate(text = input) {
    return run("evaluate", async () => {
      let parsed;
      try {
        parsed = JSON.parse(text);
      } catch (e) {
        throw new Error("the input is not JSON: " + e.message);
      }
      setResult(await api("policies/evaluate", { method: "POST", body: { files: files(), input: parsed } }));
    });
  }
  const build = () =>
    run("build input", async () => {
      const body = {
        ...form,
        fields: form.fields.split(",").map((s) => s.trim()).filter(Boolean),
      };
      const r = await api("policies/input", { method: "POST", body });
      setInput(JSON.stringify(r.input, null, 2));
      setSource("built from the form");
    });
  const runTests = () => run("tests", async () => setTests(await api("policies/test", { method: "POST", body: { files: files() } })));
  const doReplay = () =>
    run("replay", async () => setReplay(await api("policies/replay", { method: "POST", body: { files: files(), limit: Number(limit) || 100 } })));
  const doExport = () =>
    run("export", async () => {
      const r = await api("policies/export", { method: "POST", body: { files: files() } });
      setDiff(r.diff);
    });
  function reset() {
    setDraft(live.files.map((f) => ({ ...f })));
    setCheck(null);
  }

  const diffURL = useMemo(() => (diff ? URL.createObjectURL(new Blob([diff], { type: "text/x-diff" })) : null), [diff]);
  const diagnostics = (check && check.errors) || [];

  if (!draft) return <p className={error ? "error" : ""}>{error || "Loading the live policy…"}</p>;
  const file = draft[active];
  return (
    <div className="playground">
      <section className="draft">
        <div className="toolbar">
          <h2>Draft policy {dirty && <span className="pill">edited</span>}</h2>
          <button onClick={doCheck} disabled={!!busy} data-action="check">Check</button>
          <button onClick={runTests} disabled={!!busy} data-action="test">Run tests</button>
          <button onClick={doExport} disabled={!!busy} data-action="export">Export diff</button>
          <button onClick={reset} disabled={!!busy || !dirty} data-action="reset">Reset to live</button>
        </div>
        <div className="tabs" role="tablist">
          {draft.map((f, i) => (
            <button key={f.path} role="tab" aria-selected={i === active} className={i === active ? "active" : ""} onClick={() => setActive(i)} data-file={f.path}>
              {f.path}
              {diagnostics.some((d) => d.path === f.path) && <span className="dot" title="errors" />}
            </button>
          ))}
        </div>
        <Editor
          key={file.path}
          label={"Rego: " + file.path}
          value={file.content}
          language={regoLanguage()}
          diagnostics={diagnostics.filter((d) => d.path === file.path)}
          onChange={(content) => setDraft((d) => d.map((f, i) => (i === active ? { ...f, content } : f)))}
        />
        {check && (
          <div className={"check " + (check.ok ? "ok" : "bad")} data-testid="check">
            {check.ok ? "The draft compiles." : `${check.errors.length} compile error(s):`}
            <ul>
              {check.errors.map((e, i) => (
                <li key={i}>
                  <button className="link" onClick={() => setActive(Math.max(0, draft.findIndex((f) => f.path === e.path)))}>
                    {e.path}:{e.row}:{e.col}
                  </button>{" "}
                  {e.message}
                </li>
              ))}
            </ul>
          </div>
        )}
        {tests && (
          <div className={"tests " + (tests.failed ? "bad" : "ok")} data-testid="tests">
            <h3>Tests: {tests.passed} passed, {tests.failed} failed</h3>
            <ul>
              {/* Failures first: those are what a reviewer reads. */}
              {[...tests.results].sort((a, b) => a.pass - b.pass).map((r) => (
                <li key={r.name} className={r.pass ? "pass" : "fail"}>
                  {r.pass ? "✓" : "✗"} {r.name} {r.message && <span className="muted">{r.message}</span>}
                </li>
              ))}
            </ul>
          </div>
        )}
        {diff != null && (
          <div className="diff" data-testid="diff">
            <h3>
              Diff from live{" "}
              {diff && (
                <a href={diffURL} download="policy.diff" className="button">Download policy.diff</a>
              )}
            </h3>
            <pre>{diff || "The draft is the live policy."}</pre>
          </div>
        )}
      </section>
      <section className="evaluate">
        {error && <p className="error" role="alert">{error}</p>}
        <h2>Input</h2>
        {source && <p className="muted source" data-testid="source">From {source}</p>}
        <form className="builder" onSubmit={(e) => (e.preventDefault(), build())}>
          <label>Role <select name="role" value={form.role} onChange={(e) => setForm({ ...form, role: e.target.value })}>
            {["admin", "operator", "security", "viewer", "anonymous"].map((r) => <option key={r}>{r}</option>)}
          </select></label>
          <label>Operation <input name="operation" list="operations" value={form.operation} onChange={(e) => setForm({ ...form, operation: e.target.value })} placeholder="query, mutation, subscription or a Flight method" /></label>
          <datalist id="operations">
            {["query", "mutation", "subscription", "GetFlightInfo", "DoGet", "ListFlights", "DoAction"].map((o) => <option key={o} value={o} />)}
          </datalist>
          <label>Root fields <input name="fields" value={form.fields} onChange={(e) => setForm({ ...form, fields: e.target.value })} placeholder="users, createPost" /></label>
          <label>Dataset (Flight) <input name="dataset" value={form.dataset} onChange={(e) => setForm({ ...form, dataset: e.target.value })} /></label>
          <label>Subject <input name="subject" value={form.subject} onChange={(e) => setForm({ ...form, subject: e.target.value })} placeholder="playground" /></label>
          <label>Tenant <input name="tenant" value={form.tenant} onChange={(e) => setForm({ ...form, tenant: e.target.value })} placeholder="yours" /></label>
          <button type="submit" disabled={!!busy} data-action="build-input">Build input</button>
        </form>
        <textarea className="input-json" aria-label="input JSON" value={input} onChange={(e) => setInput(e.target.value)} placeholder='Paste an input document: {"subject": ...}' spellCheck={false} />
        <button className="primary" onClick={() => evaluate()} disabled={!!busy || !input.trim()} data-action="evaluate">Evaluate</button>
        {result && (
          <div className="result" data-testid="result">
            {result.changed ? <p className="changed">The draft decides differently from the live policy.</p> : <p className="same">Same decision as the live policy.</p>}
            <div className="verdicts">
              <Verdict title="Draft" v={result.draft} />
              <Verdict title="Live" v={result.live} />
            </div>
          </div>
        )}
        <h2>Replay</h2>
        <div className="replay-bar">
          <label>Last <input type="number" min="1" max="10000" value={limit} onChange={(e) => setLimit(e.target.value)} /> decisions</label>
          <button onClick={doReplay} disabled={!!busy} data-action="replay">Replay against the draft</button>
        </div>
        {replay && (
          <div className="replay" data-testid="replay">
            <p>{replay.replayed} replayed, {replay.changed.length} would change.</p>
            {replay.changed.length > 0 && (
              <table>
                <thead><tr><th>Time</th><th>Subject</th><th>Operation</th><th>Live</th><th>Draft</th></tr></thead>
                <tbody>
                  {replay.changed.map((c, i) => (
                    <tr key={i} data-decision={c.decision.id}>
                      <td>{fmtTime(c.decision.time)}</td>
                      <td>{c.decision.subject}</td>
                      <td>{c.decision.operation}</td>
                      <td className={c.live.allow ? "allow" : "deny"}>{c.live.allow ? "allow" : "deny"} <span className="muted">{c.live.reason}</span></td>
                      <td className={c.draft.allow ? "allow" : "deny"}>{c.draft.allow ? "allow" : "deny"} <span className="muted">{c.draft.reason}</span></td>
                    </tr>
                  ))}
                </tbody>
              </table>
            )}
          </div>
        )}
      </section>
    </div>
  );
}

export function fmtTime(t) {
  if (!t) return "";
  const d = new Date(t);
  return isNaN(d) ? String(t) : d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}
