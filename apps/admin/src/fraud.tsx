// The fraud queue: alerts with their reasons; a held tip approved (credited)
// or refused with a device step-up; payer numbers blocked and unblocked.
import { type ReactNode, useEffect, useState } from "react";
import { AlertStatus, FraudAction, FraudReason, PaymentMethodKind, TipStatus, type FraudAlert, type FraudRule, type Tip } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentAdminService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { api, errorText, hasRole, MONEY_ROLES, stepUp, type Session } from "./api";
import { payoutPath, tipPath } from "./payments";
import { MoreButton, usePages, type Page } from "./paging";
import { normaliseKenyanPhone } from "../../web/src/lib/phone";
import { Action, money, Section, when, words } from "./ui";


/** An open alert for a paybill payment parked in suspense (no tip yet): matched or refunded on the Suspense screen. */
const inSuspense = (a: FraudAlert) =>
  a.status === AlertStatus.OPEN && a.action === FraudAction.HOLD && a.reason === FraudReason.UNKNOWN_CALLBACK && !a.tipId && !a.payoutId;

/** An open alert about a refunded suspense payment's reversal (in doubt, or made after it was given up): resolved in Suspense. */
const suspenseReversal = (a: FraudAlert) =>
  a.status === AlertStatus.OPEN && a.action === FraudAction.FLAG && !a.tipId && !a.payoutId && / of paybill payment [A-Z0-9]{10}, /.test(a.detail);

/** An open alert holding a payout (M-Pesa reported another amount): resolved on the payout's payment detail. */
const heldPayout = (a: FraudAlert) => a.status === AlertStatus.OPEN && a.action === FraudAction.HOLD && !!a.payoutId;

/** An open alert flagging a tip's money (a reversal in doubt, a refund M-Pesa or a card provider answered late): looked at on the tip's detail. */
const flaggedTip = (a: FraudAlert) => a.status === AlertStatus.OPEN && a.action === FraudAction.FLAG && !!a.tipId && !a.payoutId;

export function Fraud({ session }: { session: Session }) {
  const [status, setStatus] = useState<AlertStatus>(AlertStatus.OPEN);
  const pages = usePages<FraudAlert>();
  const alerts = pages.rows;
  const [error, setError] = useState("");
  const [phone, setPhone] = useState("");
  // Refused before a reason is asked (nothing sent), naming the field as the API does.
  const payerProblem = () => (normaliseKenyanPhone(phone) ? undefined : "phone: type the payer's Kenyan mobile number, like 0712 345 678");
  const payment = api(PaymentAdminService);
  const noMoney = hasRole(session, ...MONEY_ROLES) ? undefined : "needs the finance or admin role";

  const fetchPage = async (pageToken: string): Promise<Page<FraudAlert>> => {
    const r = await payment.listFraudAlerts({ status, page: { pageSize: 25, pageToken } });
    return { rows: r.alerts, next: r.page?.nextPageToken ?? "" };
  };
  const load = async (more = false) => {
    setError("");
    try {
      await (more ? pages.more() : pages.first(fetchPage));
    } catch (err) {
      setError(errorText(err));
    }
  };
  useEffect(() => void load(), [status]);

  return (
    <div>
      <Section title="Alerts">
        <label>
          Status{" "}
          <select aria-label="Alert status" value={status} onChange={(e) => setStatus(Number(e.target.value) as AlertStatus)}>
            {[AlertStatus.OPEN, AlertStatus.APPROVED, AlertStatus.REJECTED, AlertStatus.CLOSED, AlertStatus.UNSPECIFIED].map((s) => (
              <option key={s} value={s}>{s === AlertStatus.UNSPECIFIED ? "all" : words(AlertStatus[s])}</option>
            ))}
          </select>
        </label>
        {error && <p role="alert" className="error">{error}</p>}
        <table>
          {/* Review first: on a phone the actions are where the row starts, not past the long Detail column. */}
          <thead><tr><th>Review</th><th>When</th><th>Reason</th><th>Action</th><th>Status</th><th>Tip / payout</th><th>Worker</th><th>Detail</th></tr></thead>
          <tbody>
            {alerts.map((a) => (
              <tr key={a.alertId} data-tip-id={a.tipId}>
                <td>
                  {a.tipId && a.status === AlertStatus.OPEN && a.action === FraudAction.HOLD && (
                    <HeldTip tipId={a.tipId} actions={(unseen) => (
                      <>
                        <Action label="Approve" reason="Note" disabledWhy={noMoney ?? unseen} run={async (note) => void (await payment.reviewTip({ tipId: a.tipId, approve: true, note }, await stepUp()))} done={() => void load()} />
                        <Action label="Refuse" reason="Note" danger disabledWhy={noMoney} run={async (note) => void (await payment.reviewTip({ tipId: a.tipId, approve: false, note }, await stepUp()))} done={() => void load()} />
                      </>
                    )} />
                  )}
                  {/* A paybill payment parked in suspense is decided there (its alert closes then): say where. */}
                  {(inSuspense(a) || suspenseReversal(a)) && <a href="/admin/suspense">Resolve in Suspense</a>}
                  {heldPayout(a) && <a href={payoutPath(a.payoutId)}>Resolve in Payments</a>}
                  {flaggedTip(a) && <a href={tipPath(a.tipId)}>Open this tip</a>}
                  {/* A flag or a refusal holds nothing: once looked at, it is closed with a note (a hold closes with its decision). */}
                  {a.status === AlertStatus.OPEN && a.action !== FraudAction.HOLD && (
                    <Action label="Close" reason="Note" run={async (note) => void (await payment.closeFraudAlert({ alertId: a.alertId, note }))} done={() => void load()} />
                  )}
                </td>
                <td>{when(a.createdAt)}</td>
                <td>{words(FraudReason[a.reason])}</td>
                <td>{words(FraudAction[a.action])}</td>
                <td data-testid="alert-status">{words(AlertStatus[a.status])}</td>
                <td><code>{a.tipId || a.payoutId}</code></td>
                <td><code>{a.workerId}</code></td>
                <td>{a.detail}</td>
              </tr>
            ))}
          </tbody>
        </table>
        {!alerts.length && !error && <p className="muted">No alerts.</p>}
        <MoreButton pages={pages} onClick={() => void load(true)} />
      </Section>

      <Section title="Payer numbers">
        <input data-field="phone" aria-label="Payer phone number" placeholder="0712 345 678" value={phone} onChange={(e) => setPhone(e.target.value)} />
        <Action label="Block number" reason="Reason" danger disabledWhy={noMoney} precheck={payerProblem} run={async (reason) => void (await payment.blockPhoneNumber({ phone: phone.replace(/\s/g, ""), reason }))} />
        <Action label="Unblock number" precheck={payerProblem} confirm={`Tips paid from ${phone.trim() || "this number"} will be accepted again.`} disabledWhy={noMoney} run={async () => void (await payment.unblockPhoneNumber({ phone: phone.replace(/\s/g, "") }))} />
      </Section>

      <RulesInForce />
    </div>
  );
}

/**
 * What approving a held tip releases: its amount in its own currency and its method, read from the
 * tip itself (an alert carries no amount), so no one approves money they have not seen: `actions` are told why
 * approving waits while the amount is not shown (loading, or its read failed).
 */
function HeldTip({ tipId, actions }: { tipId: string; actions: (unseen?: string) => ReactNode }) {
  const [tip, setTip] = useState<Tip>();
  const [error, setError] = useState("");
  useEffect(() => {
    api(PaymentAdminService).getPaymentDetail({ subject: { case: "tipId", value: tipId } }).then((d) => setTip(d.tip), (err) => setError(errorText(err)));
  }, [tipId]);
  // M-Pesa took another amount than asked (why it was held): approving books what it took, so that is what shows.
  const taken = tip?.received ? <> taken by M-Pesa ({money(tip.charged)} asked)</> : null;
  const shown = error ? <p role="alert" className="error">Amount not shown: {error}</p>
    : !tip ? <p className="muted">Loading the tip…</p>
    : <p data-testid="held-amount"><strong>{money(tip.received ?? tip.amount)}</strong>{taken} {words(PaymentMethodKind[tip.method])}, {words(TipStatus[tip.status])}</p>;
  return <>{shown}{actions(tip ? undefined : "the amount is not shown yet")}</>;
}

/** The rules and thresholds payment applies now, as it reports them (GetFraudRules). */
function RulesInForce() {
  const [rules, setRules] = useState<FraudRule[]>([]);
  const [error, setError] = useState("");
  useEffect(() => {
    api(PaymentAdminService).getFraudRules({}).then((r) => setRules(r.rules), (err) => setError(errorText(err)));
  }, []);
  return (
    <Section title="Rules in force">
      {error && <p role="alert" className="error">{error}</p>}
      <table aria-label="Rules in force">
        <thead><tr><th>Rule</th><th>Does</th><th>Fires on</th><th>Threshold</th><th>Setting</th></tr></thead>
        <tbody>
          {rules.map((r) => (
            <tr key={r.reason} data-rule={FraudReason[r.reason]} className={r.enabled ? "" : "muted"}>
              <td>{words(FraudReason[r.reason])}</td>
              <td>{r.enabled ? words(FraudAction[r.action]) : "off"}</td>
              <td>{r.description}</td>
              <td data-testid="threshold">{threshold(r)}</td>
              <td><code>{r.setting}</code></td>
            </tr>
          ))}
        </tbody>
      </table>
    </Section>
  );
}

function threshold(r: FraudRule): string {
  const window = r.windowSeconds ? ` per ${Number(r.windowSeconds) >= 3600 ? `${Number(r.windowSeconds) / 3600} h` : `${Number(r.windowSeconds) / 60} min`}` : "";
  if (r.limit) return `${r.limit}${window}`;
  if (r.amount) return `${money(r.amount)}${window}`;
  return "";
}
