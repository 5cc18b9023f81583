// The GraphQL explorer: GraphiQL against /graphql through the ingress
// (the session cookie authenticates, the CSRF header goes with every
// POST), the tenant's persisted operations to load, the cost of the
// current document shown before it runs (/console/api/cost) and the
// trace of the last response.
import { GraphiQL } from "graphiql";
import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { api, csrfToken } from "./api.js";

export function Explorer() {
  const [persisted, setPersisted] = useState([]);
  const [query, setQuery] = useState(undefined);
  const [operationName, setOperationName] = useState(undefined);
  const [cost, setCost] = useState(null);
  const [trace, setTrace] = useState(null);
  const current = useRef({ query: "", variables: "" });
  const timer = useRef(0);

  useEffect(() => {
    api("persisted").then((list) => setPersisted(list || []), () => setPersisted([]));
  }, []);

  const estimate = useCallback((q, variables) => {
    clearTimeout(timer.current);
    timer.current = setTimeout(async () => {
      if (!q.trim()) return setCost(null);
      let vars = {};
      try {
        vars = variables ? JSON.parse(variables) : {};
      } catch {
        vars = {};
      }
      try {
        setCost(await api("cost", { method: "POST", body: { query: q, variables: vars } }));
      } catch (e) {
        setCost({ errors: [e.message] });
      }
    }, 300);
  }, []);

  const fetcher = useMemo(
    () => async (params) => {
      const res = await fetch("/graphql", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": csrfToken() },
        body: JSON.stringify(params),
      });
      const id = res.headers.get("x-fraise-trace-id");
      // Introspection runs through here too: keep the trace of the
      // operations the user runs, not of the schema fetch.
      if (id && params.operationName !== "IntrospectionQuery") {
        setTrace({ id, url: res.headers.get("x-fraise-trace-url") });
      }
      const text = await res.text();
      try {
        return JSON.parse(text);
      } catch {
        return { errors: [{ message: `HTTP ${res.status}: ${text.slice(0, 200)}` }] };
      }
    },
    [],
  );

  function load(op) {
    setQuery(op.document);
    setOperationName(op.operation || op.name);
    current.current.query = op.document;
    estimate(op.document, current.current.variables);
  }

  const over = cost && cost.limit && cost.cost > cost.limit;
  return (
    <div className="explorer">
      <aside className="persisted">
        <h2>Persisted operations</h2>
        {persisted.length === 0 && <p className="muted">None for this tenant.</p>}
        <ul>
          {persisted.map((op) => (
            <li key={op.id}>
              <button className="link" data-persisted={op.id} onClick={() => load(op)} title={op.id}>
                {op.name || op.operation || op.id}
              </button>
            </li>
          ))}
        </ul>
      </aside>
      <section className="graphiql-wrap">
        <div className="explorer-bar">
          <span className={"cost" + (over ? " over" : "")} data-testid="cost">
            {cost == null
              ? "Cost: type a query"
              : cost.errors && cost.errors.length && cost.cost == null
                ? "Cost: " + cost.errors.map((e) => e.message || e).join("; ")
                : `Cost ${cost.cost} / ${cost.limit} · depth ${cost.depth} / ${cost.maxDepth}` +
                  (cost.errors && cost.errors.length ? " · " + cost.errors.map((e) => e.message || e).join("; ") : "")}
          </span>
          <span className="trace" data-testid="trace">
            {trace ? (
              <>
                Trace:{" "}
                {trace.url ? (
                  <a href={trace.url} target="_blank" rel="noreferrer">{trace.id}</a>
                ) : (
                  <code>{trace.id}</code>
                )}
              </>
            ) : (
              "Trace: run a query"
            )}
          </span>
        </div>
        <GraphiQL
          fetcher={fetcher}
          query={query}
          operationName={operationName}
          shouldPersistHeaders={false}
          onEditQuery={(q) => {
            current.current.query = q;
            estimate(q, current.current.variables);
          }}
          onEditVariables={(v) => {
            current.current.variables = v;
            estimate(current.current.query, v);
          }}
        />
      </section>
    </div>
  );
}
