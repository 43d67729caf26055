// Payments: tips and payouts across all workers with filters (amounts in the
// chosen currency's minor digits, sent with it) and paging; a
// payment's detail with its raw callbacks, alerts and ledger entry; re-query
// of a stuck M-Pesa attempt; a payout held for the amount M-Pesa reported resolved by its statement.
import { useEffect, useRef, useState, type FormEvent } from "react";
import { MpesaReversalState, PaymentMethodKind, PayoutStatus, TipStatus, type Payout, type Tip } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentAdminService, type GetPaymentDetailResponse } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { AuthAdminService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { AccountKind, OwnerKind, type Account, type JournalEntry } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { WalletAdminService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { minorExponent } from "../../web/src/lib/money";
import { api, errorText, hasRole, MONEY_ROLES, type Session } from "./api";
import { CurrencyChoice, minorOf } from "./currencies";
import { GiveBack, ResolveReversal } from "./give-back";
import { ResolveHeldPayout } from "./held-payout";
import { MoreButton, usePages, type Page } from "./paging";
import { Action, focusRefused, nairobiInput, Section, money, useDateFields, when, words, ZONE_LABEL } from "./ui";

const enumOptions = (e: Record<string, string | number>) => Object.entries(e).filter(([, v]) => typeof v === "number" && v !== 0) as Array<[string, number]>;

interface Filter {
  kind: "tips" | "payouts";
  status: number;
  method: number;
  from: string;
  to: string;
  /** ISO 4217, "" for every currency: the rows' currency and the one min and max are typed in. */
  currency: string;
  min: string;
  max: string;
  resultCode: string;
  workerId: string;
}
const FROM = `From (${ZONE_LABEL})`;
const TO = `To (${ZONE_LABEL})`;
const EMPTY: Filter = { kind: "tips", status: 0, method: 0, from: "", to: "", currency: "", min: "", max: "", resultCode: "", workerId: "" };

/** A row's worker, which filters the list by that worker (none for a tip to a venue's pool). */
function WorkerCell({ workerId, onPick }: { workerId: string; onPick: (workerId: string) => void }) {
  if (!workerId) return null;
  return (
    <button className="link" title={`Only worker ${workerId}`} aria-label={`Only worker ${workerId.slice(0, 8)}`} onClick={() => onPick(workerId)}>
      <code>{workerId.slice(0, 8)}</code>
    </button>
  );
}

/** A bound as typed, in the chosen currency's minor units (0 when empty); refused naming the field, as the API would. */
function bound(text: string, currency: string, field: string): bigint {
  if (!text.trim()) return 0n;
  if (!currency) throw new Error(`currency: choose the currency ${field} is in`);
  const minor = minorOf(text, currency);
  if (minor === undefined) throw new Error(`${field}: an amount in ${currency}, at most ${minorExponent(currency)} decimals`);
  return minor;
}

/** A payout's payment detail by link (the Fraud screen's held payouts). */
export const payoutPath = (payoutId: string) => `/admin/payments/payout/${payoutId}`;
/** A tip's payment detail by link (the Fraud screen's alerts about a tip's money, a reversal in doubt among them). */
export const tipPath = (tipId: string) => `/admin/payments/tip/${tipId}`;

/** The payout or tip a link opened (payoutPath, tipPath), if the page's path is one. */
function linkedPayment(): { case: "payoutId" | "tipId"; value: string } | undefined {
  const [, kind, id] = /^\/admin\/payments\/(payout|tip)\/([0-9a-f-]{36})$/.exec(window.location.pathname) ?? [];
  return id ? { case: kind === "tip" ? "tipId" : "payoutId", value: id } : undefined;
}

export function Payments({ session }: { session: Session }) {
  const [linked] = useState(linkedPayment);
  const [filter, setFilter] = useState<Filter>(linked?.case === "payoutId" ? { ...EMPTY, kind: "payouts" } : EMPTY);
  // The filters of the rows on screen: More continues that search, whatever the form holds now (a page
  // token is a position only, so the form's edited filters would append another search's rows).
  const [shown, setShown] = useState<Filter>(EMPTY);
  const tipPages = usePages<Tip>();
  const payoutPages = usePages<Payout>();
  const tips = tipPages.rows;
  const payouts = payoutPages.rows;
  const [error, setError] = useState("");
  const [selected, setSelected] = useState<{ case: "tipId" | "payoutId"; value: string } | undefined>(linked);
  const payment = api(PaymentAdminService);
  const dates = useDateFields([FROM, TO]);
  const form = useRef<HTMLFormElement>(null);

  /** `next`: a filter set in the same event (a worker picked from a row), not yet in state. */
  const load = async (more = false, next?: Filter) => {
    setError("");
    if (!more && !dates.check()) return;
    const asked = more ? shown : (next ?? filter);
    try {
      const common = (pageToken: string) => ({
        page: { pageSize: 25, pageToken },
        from: nairobiInput(asked.from),
        to: nairobiInput(asked.to),
        minAmountMinor: bound(asked.min, asked.currency, "min_amount"),
        maxAmountMinor: bound(asked.max, asked.currency, "max_amount"),
        currency: asked.currency,
        resultCode: asked.resultCode.trim(),
        workerId: asked.workerId.trim(),
      });
      if (asked.kind === "tips") {
        const fetchPage = async (pageToken: string): Promise<Page<Tip>> => {
          const r = await payment.searchTips({ ...common(pageToken), status: asked.status, method: asked.method });
          return { rows: r.tips, next: r.page?.nextPageToken ?? "" };
        };
        if (more) await tipPages.more();
        else if (await tipPages.first(fetchPage)) setShown(asked);
      } else {
        const fetchPage = async (pageToken: string): Promise<Page<Payout>> => {
          const r = await payment.searchPayouts({ ...common(pageToken), status: asked.status });
          return { rows: r.payouts, next: r.page?.nextPageToken ?? "" };
        };
        if (more) await payoutPages.more();
        else if (await payoutPages.first(fetchPage)) setShown(asked);
      }
    } catch (err) {
      setError(errorText(err));
      focusRefused(form.current, err);
    }
  };
  useEffect(() => void load(), [filter.kind]);
  const set = (patch: Partial<Filter>) => setFilter({ ...filter, ...patch });
  // The list shows 8 characters of a worker's id; the filter needs all 36: a row's worker fills it and searches.
  const byWorker = (workerId: string) => {
    const next = { ...filter, workerId };
    setFilter(next);
    void load(false, next);
  };

  return (
    <div className="split">
      <div>
        <form ref={form} className="inline" aria-label="Payment filters" noValidate onSubmit={(e: FormEvent) => (e.preventDefault(), void load())}>
          <select aria-label="Kind" value={filter.kind} onChange={(e) => (dates.clear(), setSelected(undefined), setFilter({ ...EMPTY, kind: e.target.value as Filter["kind"] }))}>
            <option value="tips">Tips</option>
            <option value="payouts">Payouts</option>
          </select>
          <select aria-label="Status" value={filter.status} onChange={(e) => set({ status: Number(e.target.value) })}>
            <option value={0}>any status</option>
            {enumOptions(filter.kind === "tips" ? TipStatus : PayoutStatus).map(([n, v]) => <option key={v} value={v}>{words(n)}</option>)}
          </select>
          {filter.kind === "tips" && (
            <select aria-label="Method" value={filter.method} onChange={(e) => set({ method: Number(e.target.value) })}>
              <option value={0}>any method</option>
              {enumOptions(PaymentMethodKind).map(([n, v]) => <option key={v} value={v}>{words(n)}</option>)}
            </select>
          )}
          {/* Said on the screen too: two blank date fields side by side do not say which one is which. */}
          <label>From <input {...dates.field(FROM)} data-field="from" type="datetime-local" value={filter.from} onChange={(e) => set({ from: e.target.value })} /></label>
          <label>To <input {...dates.field(TO)} data-field="to" type="datetime-local" value={filter.to} onChange={(e) => set({ to: e.target.value })} /></label>
          <CurrencyChoice label="Currency" field="currency" anyLabel="any currency" value={filter.currency} onChange={(currency) => set({ currency })} />
          <input data-field="min_amount min_amount_minor" aria-label={`Min ${filter.currency || "amount"}`} placeholder={`min ${filter.currency || "amount"}`} size={10} value={filter.min} onChange={(e) => set({ min: e.target.value })} />
          <input data-field="max_amount max_amount_minor" aria-label={`Max ${filter.currency || "amount"}`} placeholder={`max ${filter.currency || "amount"}`} size={10} value={filter.max} onChange={(e) => set({ max: e.target.value })} />
          <input data-field="result_code" aria-label="Result code" placeholder="result code" size={8} value={filter.resultCode} onChange={(e) => set({ resultCode: e.target.value })} />
          <input data-field="worker_id" aria-label="Worker id" placeholder="worker id" value={filter.workerId} onChange={(e) => set({ workerId: e.target.value })} />
          <button>Filter</button>
        </form>
        {dates.message}
        {error && <p role="alert" className="error">{error}</p>}
        {filter.kind === "tips" ? (
          <table>
            <thead><tr><th>When (EAT)</th><th>Amount</th><th>Method</th><th>Status</th><th>Code</th><th>Worker</th></tr></thead>
            <tbody>
              {tips.map((t) => (
                <tr key={t.tipId} data-tip-id={t.tipId} className={selected?.value === t.tipId ? "selected" : undefined}>
                  <td><button className="link" onClick={() => setSelected({ case: "tipId", value: t.tipId })}>{when(t.createdAt)}</button></td>
                  <td>{money(t.amount)}</td><td>{words(PaymentMethodKind[t.method])}</td><td>{words(TipStatus[t.status])}</td><td>{t.resultCode}</td><td><WorkerCell workerId={t.workerId} onPick={byWorker} /></td>
                </tr>
              ))}
            </tbody>
          </table>
        ) : (
          <table>
            <thead><tr><th>When (EAT)</th><th>Amount</th><th>Status</th><th>Code</th><th>Worker</th></tr></thead>
            <tbody>
              {payouts.map((p) => (
                <tr key={p.payoutId} data-payout-id={p.payoutId} className={selected?.value === p.payoutId ? "selected" : undefined}>
                  <td><button className="link" onClick={() => setSelected({ case: "payoutId", value: p.payoutId })}>{when(p.createdAt)}</button></td>
                  <td>{money(p.amount)}</td><td>{words(PayoutStatus[p.status])}</td><td>{p.resultCode}</td><td><WorkerCell workerId={p.workerId} onPick={byWorker} /></td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
        {!error && !(filter.kind === "tips" ? tips : payouts).length && <p className="muted">Nothing matches.</p>}
        {/* The next page of the search on screen (its kind): nothing while the other kind's first page comes. */}
        {shown.kind === filter.kind && <MoreButton pages={filter.kind === "tips" ? tipPages : payoutPages} onClick={() => void load(true)} />}
      </div>
      {selected && <PaymentDetail key={selected.value} subject={selected} session={session} />}
    </div>
  );
}

/** What a ledger account is, for people: its kind, and whose (a worker by name, else masked phone; a venue by id). */
async function accountLabel(a: Account): Promise<string> {
  const kind = words(AccountKind[a.kind]);
  if (a.ownerKind === OwnerKind.WORKER) {
    const { user } = await api(AuthAdminService).getUser({ userId: a.ownerId }).catch(() => ({ user: undefined }));
    return `${kind} · ${user?.displayName || user?.phoneMasked || a.ownerId}`;
  }
  if (a.ownerKind === OwnerKind.VENUE) return `${kind} · venue ${a.ownerId}`;
  return `${kind} (${a.currency})`;
}

/** Each posting's account by label (accountLabel); an account wallet cannot tell now is left as its id. */
async function accountLabels(entries: JournalEntry[]): Promise<Record<string, string>> {
  const ids = [...new Set(entries.flatMap((e) => e.postings.map((x) => x.accountId)))];
  const labels = await Promise.all(ids.map(async (accountId) => {
    const { account } = await api(WalletAdminService).getAccount({ accountId }).catch(() => ({ account: undefined }));
    return [accountId, account ? await accountLabel(account) : accountId] as const;
  }));
  return Object.fromEntries(labels);
}

function PaymentDetail({ subject, session }: { subject: { case: "tipId" | "payoutId"; value: string }; session: Session }) {
  const [detail, setDetail] = useState<GetPaymentDetailResponse>();
  // The credit first, then what took its money back or gave it back (reversals, refunds, chargebacks).
  const [entries, setEntries] = useState<JournalEntry[]>([]);
  const [labels, setLabels] = useState<Record<string, string>>({});
  const [error, setError] = useState("");
  const moneyRole = hasRole(session, ...MONEY_ROLES);
  const load = async () => {
    try {
      const d = await api(PaymentAdminService).getPaymentDetail({ subject });
      setDetail(d);
      // The ledger is finance's and admin's to read.
      if (d.ledgerEntryId && moneyRole) {
        const wallet = api(WalletAdminService);
        const [{ entry }, later] = await Promise.all([
          wallet.getJournalEntry({ entryId: d.ledgerEntryId }),
          d.reversalEntryKeys.length ? wallet.listJournalEntries({ idempotencyKeys: d.reversalEntryKeys }) : { entries: [] },
        ]);
        const all = [...(entry ? [entry] : []), ...later.entries];
        setEntries(all);
        setLabels(await accountLabels(all));
      }
    } catch (err) {
      setError(errorText(err));
    }
  };
  useEffect(() => void load(), [subject.value]);
  if (error) return <p role="alert" className="error">{error}</p>;
  if (!detail) return <p className="muted">Loading…</p>;
  const t = detail.tip;
  const p = detail.payout;
  const pending = t ? t.status === TipStatus.PENDING : p ? p.status === PayoutStatus.PENDING || p.status === PayoutStatus.RESOLVING : false;
  return (
    <div className="detail" aria-label="Payment detail">
      <h2>{t ? "Tip" : "Payout"} <code>{subject.value}</code></h2>
      <dl>
        <dt>Amount</dt><dd>{money(t?.amount ?? p?.amount)}</dd>
        <dt>Status</dt><dd data-testid="payment-status">{t ? words(TipStatus[t.status]) : words(PayoutStatus[p!.status])}</dd>
        <dt>Result</dt><dd>{t?.resultCode ?? p?.resultCode} {t?.resultMessage ?? p?.resultMessage}</dd>
        <dt>Receipt</dt><dd>{t?.mpesaReceipt ?? p?.mpesaReceipt}</dd>
        {p?.reportedMpesaReceipt && p.reportedMpesaReceipt !== p.mpesaReceipt && <><dt>Receipt M-Pesa reported</dt><dd data-testid="reported-receipt">{p.reportedMpesaReceipt}</dd></>}
        <dt>Worker</dt><dd><code>{t?.workerId ?? p?.workerId}</code></dd>
        <dt>Phone</dt><dd>{t?.customerPhoneMasked ?? p?.recipientPhoneMasked}</dd>
        {t && t.mpesaReversal > MpesaReversalState.NONE && <><dt>Reversal</dt><dd data-testid="mpesa-reversal">{words(MpesaReversalState[t.mpesaReversal])}</dd></>}
        {t?.refunded && <><dt>Given back</dt><dd data-testid="refunded">{money(t.refunded)}</dd></>}
        {p && <><dt>Hold</dt><dd>{detail.holdState} {detail.holdId}</dd><dt>Queries</dt><dd>{detail.statusQueries}</dd></>}
      </dl>
      {p?.status === PayoutStatus.ON_HOLD && <ResolveHeldPayout payout={p} disabledWhy={moneyRole ? undefined : "needs the finance or admin role"} done={() => void load()} />}
      {t && <GiveBack tip={t} disabledWhy={moneyRole ? undefined : "needs the finance or admin role"} done={() => void load()} />}
      {t && <ResolveReversal of={{ tipId: t.tipId }} state={t.mpesaReversal} disabledWhy={moneyRole ? undefined : "needs the finance or admin role"} done={() => void load()} />}
      {pending && <Action label="Re-query M-Pesa" disabledWhy={moneyRole ? undefined : "needs the finance or admin role"} run={async () => void (await api(PaymentAdminService).requeryPayment({ subject }))} done={() => void load()} />}
      <Section title="Ledger">
        {!detail.ledgerEntryId && <p className="muted">{t || detail.holdState !== "settled" ? "No ledger entry yet." : "Settled before payouts kept their ledger entry."}</p>}
        {detail.ledgerEntryId && !moneyRole && <p className="muted">Entry {detail.ledgerEntryId} ({detail.ledgerCreditKind}); the ledger is for finance and admins.</p>}
        {entries.map((entry, n) => (
          <table key={entry.entryId} aria-label={n ? "Later ledger entry" : "Ledger entry"} data-entry-id={entry.entryId}>
            {n > 0 && <caption>{when(entry.postedAt)} · {entry.description}</caption>}
            <thead><tr><th>Account</th><th>Amount</th><th>Memo</th></tr></thead>
            <tbody>{entry.postings.map((x, i) => <tr key={i}><td title={x.accountId} data-testid={n ? "later-ledger-account" : "ledger-account"}>{labels[x.accountId] ?? <code>{x.accountId}</code>}</td><td>{money(x.amount)}</td><td>{x.memo}</td></tr>)}</tbody>
          </table>
        ))}
      </Section>
      <Section title={`Callbacks (${detail.callbacks.length})`}>
        {detail.callbacks.map((c) => (
          <details key={c.callbackId}>
            <summary>{when(c.receivedAt)} · {c.source} · from {c.remoteAddress}</summary>
            <pre className="raw">{new TextDecoder().decode(c.rawBody)}</pre>
          </details>
        ))}
      </Section>
      {detail.alerts.length > 0 && (
        <Section title="Alerts">
          <ul>{detail.alerts.map((a) => <li key={a.alertId}>{when(a.createdAt)}: {a.detail}</li>)}</ul>
        </Section>
      )}
    </div>
  );
}
