// The admin console: sign-in, then Users, Fraud, Money, Venues and the Audit log.
// Each screen calls the public API with the signed-in admin's token; what a
// role may do is decided by the gateway and the services (buttons a role
// cannot use are disabled, with the reason, but nothing relies on that).
import { StrictMode, useEffect, useState } from "react";
import { createRoot } from "react-dom/client";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { AlertStatus, FraudAction } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentAdminService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { api, clearSession, CONSOLE_ROLES, hasRole, loadSession, type Session } from "./api";
import { Audit } from "./audit";
import { Deliveries } from "./deliveries";
import { Fraud } from "./fraud";
import { Money } from "./money";
import { Partners } from "./partners";
import { Payments } from "./payments";
import { ClaimFirstAdmin, SignIn } from "./signin";
import { Suspense } from "./suspense";
import { Templates } from "./templates";
import { Users } from "./users";
import { Venues } from "./venues";
import "./styles.css";

const SCREENS = {
  users: { title: "Users", roles: CONSOLE_ROLES, render: (s: Session) => <Users session={s} /> },
  payments: { title: "Payments", roles: CONSOLE_ROLES, render: (s: Session) => <Payments session={s} /> },
  fraud: { title: "Fraud", roles: CONSOLE_ROLES, render: (s: Session) => <Fraud session={s} /> },
  suspense: { title: "Suspense", roles: CONSOLE_ROLES, render: (s: Session) => <Suspense session={s} /> },
  money: { title: "Money", roles: ["admin", "finance"], render: (s: Session) => <Money session={s} /> },
  templates: { title: "Templates", roles: CONSOLE_ROLES, render: (s: Session) => <Templates session={s} /> },
  notifications: { title: "Notifications", roles: CONSOLE_ROLES, render: () => <Deliveries /> },
  partners: { title: "Partners", roles: CONSOLE_ROLES, render: (s: Session) => <Partners session={s} /> },
  venues: { title: "Venues", roles: ["admin"], render: () => <Venues /> },
  audit: { title: "Audit log", roles: CONSOLE_ROLES, render: () => <Audit /> },
} as const;
type ScreenName = keyof typeof SCREENS;

function screenFromPath(): ScreenName {
  const name = window.location.pathname.replace(/^\/admin\/?/, "").split("/")[0];
  return name in SCREENS ? (name as ScreenName) : "users";
}

/** The badge's most: past it, "100+" (one page asked, however many wait). */
const HELD_SHOWN_MAX = 100;

/**
 * Open alerts that hold a tip or payout: the console's alert to whoever is signed in, refreshed every 15 s.
 * Asked by action on the server: open flags (nothing closes them) would otherwise fill the page.
 */
function useHeldCount(session: Session | undefined): string {
  const [held, setHeld] = useState("");
  const signedIn = hasRole(session, ...CONSOLE_ROLES);
  useEffect(() => {
    if (!signedIn) return;
    let stopped = false;
    const poll = async () => {
      try {
        const { alerts, page } = await api(PaymentAdminService).listFraudAlerts({ status: AlertStatus.OPEN, action: FraudAction.HOLD, page: { pageSize: HELD_SHOWN_MAX } });
        if (!stopped) setHeld(page?.nextPageToken ? `${HELD_SHOWN_MAX}+` : alerts.length ? String(alerts.length) : "");
      } catch {
        // The next poll tries again; the Fraud screen shows errors.
      }
    };
    void poll();
    const timer = setInterval(poll, 15_000);
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }, [signedIn]);
  return held;
}

function App() {
  const [session, setSession] = useState<Session | undefined>(loadSession);
  const [screen, setScreen] = useState<ScreenName>(screenFromPath);
  const held = useHeldCount(session);
  useEffect(() => {
    const back = () => setScreen(screenFromPath());
    window.addEventListener("popstate", back);
    return () => window.removeEventListener("popstate", back);
  }, []);
  const signOut = async () => {
    await api(AuthService).logout({}).catch(() => undefined);
    clearSession();
    setSession(undefined);
  };

  if (!session) return <SignIn onSignedIn={setSession} />;
  if (!hasRole(session, ...CONSOLE_ROLES)) return <ClaimFirstAdmin session={session} onClaimed={setSession} onSignOut={signOut} />;
  const go = (name: ScreenName) => {
    window.history.pushState(null, "", `/admin/${name}`);
    setScreen(name);
  };
  const current = SCREENS[screen];
  return (
    <>
      {/* Keyboard users pass the header's screens at once (WCAG 2.4.1). */}
      <a className="skip" href="#screen">Skip to the screen</a>
      <header>
        <strong>TTIP admin</strong>
        <nav>
          {(Object.keys(SCREENS) as ScreenName[])
            .filter((n) => hasRole(session, ...SCREENS[n].roles))
            .map((n) => (
              <a key={n} href={`/admin/${n}`} aria-current={n === screen ? "page" : undefined} onClick={(e) => (e.preventDefault(), go(n))}>
                {SCREENS[n].title}
                {n === "fraud" && held && <span className="badge" role="status" aria-label={`${held} held for review`}>{held}</span>}
              </a>
            ))}
        </nav>
        <span className="who">
          <span title="Every time shown or typed in the console is Nairobi's (EAT, UTC+3), whatever this computer's zone">Times: Nairobi (EAT)</span> ·{" "}
          {session.roles.filter((r) => CONSOLE_ROLES.includes(r)).join(", ")} · <button className="link" onClick={signOut}>Sign out</button>
        </span>
      </header>
      <main id="screen" tabIndex={-1}>
        <h1>{current.title}</h1>
        {hasRole(session, ...current.roles) ? current.render(session) : <p className="error">Your role cannot see this screen.</p>}
      </main>
    </>
  );
}

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
