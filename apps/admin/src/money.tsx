// Money: platform revenue (fees) by day or month from analytics, the ledger's
// trial balance, and the M-Pesa short code's balance (Daraja Account Balance)
// reconciled against the ledger; the fee schedules (fees.tsx).
import { useEffect, useState } from "react";
import { Code, ConnectError } from "@connectrpc/connect";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Granularity, type RevenuePoint } from "@ttip/proto/ttip/analytics/v1/analytics_pb.js";
import { AnalyticsAdminService } from "@ttip/proto/ttip/analytics/v1/analytics_service_pb.js";
import { PaymentAdminService, type GetMpesaBalanceResponse } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import type { GetTrialBalanceResponse } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { WalletAdminService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { api, errorText, type Session } from "./api";
import { chartRange, monthsRange, periodLabel } from "./chart-range";
import { PlatformCharts } from "./charts";
import { CurrencyChoice, FIRST_CURRENCY } from "./currencies";
import { FeeSchedules } from "./fees";
import { Action, money, Section, when } from "./ui";

export function Money({ session }: { session: Session }) {
  return (
    <>
      <MpesaBalance />
      <Revenue />
      <PlatformCharts />
      <TrialBalance />
      <FeeSchedules session={session} />
    </>
  );
}

function MpesaBalance() {
  const [check, setCheck] = useState<GetMpesaBalanceResponse>();
  const [loadError, setLoadError] = useState("");
  const payment = api(PaymentAdminService);
  // The last check, if any: a failed read says so (an empty section would read as "never checked").
  const loadLast = () => payment.getMpesaBalance({}).then(
    (r) => (setLoadError(""), setCheck(r)),
    // NOT_FOUND: no check was ever asked for, which is not a failure.
    (err) => setLoadError(ConnectError.from(err).code === Code.NotFound ? "" : errorText(err)),
  );
  useEffect(() => void loadLast(), []);
  const run = async () => {
    const { checkId } = await payment.checkMpesaBalance({});
    // M-Pesa answers by callback, usually within seconds.
    for (let i = 0; i < 60; i++) {
      const r = await payment.getMpesaBalance({ checkId });
      setCheck(r);
      // Refused (credentials, the initiator's rights): a failure, not "done" in green.
      if (r.answeredAt && r.resultCode !== "0") throw new Error(`M-Pesa answered ${r.resultCode}: ${r.resultDesc}`);
      if (r.answeredAt) return "M-Pesa answered.";
      await new Promise((ok) => setTimeout(ok, 500));
    }
    return "Asked; M-Pesa has not answered yet. Come back later.";
  };
  return (
    <Section title="M-Pesa balance">
      <Action label="Check M-Pesa balance" run={run} />
      {loadError && <p role="alert" className="error">Could not read the last M-Pesa balance: {loadError} <button className="link" onClick={() => void loadLast()}>Retry</button></p>}
      {check && (
        <div aria-label="M-Pesa balance">
          <p className="muted">Asked {when(check.requestedAt)}{check.answeredAt ? `, answered ${when(check.answeredAt)} (${check.resultCode} ${check.resultDesc})` : ", waiting for M-Pesa"}</p>
          <table>
            <thead><tr><th>Account</th><th>Current</th><th>Available</th><th>Reserved</th><th>Uncleared</th></tr></thead>
            <tbody>
              {check.accounts.map((a) => (
                <tr key={a.name}><td>{a.name}</td><td>{money(a.current)}</td><td>{money(a.available)}</td><td>{money(a.reserved)}</td><td>{money(a.uncleared)}</td></tr>
              ))}
            </tbody>
          </table>
          <dl>
            <dt>M-Pesa reports</dt><dd data-testid="mpesa-reported">{money(check.reported)}</dd>
            <dt>Ledger</dt><dd>{money(check.ledgerNet)} <small className="muted">(M-Pesa receipts less B2C sent)</small></dd>
            <dt>Difference</dt><dd data-testid="mpesa-difference" className={check.difference && check.difference.amountMinor !== 0n ? "error" : "ok"}>{money(check.difference)}</dd>
          </dl>
        </div>
      )}
    </Section>
  );
}

function Revenue() {
  const [granularity, setGranularity] = useState<Granularity>(Granularity.DAY);
  const [currency, setCurrency] = useState(FIRST_CURRENCY);
  const [series, setSeries] = useState<RevenuePoint[]>([]);
  const [error, setError] = useState("");
  useEffect(() => {
    // Whole Nairobi days and months, as analytics buckets them, whatever the browser's zone.
    const { from, to } = granularity === Granularity.MONTH ? monthsRange() : chartRange();
    // A slower answer to the choice before does not overwrite this one's.
    let current = true;
    setError("");
    setSeries([]);
    api(AnalyticsAdminService)
      .getRevenueMetrics({ range: { from: timestampFromDate(from), to: timestampFromDate(to) }, granularity, currency })
      .then((r) => current && setSeries(r.series), (err) => current && setError(errorText(err)));
    return () => void (current = false);
  }, [granularity, currency]);
  return (
    <Section title="Revenue (platform fees)">
      <select aria-label="Revenue by" value={granularity} onChange={(e) => setGranularity(Number(e.target.value))}>
        <option value={Granularity.DAY}>by day (30 days)</option>
        <option value={Granularity.MONTH}>by month (12 months)</option>
      </select>
      <CurrencyChoice label="Revenue currency" value={currency} onChange={setCurrency} />
      {error && <p role="alert" className="error">{error}</p>}
      <table aria-label="Revenue">
        <thead><tr><th>Period</th><th>Tips</th><th>Tip volume</th><th>Fees</th><th>Payouts</th></tr></thead>
        <tbody>
          {series.map((p) => (
            <tr key={when(p.periodStart)}><td>{p.periodStart ? periodLabel(timestampDate(p.periodStart), granularity === Granularity.MONTH) : ""}</td><td>{String(p.tips)}</td><td>{money(p.tipVolume)}</td><td>{money(p.platformFees)}</td><td>{money(p.payouts)}</td></tr>
          ))}
        </tbody>
      </table>
      {!series.length && !error && <p className="muted">No {currency} revenue in this period.</p>}
    </Section>
  );
}

function TrialBalance() {
  const [trial, setTrial] = useState<GetTrialBalanceResponse>();
  const [error, setError] = useState("");
  useEffect(() => {
    api(WalletAdminService).getTrialBalance({}).then(setTrial, (err) => setError(errorText(err)));
  }, []);
  return (
    <Section title="Trial balance">
      {error && <p role="alert" className="error">{error}</p>}
      {trial && (
        <>
          <p data-testid="balanced" className={trial.balanced ? "ok" : "error"}>{trial.balanced ? "Balanced: every currency nets to zero." : "NOT BALANCED"}</p>
          <table>
            <thead><tr><th>Currency</th><th>Debits</th><th>Credits</th><th>Net</th><th>Accounts</th></tr></thead>
            <tbody>
              {trial.lines.map((l) => (
                <tr key={l.currency}>
                  <td>{l.currency}</td>
                  <td>{money({ currency: l.currency, amountMinor: l.totalDebitsMinor })}</td>
                  <td>{money({ currency: l.currency, amountMinor: l.totalCreditsMinor })}</td>
                  <td>{money({ currency: l.currency, amountMinor: l.netMinor })}</td>
                  <td>{String(l.accountCount)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </Section>
  );
}
