// Fee schedules: every version with when it applies, and a new version
// scheduled from a date (admin only, with the device step-up; audited by
// wallet). Amounts are typed in KES and sent as integer minor units.
import { useEffect, useState } from "react";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { FeeSchedule } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { WalletAdminService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { api, errorText, hasRole, stepUp, type Session } from "./api";
import { nairobiInput, Section, when, ZONE_LABEL } from "./ui";

/** "1,250.50" → 125050n; undefined when it is not an amount with at most two decimals. */
export function minorOf(text: string): bigint | undefined {
  const m = /^(\d{1,12})(?:\.(\d{1,2}))?$/.exec(text.replace(/[,\s]/g, ""));
  return m ? BigInt(m[1]) * 100n + BigInt((m[2] ?? "").padEnd(2, "0")) : undefined;
}

const kes = (minor: bigint) => `${minor / 100n}${minor % 100n ? `.${String(minor % 100n).padStart(2, "0")}` : ""}`;

/** The version in force now (the newest already effective); later ones are scheduled. */
function stateOf(s: FeeSchedule, all: FeeSchedule[], now = Date.now()): string {
  const at = (x: FeeSchedule) => (x.effectiveFrom ? timestampDate(x.effectiveFrom).getTime() : 0);
  if (at(s) > now) return "scheduled";
  const inForce = all.filter((x) => x.currency === s.currency && at(x) <= now).sort((a, b) => b.version - a.version)[0];
  return inForce?.version === s.version ? "in force" : "superseded";
}

interface Draft {
  platformFeeBps: string;
  min: string;
  cap: string;
  cardFeeBps: string;
  cardFixed: string;
  effectiveFrom: string;
}

export function FeeSchedules({ session }: { session: Session }) {
  const [schedules, setSchedules] = useState<FeeSchedule[]>([]);
  const [draft, setDraft] = useState<Draft>({ platformFeeBps: "", min: "", cap: "", cardFeeBps: "", cardFixed: "", effectiveFrom: "" });
  const [error, setError] = useState("");
  const [done, setDone] = useState("");
  const wallet = api(WalletAdminService);
  const notAdmin = hasRole(session, "admin") ? undefined : "needs the admin role";
  const load = () => wallet.listFeeSchedules({ currency: "KES" }).then((r) => setSchedules(r.schedules), (err) => setError(errorText(err)));
  useEffect(() => void load(), []);
  const set = (k: keyof Draft) => (e: { target: { value: string } }) => setDraft({ ...draft, [k]: e.target.value });

  const schedule = async () => {
    setError("");
    setDone("");
    const latest = [...schedules].sort((a, b) => b.version - a.version)[0];
    const amounts = { min: minorOf(draft.min), cap: minorOf(draft.cap), cardFixed: minorOf(draft.cardFixed || "0") };
    const bad = Object.entries(amounts).find(([, v]) => v === undefined);
    if (bad) return setError(`Check the input: ${bad[0]} must be an amount in KES, at most two decimals`);
    const effectiveFrom = nairobiInput(draft.effectiveFrom);
    if (!effectiveFrom) return setError("Check the input: choose when the new version applies");
    try {
      const { schedule: made } = await wallet.createFeeSchedule(
        {
          idempotencyKey: `fees-${crypto.randomUUID()}`,
          schedule: {
            currency: "KES",
            platformFeeBps: Number.parseInt(draft.platformFeeBps || "0", 10),
            platformFeeMinMinor: amounts.min!,
            platformFeeCapMinor: amounts.cap!,
            cardFeeBps: Number.parseInt(draft.cardFeeBps || "0", 10),
            cardFeeFixedMinor: amounts.cardFixed!,
            // M-Pesa's B2C tariff is Safaricom's: a new version keeps the bands in force.
            mpesaB2cBands: latest?.mpesaB2cBands ?? [],
            effectiveFrom,
          },
        },
        await stepUp(),
      );
      setDone(`Scheduled v${made!.version} from ${when(made!.effectiveFrom)} EAT`);
      await load();
    } catch (err) {
      setError(errorText(err));
    }
  };

  return (
    <Section title="Fee schedules">
      <table aria-label="Fee schedules">
        <thead><tr><th>Version</th><th>From (EAT)</th><th>State</th><th>Platform fee</th><th>Min</th><th>Cap</th><th>Card fee</th><th>B2C bands</th></tr></thead>
        <tbody>
          {schedules.map((s) => (
            <tr key={`${s.currency}-${s.version}`} data-version={s.version}>
              <td>v{s.version}</td>
              <td>{when(s.effectiveFrom)}</td>
              <td>{stateOf(s, schedules)}</td>
              <td>{s.platformFeeBps} bps</td>
              <td>KES {kes(s.platformFeeMinMinor)}</td>
              <td>KES {kes(s.platformFeeCapMinor)}</td>
              <td>{s.cardFeeBps} bps + KES {kes(s.cardFeeFixedMinor)}</td>
              <td>{s.mpesaB2cBands.length}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <form className="inline" aria-label="New fee schedule" onSubmit={(e) => (e.preventDefault(), void schedule())}>
        <input aria-label="Platform fee (bps)" inputMode="numeric" placeholder="Platform fee (bps)" value={draft.platformFeeBps} onChange={set("platformFeeBps")} />
        <input aria-label="Minimum fee (KES)" placeholder="Min (KES)" value={draft.min} onChange={set("min")} />
        <input aria-label="Fee cap (KES)" placeholder="Cap (KES)" value={draft.cap} onChange={set("cap")} />
        <input aria-label="Card fee (bps)" inputMode="numeric" placeholder="Card fee (bps)" value={draft.cardFeeBps} onChange={set("cardFeeBps")} />
        <input aria-label="Card fixed fee (KES)" placeholder="Card fixed (KES)" value={draft.cardFixed} onChange={set("cardFixed")} />
        <label>Applies from ({ZONE_LABEL}) <input type="datetime-local" aria-label={`Applies from (${ZONE_LABEL})`} value={draft.effectiveFrom} onChange={set("effectiveFrom")} /></label>
        <button disabled={!!notAdmin}>Schedule new version</button>
        {notAdmin && <small className="muted"> {notAdmin}</small>}
      </form>
      {done && <p role="status">{done}</p>}
      {error && <p role="alert" className="error">{error}</p>}
    </Section>
  );
}
