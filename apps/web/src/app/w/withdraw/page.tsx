"use client";
import { createClient } from "@connectrpc/connect";
import { useMutation, useQuery, useTransport } from "@connectrpc/connect-query";
import { useEffect, useRef, useState } from "react";
import { PayoutStatus, type Payout } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { LimitKind, type WithdrawalLimit } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { useDeviceStepUp } from "../../../lib/device-step-up";
import { usePinPrompt } from "../pin-prompt";
import { focusProblem, refusedField } from "../../../lib/focus";
import { checkWithdrawal } from "../../../lib/forms";
import { formIntent } from "../../../lib/form-intent";
import { formatAmount, formatMoney, MPESA_MAX_UNITS, parseWholeUnits, PAYOUT_MIN_UNITS, unitsText, WALLET_CURRENCY } from "../../../lib/money";
import { payoutFinal, payoutOutcomeKey } from "../../../lib/payout-outcome";
import { loadSession } from "../../../lib/session";
import type { WorkerKey } from "../../../lib/worker-i18n";
import { WorkerNav } from "../nav";
import { useWrite } from "../../../lib/use-write";
import { WriteKey } from "../../../lib/write-key";
import { unansweredLikeIt, withdrawalOver } from "../../../lib/withdrawal-check";
import { useT } from "../use-t";
import { limitWord, payoutWord } from "../words";

/**
 * The payout as payment's WatchPayout streams it, each change as it happens;
 * GetPayout every 2 s only while the stream is down (it reconnects after 3 s).
 */
function useLivePayout(payoutId: string): Payout | undefined {
  const transport = useTransport();
  // Kept with the payout it is about: a withdrawal made after another was shown the first one's final status, its
  // polling off, until its own stream answered.
  const [kept, setLive] = useState<{ payoutId: string; payout?: Payout; down: boolean }>({ payoutId, down: false });
  const live = kept.payoutId === payoutId ? kept : { payoutId, down: false };
  const final = payoutFinal(live.payout);
  const polled = useQuery(PaymentService.method.getPayout, { payoutId }, {
    enabled: payoutId !== "" && live.down && !final,
    refetchInterval: (q) => (payoutFinal(q.state.data?.payout) ? false : 2000),
  });
  useEffect(() => {
    if (!payoutId) return;
    const stop = new AbortController();
    const client = createClient(PaymentService, transport);
    (async () => {
      while (!stop.signal.aborted) {
        try {
          for await (const { payout } of client.watchPayout({ payoutId }, { signal: stop.signal })) {
            setLive({ payoutId, payout, down: false });
            if (payoutFinal(payout)) return;
          }
        } catch {
          // Dropped or refused (an expired token is refreshed by the next unary call): poll meanwhile, retry.
        }
        if (stop.signal.aborted) return;
        setLive((s) => (s.payoutId === payoutId ? { ...s, down: true } : { payoutId, down: true }));
        await new Promise((r) => setTimeout(r, 3_000));
      }
    })();
    return () => stop.abort();
  }, [payoutId, transport]);
  return live.down && !final ? (polled.data?.payout ?? live.payout) : live.payout;
}

/** The inputs a check's problem or a refusal's field is about. */
const INPUTS = { err_amount: "amount", amount: "amount", "amount.amount_minor": "amount", err_mpesa: "phone", mpesa_phone: "phone" };

/** The most one withdrawal may be, in whole shillings: the smaller of the wallet's and M-Pesa's per-withdrawal limits (M-Pesa's until the wallet's are known). */
function perWithdrawalUnits(limits: readonly WithdrawalLimit[] | undefined): number {
  const per = (limits ?? []).filter((l) => l.kind === LimitKind.PER_TRANSACTION || l.kind === LimitKind.MPESA_PER_TRANSACTION);
  return per.reduce((max, l) => Math.min(max, Number((l.limit?.amountMinor ?? 0n) / 100n) || max), MPESA_MAX_UNITS);
}

/**
 * What a withdrawal's screen must not forget when the worker leaves it during the send (another tab, then back):
 * the keys of payouts asked and unanswered, and how the last send ended. Held by the screen, they went with it: the
 * payout sent meanwhile was shown nowhere, and the same amount asked again from the fresh form went under a new
 * key, a second payout. Per worker, for this tab's life; the keys also in sessionStorage, for a reload.
 */
interface LastSend {
  payout?: Payout;
  error?: string;
}
const lastSends = new Map<string, Promise<LastSend>>();
const payoutKeys = new Map<string, WriteKey>();
const savedKeysName = (userId: string) => `ttip_payout_keys_${userId}`;

function payoutKeysOf(userId: string): WriteKey {
  let keys = payoutKeys.get(userId);
  if (!keys) {
    let saved: [string, string][] = [];
    try {
      saved = JSON.parse(sessionStorage.getItem(savedKeysName(userId)) ?? "[]") as [string, string][];
    } catch {
      // Unreadable: no unanswered payouts to remember.
    }
    payoutKeys.set(userId, (keys = new WriteKey(undefined, undefined, saved)));
  }
  return keys;
}

function savePayoutKeys(userId: string, keys: WriteKey): void {
  try {
    sessionStorage.setItem(savedKeysName(userId), JSON.stringify(keys.unansweredWrites()));
  } catch {
    // Storage refused (private mode's quota): kept for this tab's screens only.
  }
}

/**
 * Withdraw to M-Pesa. M-Pesa's fee is quoted as the amount is typed. The
 * step-up is this browser's device key: made once (WebCrypto, not
 * extractable, kept in IndexedDB) and registered with auth with the PIN,
 * asked for then; each payout signs a fresh challenge. The payout's status then
 * arrives live.
 */
export default function Withdraw() {
  const { t, err } = useT();
  const balance = useQuery(WalletService.method.getBalance, { currency: "KES" });
  const limits = useQuery(WalletService.method.getWithdrawalLimits, { currency: "KES" });
  const { askPin, pinPrompt } = usePinPrompt();
  const stepUp = useDeviceStepUp(askPin);
  const payout = useMutation(PaymentService.method.requestPayout);
  const [error, setError] = useState("");
  const [step, setStep] = useState("");
  const [typed, setTyped] = useState("");
  // The payout as RequestPayout answered it: shown until its stream's first message (before, "KES 0 to :").
  const [sent, setSent] = useState<Payout>();
  const payoutId = sent?.payoutId ?? "";
  const typedMinor = parseWholeUnits(typed);
  const fee = useQuery(WalletService.method.quoteWithdrawalFee, { amount: { amountMinor: typedMinor ?? 0n, currency: "KES" } }, { enabled: !!typedMinor });
  const p = useLivePayout(payoutId) ?? sent;
  const final = payoutFinal(p);
  // Not only once M-Pesa has answered: a payout on hold or being resolved may stay so for days, and the form with it.
  const mayAskAnother = final || p?.status === PayoutStatus.ON_HOLD || p?.status === PayoutStatus.RESOLVING;
  const outcome = p && payoutOutcomeKey(p.status, p.resultCode);
  const { refetch: refetchBalance } = balance;
  const { refetch: refetchLimits } = limits;
  useEffect(() => {
    // A settled or released payout changes the balance and what is left of the limits (React hooks stay in each app: the phone has its own React).
    if (final) void Promise.all([refetchBalance(), refetchLimits()]);
  }, [final, refetchBalance, refetchLimits]);

  // Guarded from the tap itself: a double tap would otherwise register two device keys and ask two challenges.
  // The payout's key is the guard's: kept after a lost answer, so a retry pays out once.
  const [userId] = useState(() => loadSession()?.userId ?? "");
  const write = useWrite(userId ? payoutKeysOf(userId) : undefined);
  // The last send, shown again on coming back to the screen: the payout it asked for, or its error once.
  const [resuming, setResuming] = useState(false);
  useEffect(() => {
    const last = lastSends.get(userId);
    if (!last) return;
    let mounted = true;
    setResuming(true);
    setStep(t("stepSend"));
    void last.then(({ payout: answered, error: failed }) => {
      if (!mounted) return;
      if (failed && lastSends.get(userId) === last) lastSends.delete(userId);
      setResuming(false);
      setStep("");
      if (answered) setSent(answered);
      if (failed) setError(failed);
    });
    return () => void (mounted = false);
  }, [userId, t]);
  const busy = write.busy || resuming;
  const formRef = useRef<HTMLFormElement>(null);
  const askedAboutLike = useRef("");
  const maxUnits = perWithdrawalUnits(limits.data?.limits);
  const available = balance.data?.balances[0]?.available?.amountMinor ?? 0n;
  const onSubmit = write.onSubmit(async (form, send) => {
    setError("");
    const checked = checkWithdrawal(String(form.get("amount") ?? ""), String(form.get("phone") ?? ""), maxUnits);
    if (!checked.ok) {
      setError(t(checked.problem as WorkerKey, { max: unitsText(BigInt(maxUnits) * 100n, WALLET_CURRENCY) }));
      return focusProblem(formRef.current, INPUTS, checked.problem);
    }
    // Over the balance or what is left of a limit: refused here, before the device key signs, as wallet would refuse it.
    // Not a payout asked again after a lost answer: the balance read since may be less by that very payout, which
    // asked again is answered (payment replays it).
    const intent = `${checked.value.amountMinor}|${checked.value.mpesaPhone}`;
    const like = unansweredLikeIt(payoutKeysOf(userId), checked.value.amountMinor, checked.value.mpesaPhone);
    // Once for this request beside that send (its key: a later send alike, also unanswered, is asked about again).
    if (like && askedAboutLike.current !== `${like.key} ${intent}`) {
      // Asked again as it is, it is a withdrawal of its own.
      askedAboutLike.current = `${like.key} ${intent}`;
      setError(t("err_payout_maybe_sent", { amount: formatMoney(checked.value.amountMinor, WALLET_CURRENCY), how: t(like.intent.endsWith("|") ? "numberLeftEmpty" : "numberTyped") }));
      return focusProblem(formRef.current, INPUTS, "mpesa_phone");
    }
    const again = payoutKeysOf(userId).sentUnanswered(intent);
    const over = again ? undefined : withdrawalOver(checked.value.amountMinor, balance.data ? available : undefined, limits.data?.limits ?? []);
    if (over) {
      const words = { left: formatMoney(over.leftMinor, WALLET_CURRENCY), least: formatMoney(BigInt(PAYOUT_MIN_UNITS) * 100n, WALLET_CURRENCY) };
      if (over.kind === "balance") setError(t(over.belowPayoutMinimum ? "err_available_under_min" : "err_over_available", words));
      else setError(t(over.belowPayoutMinimum ? "err_limit_under_min" : "err_over_limit", { ...words, limit: limitWord(t, over.limit.kind) }));
      return focusProblem(formRef.current, INPUTS, "amount");
    }
    const session = loadSession();
    if (!session || session.userId !== userId) return setError(t("err_session"));
    let told = (_: LastSend) => {};
    lastSends.set(userId, new Promise<LastSend>((resolve) => (told = resolve)));
    try {
      const stepUpToken = await stepUp(userId, "payout", (stage) => setStep(t(stage === "key" ? "stepKey" : "stepConfirm")));
      setStep(t("stepSend"));
      const keys = payoutKeysOf(userId);
      const res = await send((key) => {
        savePayoutKeys(userId, keys); // before it leaves: a reload during the send asks again under this key
        return payout.mutateAsync({ idempotencyKey: key, amount: { amountMinor: checked.value.amountMinor, currency: "KES" }, mpesaPhone: checked.value.mpesaPhone, stepUpToken });
      }).finally(() => savePayoutKeys(userId, keys));
      told({ payout: res.payout });
      setSent(res.payout);
      setStep("");
    } catch (x) {
      told({ error: err(x) });
      throw x;
    }
  }, (x) => {
    setStep("");
    setError(err(x));
    focusProblem(formRef.current, INPUTS, refusedField(x));
    // A send whose answer was lost may have made the payout, which holds its amount: the balance shown follows.
    void Promise.all([refetchBalance(), refetchLimits()]);
  }, (form) => {
    // The payout's key follows what it sends, as the phone's does: "1,000" retyped "1000" after a lost answer is that payout.
    const checked = checkWithdrawal(String(form.get("amount") ?? ""), String(form.get("phone") ?? ""), maxUnits);
    return checked.ok ? `${checked.value.amountMinor}|${checked.value.mpesaPhone}` : formIntent(form);
  });

  return (
    <>
      <WorkerNav />
      <h1>{t("withdrawTitle")}</h1>
      {/* Not KES 0 while it is read, or when it could not be: that reads as money gone. */}
      <p>{t("available")}: <strong data-testid="withdraw-available">{balance.data ? formatMoney(available, WALLET_CURRENCY) : balance.error ? t("balanceUnread") : "…"}</strong></p>
      {limits.data ? (
        <div className="table-box"><table aria-label={t("limitsLabel")}>
          <tbody>
            {limits.data.limits.map((l) => (
              <tr key={l.kind}><th>{limitWord(t, l.kind)}</th><td>{t("leftOf", { left: formatAmount(l.remaining, WALLET_CURRENCY), limit: formatAmount(l.limit, WALLET_CURRENCY) })}</td></tr>
            ))}
          </tbody>
        </table></div>
      ) : null}
      {payoutId ? (
        <section role="status" aria-live="polite" className="notice">
          <p>{t("withdrawal", { amount: formatAmount(p?.amount, WALLET_CURRENCY), phone: p?.recipientPhoneMasked ?? "" })} <strong data-testid="payout-status">{p ? payoutWord(t, p.status) : t("ps_other")}</strong></p>
          {p?.transferFee ? <p className="muted">{t("mpesaFee", { fee: formatAmount(p.transferFee, WALLET_CURRENCY) })}</p> : null}
          {outcome ? <p data-testid="payout-outcome">{t(outcome)}</p> : null}
          {p?.mpesaReceipt ? <p>{t("mpesaReceipt")} {p.mpesaReceipt}</p> : null}
          {/* The form again (a failed one to try with another number or amount). */}
          {/* Read again: a payout on hold or being resolved still holds its amount, which the balance read before it counted. */}
          {mayAskAnother ? <button type="button" className="secondary" onClick={() => (lastSends.delete(userId), setSent(undefined), setTyped(""), setError(""), void Promise.all([refetchBalance(), refetchLimits()]))}>{t("withdrawAgain")}</button> : null}
        </section>
      ) : (
        <form ref={formRef} onSubmit={onSubmit} noValidate>
          <label className="field" htmlFor="amount">{t("amountLabel")}</label>
          <input id="amount" name="amount" type="text" inputMode="numeric" autoComplete="off" value={typed} onChange={(e) => setTyped(e.target.value)} />
          {typedMinor && fee.data?.fee ? (
            <p className="muted" data-testid="withdraw-fee" aria-live="polite">{t("feeQuote", { amount: formatMoney(typedMinor, WALLET_CURRENCY), fee: formatAmount(fee.data.fee, WALLET_CURRENCY) })}</p>
          ) : null}
          <label className="field" htmlFor="phone">{t("mpesaNumber")}</label>
          <input id="phone" name="phone" type="tel" inputMode="tel" autoComplete="tel" />
          {step ? <p role="status">{step}</p> : null}
          {error ? <p className="error" role="alert">{error}</p> : null}
          <button type="submit" disabled={busy}>{t("withdraw")}</button>
        </form>
      )}
      {pinPrompt}
    </>
  );
}
