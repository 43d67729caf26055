// Small shared pieces: an action button that reports its own outcome, a reason prompt, time, money and enum text.
import { useState, type ReactNode } from "react";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { errorText } from "./api";

export function when(t: Timestamp | undefined): string {
  return t ? timestampDate(t).toISOString().replace("T", " ").slice(0, 19) : "";
}

/** An enum value's name as words: "PAYOUT_SENT" reads "payout sent". */
export function words(name: string | undefined): string {
  return (name ?? "").toLowerCase().replace(/_/g, " ");
}

export function money(m: { currency: string; amountMinor: bigint } | undefined): string {
  if (!m) return "";
  const sign = m.amountMinor < 0n ? "-" : "";
  const abs = m.amountMinor < 0n ? -m.amountMinor : m.amountMinor;
  return `${m.currency} ${sign}${(abs / 100n).toLocaleString("en-KE")}.${String(abs % 100n).padStart(2, "0")}`;
}

/**
 * A button that runs `run`, then shows what happened (the API's words on
 * failure). With `reason`, it first asks for one (the audit log keeps it).
 * `disabledWhy` disables it and says why (e.g. a role the user lacks).
 */
export function Action(props: { label: string; run: (reason: string) => Promise<string | void>; reason?: string; disabledWhy?: string; danger?: boolean; done?: () => void }) {
  const [asking, setAsking] = useState(false);
  const [reason, setReason] = useState("");
  const [outcome, setOutcome] = useState<{ ok: boolean; text: string }>();
  const [busy, setBusy] = useState(false);
  const go = async () => {
    setBusy(true);
    setOutcome(undefined);
    try {
      const text = await props.run(reason.trim());
      setOutcome({ ok: true, text: text || "Done." });
      setAsking(false);
      setReason("");
      props.done?.();
    } catch (err) {
      setOutcome({ ok: false, text: errorText(err) });
    } finally {
      setBusy(false);
    }
  };
  return (
    <span className="action">
      {asking ? (
        <form onSubmit={(e) => (e.preventDefault(), void go())} className="inline">
          <input aria-label={`${props.reason} (${props.label})`} placeholder={props.reason} value={reason} onChange={(e) => setReason(e.target.value)} autoFocus />
          <button disabled={busy} className={props.danger ? "danger" : undefined}>Confirm {props.label.toLowerCase()}</button>
          <button type="button" className="link" onClick={() => setAsking(false)}>Cancel</button>
        </form>
      ) : (
        <button
          disabled={busy || !!props.disabledWhy}
          title={props.disabledWhy}
          className={props.danger ? "danger" : undefined}
          onClick={() => (props.reason ? setAsking(true) : void go())}
        >
          {props.label}
        </button>
      )}
      {props.disabledWhy && <small className="muted"> {props.disabledWhy}</small>}
      {outcome && <span role={outcome.ok ? "status" : "alert"} className={outcome.ok ? "ok" : "error"}> {outcome.text}</span>}
    </span>
  );
}

export function Section({ title, children }: { title: string; children: ReactNode }) {
  return (
    <section>
      <h2>{title}</h2>
      {children}
    </section>
  );
}
