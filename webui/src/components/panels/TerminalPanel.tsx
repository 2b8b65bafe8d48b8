/**
 * Terminals on the workspace's VM, shown with xterm.js: several at once, each
 * with its scroll-back kept while the page is open (the panel stays mounted,
 * hidden, when another panel is shown). Closing a terminal's tab ends its shell.
 */

import { FitAddon } from "@xterm/addon-fit";
import { Terminal } from "@xterm/xterm";
import "@xterm/xterm/css/xterm.css";
import { useCallback, useEffect, useRef, useState } from "react";
import { type Relay, RequestError, type Requester } from "../../lib/requests";
import { TerminalSession } from "../../lib/terminals";

/** Lines of scroll-back each terminal keeps. */
export const SCROLLBACK_LINES = 5000;

interface Tab {
  key: number;
  title: string;
}

export function TerminalPanel({
  relay,
  requester,
  workspaceId,
  visible,
}: {
  relay: Relay;
  requester: Requester;
  workspaceId: string;
  visible: boolean;
}) {
  const [tabs, setTabs] = useState<Tab[]>([]);
  const [active, setActive] = useState<number | undefined>(undefined);
  const next = useRef(0);
  const add = useCallback(() => {
    next.current += 1;
    const tab = { key: next.current, title: `Terminal ${next.current}` };
    setTabs((t) => [...t, tab]);
    setActive(tab.key);
  }, []);
  const remove = useCallback((key: number) => {
    setTabs((t) => {
      const rest = t.filter((x) => x.key !== key);
      setActive((a) => (a === key ? rest[rest.length - 1]?.key : a));
      return rest;
    });
  }, []);
  return (
    <div className="terminal-panel" hidden={!visible}>
      <div className="terminal-tabs" role="tablist" aria-label="Terminals">
        {tabs.map((t) => (
          <span key={t.key} className="terminal-tab-wrap">
            <button
              type="button"
              role="tab"
              className="panel-tab"
              aria-selected={active === t.key}
              onClick={() => setActive(t.key)}
            >
              {t.title}
            </button>
            <button
              type="button"
              className="link"
              aria-label={`Close ${t.title}`}
              onClick={() => remove(t.key)}
            >
              ×
            </button>
          </span>
        ))}
        <button type="button" className="link" onClick={add}>
          New terminal
        </button>
      </div>
      {tabs.length === 0 ? (
        <p className="muted panel-note">A shell on the workspace's VM, in its working directory.</p>
      ) : null}
      {tabs.map((t) => (
        <TerminalView
          key={t.key}
          title={t.title}
          relay={relay}
          requester={requester}
          workspaceId={workspaceId}
          shown={visible && active === t.key}
        />
      ))}
    </div>
  );
}

function TerminalView({
  title,
  relay,
  requester,
  workspaceId,
  shown,
}: {
  title: string;
  relay: Relay;
  requester: Requester;
  workspaceId: string;
  shown: boolean;
}) {
  const host = useRef<HTMLDivElement>(null);
  const fit = useRef<FitAddon | null>(null);
  const [problem, setProblem] = useState<string | undefined>(undefined);
  useEffect(() => {
    const el = host.current;
    if (!el) return;
    const term = new Terminal({ scrollback: SCROLLBACK_LINES, convertEol: false, fontSize: 13 });
    const addon = new FitAddon();
    term.loadAddon(addon);
    term.open(el);
    fit.current = addon;
    let session: TerminalSession | undefined;
    let gone = false;
    // Keystrokes before the VM answered wait for it (a few only).
    let early = "";
    const typed = term.onData((d) => {
      if (session) session.input(d);
      else early = (early + d).slice(-4096);
    });
    const sized = term.onResize(({ cols, rows }) => session?.resize(cols, rows));
    try {
      addon.fit();
    } catch {
      // Hidden (no size yet): the default 80 by 24 until shown.
    }
    TerminalSession.open(
      relay,
      requester,
      workspaceId,
      { cols: term.cols, rows: term.rows },
      {
        output: (data) => term.write(data),
        exit: (reason, code) => {
          const why =
            reason === "exited" ? `exited${code === undefined ? "" : ` (${code})`}` : reason;
          term.write(`\r\n[the terminal ended: ${why}]\r\n`);
        },
      },
    ).then(
      (s) => {
        if (gone) s.close();
        else {
          session = s;
          s.resize(term.cols, term.rows);
          if (early) s.input(early);
          early = "";
        }
      },
      (e: unknown) => {
        if (!gone)
          setProblem(e instanceof RequestError ? e.message : "The terminal could not open.");
      },
    );
    return () => {
      gone = true;
      typed.dispose();
      sized.dispose();
      session?.close();
      fit.current = null;
      term.dispose();
    };
  }, [relay, requester, workspaceId]);
  useEffect(() => {
    if (!shown) return;
    const refit = () => {
      try {
        fit.current?.fit();
      } catch {
        // Not laid out yet.
      }
    };
    refit();
    const el = host.current;
    const observer = typeof ResizeObserver === "undefined" ? undefined : new ResizeObserver(refit);
    if (el) observer?.observe(el);
    window.addEventListener("resize", refit);
    return () => {
      observer?.disconnect();
      window.removeEventListener("resize", refit);
    };
  }, [shown]);
  return (
    <section className="terminal-view" aria-label={title} hidden={!shown}>
      {problem ? (
        <p role="alert" className="error">
          {problem}
        </p>
      ) : null}
      <div className="terminal-host" ref={host} />
    </section>
  );
}
