import { useState } from "react";
import { ApiError } from "../lib/api";

export function Login({
  onLogin,
}: {
  onLogin: (username: string, password: string) => Promise<void>;
}) {
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  return (
    <main className="login" id="main">
      <form
        className="card"
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          setError(null);
          try {
            await onLogin(username, password);
          } catch (err) {
            if (err instanceof ApiError) {
              setError(err.status === 401 ? "Wrong username or password." : err.message);
            } else {
              setError("Could not reach the server. Check your connection and try again.");
            }
            setBusy(false);
          }
        }}
      >
        <h1>FF Cloud</h1>
        <p className="muted">Sign in to drive your Claude sessions.</p>
        <label htmlFor="username">Username</label>
        <input
          id="username"
          autoComplete="username"
          // biome-ignore lint/a11y/noAutofocus: signing in is all this page is for.
          autoFocus
          required
          value={username}
          onChange={(e) => setUsername(e.target.value)}
        />
        <label htmlFor="password">Password</label>
        <input
          id="password"
          type="password"
          autoComplete="current-password"
          required
          value={password}
          onChange={(e) => setPassword(e.target.value)}
        />
        {error && (
          <p className="field-error" role="alert">
            {error}
          </p>
        )}
        <button type="submit" className="primary" disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
    </main>
  );
}
