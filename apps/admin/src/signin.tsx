// Admin sign-in: phone and OTP, then the PIN (or choosing one, for a new
// account), then this browser's device key is registered for the step-ups
// that money actions need. Without a console role, the only thing offered is
// the first-admin setup token.
import { useState, type FormEvent } from "react";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { loadDeviceKey, newDeviceKey, saveDeviceKey } from "../../web/src/lib/device-key";
import { signInRefusal } from "../../web/src/lib/sign-in";
import { api, errorText, refresh, saveSession, type Session } from "./api";

type Step = { kind: "phone" } | { kind: "otp"; challengeId: string } | { kind: "pin"; pinSessionId: string } | { kind: "new-pin" };

/** Registers this browser's device key once per user, with the PIN just typed (auth adds a key only with it). */
export async function ensureDeviceKey(s: Session, pin: string): Promise<void> {
  if (await loadDeviceKey(s.userId)) return;
  const { privateKey, publicJwk } = await newDeviceKey();
  const { device } = await api(AuthService).registerDevice({ name: `Admin console (${navigator.platform || "browser"})`.slice(0, 60), publicKeyJwk: publicJwk, pin });
  await saveDeviceKey(s.userId, { deviceId: device!.deviceId, privateKey });
}

const triesLeft = (n: number) => (n === 1 ? "1 try left" : `${n} tries left`);
const waitWords = (seconds: number) => (seconds < 120 ? `${seconds} seconds` : `${Math.ceil(seconds / 60)} minutes`);

/**
 * Auth's refusals at sign-in as sentences a person reads (read as the worker apps read them: lib/sign-in);
 * any other refusal as every screen says it.
 */
export function signInErrorText(err: unknown): string {
  const r = signInRefusal(err);
  switch (r?.kind) {
    case "otpWrong": return `That code is wrong. ${triesLeft(r.triesLeft)}.`;
    case "otpSpent": return "That code can no longer be used (expired, used, too many tries, or a newer code was sent). Use another number, or the same one, to get a new code.";
    case "pinStepEnded": return "This sign-in has timed out (5 minutes after the code) or was already used: enter your number for a new code.";
    case "pinWrong": return `Wrong PIN. ${triesLeft(r.triesLeft)} before it is locked.`;
    case "pinLocked": return `Your PIN is locked after too many wrong tries. Try again in ${waitWords(r.waitSeconds)}, or ask another admin to unlock it.`;
    case "wait": return `Too many tries. Wait ${waitWords(r.waitSeconds)}, then try again.`;
    default: return errorText(err);
  }
}

export function SignIn({ onSignedIn }: { onSignedIn: (s: Session) => void }) {
  const [step, setStep] = useState<Step>({ kind: "phone" });
  const [value, setValue] = useState("");
  const [error, setError] = useState("");
  const [busy, setBusy] = useState(false);
  const auth = api(AuthService);

  const finish = async (tokens: { accessToken: string; refreshToken: string }, pin: string) => {
    const s = saveSession(tokens);
    await ensureDeviceKey(s, pin);
    onSignedIn(s);
  };

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError("");
    setBusy(true);
    try {
      if (step.kind === "phone") {
        const { challengeId } = await auth.startPhoneVerification({ phone: value.trim() });
        setStep({ kind: "otp", challengeId });
      } else if (step.kind === "otp") {
        const r = await auth.verifyPhoneOtp({ challengeId: step.challengeId, otp: value.trim() });
        if (r.pinRequired) setStep({ kind: "pin", pinSessionId: r.pinSessionId });
        else {
          saveSession(r.tokens!);
          setStep({ kind: "new-pin" });
        }
      } else if (step.kind === "pin") {
        const r = await auth.verifyPin({ pinSessionId: step.pinSessionId, pin: value.trim() });
        await finish(r.tokens!, value.trim());
      } else {
        await auth.setPin({ pin: value.trim() });
        // Same session, now PIN-proven.
        if (!(await refresh())) throw new Error("Your session ended: sign in again.");
        const s = JSON.parse(localStorage.getItem("ttip_admin_session")!) as Session;
        await finish(s, value.trim());
      }
      setValue("");
    } catch (err) {
      // The PIN step ended: back to the number (the PIN typed cleared), said why.
      if (signInRefusal(err)?.kind === "pinStepEnded") (setStep({ kind: "phone" }), setValue(""));
      setError(signInErrorText(err));
    } finally {
      setBusy(false);
    }
  };

  // Back to the number (a mistyped one, or a code that never came): the code asked for is left to expire.
  const startOver = () => {
    setStep({ kind: "phone" });
    setValue("");
    setError("");
  };

  const labels: Record<Step["kind"], [string, string, string]> = {
    phone: ["Phone number", "tel", "0712 345 678"],
    otp: ["Code sent by SMS", "one-time-code", "6 digits"],
    pin: ["PIN", "current-password", "4 to 6 digits"],
    "new-pin": ["Choose a PIN", "new-password", "4 to 6 digits"],
  };
  const [label, autoComplete, placeholder] = labels[step.kind];
  return (
    <main className="narrow">
      <h1>TTIP admin</h1>
      <form onSubmit={submit} aria-label="Sign in">
        <label>
          {label}
          <input
            name={step.kind}
            value={value}
            onChange={(e) => setValue(e.target.value)}
            autoComplete={autoComplete}
            placeholder={placeholder}
            type={step.kind === "pin" || step.kind === "new-pin" ? "password" : "text"}
            inputMode={step.kind === "phone" ? "tel" : "numeric"}
            required
            autoFocus
          />
        </label>
        <button disabled={busy}>{step.kind === "phone" ? "Send code" : "Continue"}</button>
      </form>
      {step.kind === "otp" || step.kind === "pin" ? <button type="button" className="link" onClick={startOver} disabled={busy}>Use another number</button> : null}
      {error && <p role="alert" className="error">{error}</p>}
    </main>
  );
}

/** For a signed-in user without a console role: the first admin's one-time setup token. */
export function ClaimFirstAdmin({ session, onClaimed, onSignOut }: { session: Session; onClaimed: (s: Session) => void; onSignOut: () => void }) {
  const [token, setToken] = useState("");
  const [error, setError] = useState("");
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError("");
    try {
      await api(AuthService).claimFirstAdmin({ setupToken: token.trim() });
      if (!(await refresh())) throw new Error("Your session ended: sign in again.");
      onClaimed(JSON.parse(localStorage.getItem("ttip_admin_session")!) as Session);
    } catch (err) {
      setError(errorText(err));
    }
  };
  return (
    <main className="narrow">
      <h1>No console role</h1>
      <p>Your account ({session.userId}) has no admin, support or finance role. An admin can grant one.</p>
      <form onSubmit={submit} aria-label="First admin">
        <label>
          Setup token (first admin only; printed once when the platform started)
          <input name="setup-token" value={token} onChange={(e) => setToken(e.target.value)} autoComplete="off" required />
        </label>
        <button>Become the first admin</button>
      </form>
      {error && <p role="alert" className="error">{error}</p>}
      <button className="link" onClick={onSignOut}>Sign out</button>
    </main>
  );
}
