// The login page: the only page served without a session. In the
// development profile it lists the demo users and signs in as the one
// chosen; elsewhere the dev endpoints answer 404 and the page says so.
import { createRoot } from "react-dom/client";
import { useEffect, useState } from "react";
import { api } from "./api.js";
import "./login.css";

function Login() {
  const [users, setUsers] = useState(null);
  const [error, setError] = useState("");
  useEffect(() => {
    api("dev/users")
      .then(setUsers)
      .catch((e) => setError(e.status === 404 ? "Development login is not available: sign in through your identity provider." : e.message));
  }, []);
  async function signIn(subject) {
    setError("");
    try {
      await api("dev/login", { method: "POST", body: { subject } });
      location.assign("./");
    } catch (e) {
      setError(e.message);
    }
  }
  return (
    <main className="login">
      <h1>Fraise console</h1>
      <p className="sub">Development login: choose a demo user.</p>
      {error && <p className="error" role="alert">{error}</p>}
      {users === null && !error && <p>Loading users…</p>}
      <ul className="users">
        {(users || []).map((u) => (
          <li key={u.subject}>
            <button data-subject={u.subject} onClick={() => signIn(u.subject)}>
              <strong>{u.label || u.subject}</strong>
              <span>{u.subject} · tenant {u.tenant} · {u.roles.join(", ")}</span>
            </button>
          </li>
        ))}
      </ul>
    </main>
  );
}

createRoot(document.getElementById("root")).render(<Login />);
