// Fee schedules, one per currency (M-Pesa's KES, cards' USD, EUR, GBP): every
// version with when it applies, and a new version scheduled from a date (admin
// only, with the device step-up; audited by wallet). Amounts are typed in the
// chosen currency and sent as integer minor units.
import { useEffect, useRef, useState } from "react";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { FeeSchedule } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { WalletAdminService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { CARD_FEE_BPS_MAX, feeAmountMaxMinor } from "@ttip/runtime/fee-limits";
import { minorExponent } from "../../web/src/lib/money";
import { focusInput } from "../../web/src/lib/focus";
import { useWrite } from "../../web/src/lib/use-write";
import { api, errorText, hasRole, stepUp, type Session } from "./api";
import { FIRST_CURRENCY, minorOf } from "./currencies";
import { money, nairobiInput, Section, when, ZONE_LABEL } from "./ui";

/** The version in force now (the newest already effective); later ones are scheduled. */
function stateOf(s: FeeSchedule, all: FeeSchedule[], now = Date.now()): string {
  const at = (x: FeeSchedule) => (x.effectiveFrom ? timestampDate(x.effectiveFrom).getTime() : 0);
  if (at(s) > now) return "scheduled";
  const inForce = all.filter((x) => x.currency === s.currency && at(x) <= now).sort((a, b) => b.version - a.version)[0];
  return inForce?.version === s.version ? "in force" : "superseded";
}

/** A version checked and shown, waiting for the admin's Confirm. */
type PendingSchedule = Omit<FeeSchedule, "$typeName" | "version" | "effectiveFrom"> & { effectiveFrom: NonNullable<FeeSchedule["effectiveFrom"]> };

interface Draft {
  platformFeeBps: string;
  min: string;
  cap: string;
  cardFeeBps: string;
  cardFixed: string;
  effectiveFrom: string;
}

/**
 * Whole basis points from 0 to 10,000 (empty is 0), or undefined. Not parseInt, which read "2.5"
 * (meant as 2.5%) as 2 bps and "25abc" as 25, and scheduled that.
 */
function basisPointsOf(text: string, max: number): number | undefined {
  const t = text.trim() || "0";
  if (!/^[0-9]{1,5}$/.test(t)) return undefined;
  const bps = Number(t);
  return bps <= max ? bps : undefined;
}

export function FeeSchedules({ session }: { session: Session }) {
  const [all, setAll] = useState<FeeSchedule[]>([]);
  const [currency, setCurrency] = useState(FIRST_CURRENCY);
  const [draft, setDraft] = useState<Draft>({ platformFeeBps: "", min: "", cap: "", cardFeeBps: "", cardFixed: "", effectiveFrom: "" });
  const [error, setError] = useState("");
  const [done, setDone] = useState("");
  const wallet = api(WalletAdminService);
  const notAdmin = hasRole(session, "admin") ? undefined : "needs the admin role";
  // Every currency's versions: the list of currencies is the schedules'.
  const load = () => wallet.listFeeSchedules({ currency: "" }).then((r) => setAll(r.schedules), (err) => setError(errorText(err)));
  useEffect(() => void load(), []);
  const currencies = [...new Set([FIRST_CURRENCY, ...all.map((s) => s.currency)])];
  const schedules = all.filter((s) => s.currency === currency);
  // An edit drops a confirmation asked for the draft before it.
  const set = (k: keyof Draft) => (e: { target: { value: string } }) => (setPending(undefined), setDraft({ ...draft, [k]: e.target.value }));

  // Checked and shown before it is sent: the versions apply to every tip from their date, and cannot be taken back.
  const [pending, setPending] = useState<PendingSchedule>();
  const form = useRef<HTMLFormElement>(null);
  // Refused before the confirmation and the step-up, naming the field, with the focus on it.
  const refuse = (field: keyof Draft, text: string) => (setError(`Check the input: ${text}`), focusInput(form.current, field));
  const ask = () => {
    setError("");
    setDone("");
    const amounts = { min: minorOf(draft.min, currency), cap: minorOf(draft.cap, currency), cardFixed: minorOf(draft.cardFixed || "0", currency) };
    const named = { min: `minimum fee (${currency})`, cap: `fee cap (${currency})`, cardFixed: `card fixed fee (${currency})` };
    const bad = (Object.keys(amounts) as Array<keyof typeof amounts>).find((k) => amounts[k] === undefined);
    if (bad) return refuse(bad, `${named[bad]} must be an amount in ${currency} like 1,250.50, at most ${minorExponent(currency)} decimals`);
    // Wallet refuses it too, but only after the confirmation and the device's step-up.
    const amountMax = feeAmountMaxMinor(currency);
    const over = (Object.keys(amounts) as Array<keyof typeof amounts>).find((k) => amountMax !== undefined && amounts[k]! > amountMax);
    if (over) return refuse(over, `${named[over]} must be at most ${money({ amountMinor: amountMax!, currency })}, the largest tip`);
    if (amounts.cap! < amounts.min!) return refuse("cap", `cap must be at least the minimum fee (${currency} ${draft.min.trim()})`);
    const bpsMax = { platformFeeBps: 10_000, cardFeeBps: CARD_FEE_BPS_MAX };
    const bps = { platformFeeBps: basisPointsOf(draft.platformFeeBps, bpsMax.platformFeeBps), cardFeeBps: basisPointsOf(draft.cardFeeBps, bpsMax.cardFeeBps) };
    const bpsNamed = { platformFeeBps: "platform fee (bps)", cardFeeBps: "card fee (bps)" };
    const badBps = (Object.keys(bps) as Array<keyof typeof bps>).find((k) => bps[k] === undefined);
    if (badBps) return refuse(badBps, `${bpsNamed[badBps]} must be whole basis points from 0 to ${bpsMax[badBps]} (250 is 2.5%)`);
    const effectiveFrom = nairobiInput(draft.effectiveFrom);
    if (!effectiveFrom) return refuse("effectiveFrom", "choose when the new version applies");
    const latest = [...schedules].sort((a, b) => b.version - a.version)[0];
    setPending({
      currency,
      platformFeeBps: bps.platformFeeBps!,
      platformFeeMinMinor: amounts.min!,
      platformFeeCapMinor: amounts.cap!,
      cardFeeBps: bps.cardFeeBps!,
      cardFeeFixedMinor: amounts.cardFixed!,
      // M-Pesa's B2C tariff is Safaricom's: a new version keeps the bands in force.
      mpesaB2cBands: latest?.mpesaB2cBands ?? [],
      effectiveFrom,
    });
  };
  // One key per version meant: a double click or a retry after a lost answer schedules it once; an edited draft is another version.
  const write = useWrite();
  const schedule = (schedule: PendingSchedule) => write.run(async (send) => {
    const proof = await stepUp();
    const { schedule: made } = await send((key) => wallet.createFeeSchedule({ idempotencyKey: `fees-${key}`, schedule }, proof));
    setPending(undefined);
    setDone(`Scheduled v${made!.version} from ${when(made!.effectiveFrom)} EAT`);
    await load();
  }, (err) => setError(errorText(err)), JSON.stringify([currency, draft]));

  return (
    <Section title="Fee schedules">
      <label>
        Currency{" "}
        <select aria-label="Fee schedule currency" value={currency} onChange={(e) => (setCurrency(e.target.value), setPending(undefined), setError(""), setDone(""))}>
          {currencies.map((c) => <option key={c}>{c}</option>)}
        </select>
      </label>
      <table aria-label="Fee schedules">
        <thead><tr><th>Version</th><th>From (EAT)</th><th>State</th><th>Platform fee</th><th>Min</th><th>Cap</th><th>Card fee</th><th>B2C bands</th></tr></thead>
        <tbody>
          {schedules.map((s) => (
            <tr key={`${s.currency}-${s.version}`} data-version={s.version}>
              <td>v{s.version}</td>
              <td>{when(s.effectiveFrom)}</td>
              <td>{stateOf(s, schedules)}</td>
              <td>{s.platformFeeBps} bps</td>
              <td>{money({ amountMinor: s.platformFeeMinMinor, currency: s.currency })}</td>
              <td>{money({ amountMinor: s.platformFeeCapMinor, currency: s.currency })}</td>
              <td>{s.cardFeeBps} bps + {money({ amountMinor: s.cardFeeFixedMinor, currency: s.currency })}</td>
              <td>{s.mpesaB2cBands.length}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <form ref={form} className="inline" aria-label="New fee schedule" noValidate onSubmit={(e) => (e.preventDefault(), ask())}>
        {/* Labels on the screen, not placeholders: once five figures are typed, a placeholder no longer says which is the cap. */}
        <label>Platform fee (bps) <input aria-label="Platform fee (bps)" inputMode="numeric" size={6} value={draft.platformFeeBps} name="platformFeeBps" onChange={set("platformFeeBps")} /></label>
        <label>Minimum fee ({currency}) <input aria-label={`Minimum fee (${currency})`} size={8} value={draft.min} name="min" onChange={set("min")} /></label>
        <label>Fee cap ({currency}) <input aria-label={`Fee cap (${currency})`} size={8} value={draft.cap} name="cap" onChange={set("cap")} /></label>
        <label>Card fee (bps) <input aria-label="Card fee (bps)" inputMode="numeric" size={6} value={draft.cardFeeBps} name="cardFeeBps" onChange={set("cardFeeBps")} /></label>
        <label>Card fixed fee ({currency}) <input aria-label={`Card fixed fee (${currency})`} size={8} value={draft.cardFixed} name="cardFixed" onChange={set("cardFixed")} /></label>
        <label>Applies from ({ZONE_LABEL}) <input type="datetime-local" aria-label={`Applies from (${ZONE_LABEL})`} value={draft.effectiveFrom} name="effectiveFrom" onChange={set("effectiveFrom")} /></label>
        <button disabled={!!notAdmin || write.busy}>Schedule new version</button>
        {notAdmin && <small className="muted"> {notAdmin}</small>}
      </form>
      {pending && (
        <div className="confirm" aria-label="Confirm fee schedule">
          <p role="note">
            A new {pending.currency} version applies to every tip from {when(pending.effectiveFrom)} EAT and cannot be withdrawn:
            platform fee {pending.platformFeeBps} bps (min {money({ amountMinor: pending.platformFeeMinMinor, currency: pending.currency })},
            cap {money({ amountMinor: pending.platformFeeCapMinor, currency: pending.currency })}), card fee {pending.cardFeeBps} bps
            + {money({ amountMinor: pending.cardFeeFixedMinor, currency: pending.currency })}.
          </p>
          <button disabled={write.busy} onClick={() => void schedule(pending)}>Confirm schedule</button>
          <button type="button" className="link" onClick={() => setPending(undefined)}>Cancel</button>
        </div>
      )}
      {done && <p role="status">{done}</p>}
      {error && <p role="alert" className="error">{error}</p>}
    </Section>
  );
}
