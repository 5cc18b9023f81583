// The console's single page: it asks /console/api/me which screens the
// signed-in role may see and shows only those, in the navigation and as
// hash routes (#/explorer, #/playground, ...), so the server never needs a
// catch-all route. The server enforces the same split on the API paths;
// hiding a screen here is for clarity, not for security.
import { createRoot } from "react-dom/client";
import { useEffect, useState } from "react";
import { api } from "./api.js";
import { Explorer } from "./explorer.jsx";
import { Playground } from "./playground.jsx";
import { Decisions } from "./decisions.jsx";
import { Observers } from "./observers.jsx";
import { Quotas } from "./quotas.jsx";
import "graphiql/style.css";
import "./app.css";

const screens = {
  explorer: { title: "Explorer", component: Explorer },
  playground: { title: "Policy playground", component: Playground },
  decisions: { title: "Decisions", component: Decisions },
  observers: { title: "Observers", component: Observers },
  quotas: { title: "Quotas", component: Quotas },
};

// route reads the hash: "#/decisions?x=y" → {screen: "decisions", params}.
function route() {
  const h = location.hash.replace(/^#\/?/, "");
  const [screen, qs] = h.split("?");
  return { screen, params: new URLSearchParams(qs || "") };
}

function App() {
  const [me, setMe] = useState(null);
  const [error, setError] = useState("");
  const [where, setWhere] = useState(route());
  useEffect(() => {
    api("me").then(setMe, (e) => setError(e.message));
    const onHash = () => setWhere(route());
    addEventListener("hashchange", onHash);
    return () => removeEventListener("hashchange", onHash);
  }, []);
  if (error) return <p className="error page">{error}</p>;
  if (!me) return <p className="page">Loading…</p>;
  // The navigation's order is the console's, whatever the server's.
  const allowed = Object.keys(screens).filter((s) => (me.screens || []).includes(s));
  const current = allowed.includes(where.screen) ? where.screen : allowed[0];
  if (current && current !== where.screen) {
    // An unknown or forbidden route lands on the first allowed screen.
    history.replaceState(null, "", "#/" + current);
  }
  const Screen = current ? screens[current].component : null;
  async function logout() {
    try {
      await api("logout", { method: "POST" });
    } finally {
      location.assign("login");
    }
  }
  return (
    <div className="shell">
      <header className="top">
        <span className="brand">Fraise</span>
        <nav aria-label="screens">
          {allowed.map((s) => (
            <a key={s} href={"#/" + s} data-screen={s} className={s === current ? "active" : ""}>
              {screens[s].title}
            </a>
          ))}
        </nav>
        <span className="who" data-subject={me.subject}>
          {me.subject} · {me.tenant} · <span className="roles">{(me.roles || []).join(", ")}</span>
        </span>
        <button className="logout" onClick={logout}>Sign out</button>
      </header>
      <main className={"screen screen-" + current} data-screen={current}>
        {Screen ? <Screen me={me} params={where.params} /> : <p>No screen is open to your role.</p>}
      </main>
    </div>
  );
}

createRoot(document.getElementById("root")).render(<App />);
