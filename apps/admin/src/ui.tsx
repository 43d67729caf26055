// Small shared pieces: an action button that reports its own outcome, a reason prompt, time, money and enum text.
// Every time the console shows or reads is Nairobi's wall clock (EAT, UTC+3 all year), whatever zone the
// admin's laptop is set to: fees, filters and records are Kenyan, and a laptop left on UTC would move them by 3 h.
import { useId, useRef, useState, type ReactNode, type SyntheticEvent } from "react";
import { Code, ConnectError } from "@connectrpc/connect";
import { timestampDate, timestampFromDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { formatMoney, type Amount } from "../../web/src/lib/money";
import { fromNairobiWallTime, nairobiDateTime } from "../../web/src/lib/nairobi-time";
import { messageField } from "../../web/src/lib/errors";
import { useWrite, type Send } from "../../web/src/lib/use-write";
import { errorText } from "./api";

/** What a time input's label says its time is. */
export const ZONE_LABEL = "Nairobi time, EAT";

/** A moment as Nairobi's wall clock, "YYYY-MM-DD HH:MM:SS". */
export function when(t: Timestamp | undefined): string {
  return t ? nairobiDateTime(timestampDate(t)) : "";
}

/** A datetime-local input's value ("YYYY-MM-DDTHH:MM", Nairobi time) as a Timestamp; undefined when empty or malformed. */
export function nairobiInput(value: string): Timestamp | undefined {
  const at = fromNairobiWallTime(value);
  return at ? timestampFromDate(at) : undefined;
}

/** The start of a Nairobi day typed in a date input ("YYYY-MM-DD"), `plusDays` later; undefined when malformed. */
export function nairobiDayInput(day: string, plusDays = 0): Timestamp | undefined {
  const at = fromNairobiWallTime(`${day}T00:00`);
  // Nairobi keeps no daylight saving: every day there is 24 h long.
  return at ? timestampFromDate(new Date(at.getTime() + plusDays * 86_400_000)) : undefined;
}

/**
 * The date inputs of a search form, checked before each search. Chromium gives a half-typed date
 * (29/11/----) the value "", as an empty field has, and only its validity says otherwise: without
 * this check the search ran as if that date were not set, and answered a question nobody asked.
 * `check()` marks each such field (aria-invalid) and names it in one message; callers search only
 * when it says yes. Labels are the fields' accessible names, in the form's order.
 */
export function useDateFields<L extends string>(labels: readonly L[]) {
  const inputs = useRef(new Map<L, HTMLInputElement>());
  const [invalid, setInvalid] = useState<L[]>([]);
  const messageId = useId();
  const isBad = (el: HTMLInputElement | undefined) => !!el && !el.validity.valid;
  const check = (): boolean => {
    const bad = labels.filter((l) => isBad(inputs.current.get(l)));
    setInvalid(bad);
    return bad.length === 0;
  };
  // Leaving or finishing a field says at once whether it is still wrong.
  const recheck = (label: L) => (e: SyntheticEvent<HTMLInputElement>) => {
    const bad = isBad(e.currentTarget);
    setInvalid((now) => labels.filter((l) => (l === label ? bad : now.includes(l))));
  };
  const field = (label: L) => ({
    "aria-label": label,
    title: label,
    ref: (el: HTMLInputElement | null) => void (el ? inputs.current.set(label, el) : inputs.current.delete(label)),
    "aria-invalid": invalid.includes(label) || undefined,
    "aria-describedby": invalid.includes(label) ? messageId : undefined,
    onBlur: recheck(label),
    onInput: recheck(label),
  });
  /** Empties the fields, half-typed parts too (a controlled value already "" is not written again). */
  const clear = () => {
    for (const el of inputs.current.values()) el.value = "";
    setInvalid([]);
  };
  const message = invalid.length ? (
    <p role="alert" className="error" id={messageId}>
      {invalid.join(", ")}: the date is incomplete or not a real date. Finish it or clear it: nothing was searched.
    </p>
  ) : null;
  return { field, check, clear, message };
}

/**
 * The field a refusal names: the API's INVALID_ARGUMENT ("worker_id: must be a valid UUID") or the
 * console's own check ("min_amount: an amount in KES"), without list indexes; undefined otherwise.
 */
export function refusedField(err: unknown): string | undefined {
  const text = err instanceof ConnectError ? (err.code === Code.InvalidArgument ? err.rawMessage : "") : err instanceof Error ? err.message : "";
  return messageField(text)?.replace(/\[\d+\]/g, "");
}

/**
 * After a refusal, the focus goes to the input to correct: the one of `root` whose data-field lists
 * the field named (inputs list the API's names, e.g. data-field="min_amount min_amount_minor").
 * The button that sent it kept the focus before, and the admin had to find the field again.
 */
export function focusRefused(root: ParentNode | null | undefined, err: unknown): void {
  const field = refusedField(err);
  const input = field ? root?.querySelector<HTMLElement>(`[data-field~="${CSS.escape(field)}"]`) : null;
  input?.focus();
}

/** An enum value's name as words: "PAYOUT_SENT" reads "payout sent". */
export function words(name: string | undefined): string {
  return (name ?? "").toLowerCase().replace(/_/g, " ");
}

/** An amount in its own currency's minor digits, always written ("KES 20,000.00", "UGX 5,000"): the shared formatter. */
export function money(m: Amount | undefined): string {
  return m ? formatMoney(m.amountMinor, m.currency, true) : "";
}

/**
 * A button that runs `run`, then shows what happened (the API's words on
 * failure). With `reason`, it first asks for one (the audit log keeps it);
 * with `confirm` (an action that moves money or cuts someone off), it first
 * says what will happen and runs only on "Confirm …".
 * `disabledWhy` disables it and says why (e.g. a role the user lacks).
 * `precheck` says what is wrong with the row's own input (naming the field, which it
 * focuses) before anything is asked or sent: no reason typed, no device step-up, for nothing.
 * `intent`: the other fields the write sends, as the service compares them (a set sorted, an amount as parsed);
 * the reason counts too, unless `keyIgnoresReason` (a refund: the service compares its amount, not its words).
 * An edit after a lost answer is a new write under a new key; before, it went under the old key and was refused
 * as another request under it. The same request again keeps its key: the service answers it once.
 */
export function Action(props: { label: string; run: (reason: string, send: Send) => Promise<string | void>; reason?: string; confirm?: string; disabledWhy?: string; danger?: boolean; done?: () => void; precheck?: () => string | undefined; intent?: string; keyIgnoresReason?: boolean }) {
  const [asking, setAsking] = useState(false);
  const [reason, setReason] = useState("");
  const [outcome, setOutcome] = useState<{ ok: boolean; text: string }>();
  const here = useRef<HTMLSpanElement>(null);
  const write = useWrite();
  const busy = write.busy;
  const refused = (): boolean => {
    const problem = props.precheck?.();
    if (problem) (setOutcome({ ok: false, text: problem }), setAsking(false), focusRefused(here.current?.closest("tr, form, section, .detail"), new Error(problem)));
    return !!problem;
  };
  const go = () => !refused() && write.run(async (send) => {
    setOutcome(undefined);
    const text = await props.run(reason.trim(), send);
    setOutcome({ ok: true, text: text || "Done." });
    setAsking(false);
    setReason("");
    props.done?.();
  }, (err) => {
    setOutcome({ ok: false, text: errorText(err) });
    // The field to correct is in the action's row, form, section or detail pane.
    focusRefused(here.current?.closest("tr, form, section, .detail"), err);
  }, JSON.stringify([props.keyIgnoresReason ? "" : reason.trim(), props.intent ?? ""]));
  return (
    <span className="action" ref={here}>
      {asking ? (
        <form onSubmit={(e) => (e.preventDefault(), void go())} className="inline">
          {props.confirm && <span role="note">{props.confirm}</span>}
          {props.reason && <input data-field="reason note" aria-label={`${props.reason} (${props.label})`} placeholder={props.reason} value={reason} onChange={(e) => setReason(e.target.value)} autoFocus />}
          <button disabled={busy} className={props.danger ? "danger" : undefined}>Confirm {props.label.toLowerCase()}</button>
          <button type="button" className="link" onClick={() => setAsking(false)}>Cancel</button>
        </form>
      ) : (
        <button
          disabled={busy || !!props.disabledWhy}
          title={props.disabledWhy}
          className={props.danger ? "danger" : undefined}
          onClick={() => (refused() ? undefined : props.reason || props.confirm ? (setOutcome(undefined), setAsking(true)) : void go())}
        >
          {props.label}
        </button>
      )}
      {props.disabledWhy && <small className="muted"> {props.disabledWhy}</small>}
      {outcome && <> <span role={outcome.ok ? "status" : "alert"} className={outcome.ok ? "ok" : "error"}>{outcome.text}</span></>}
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
