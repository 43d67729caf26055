// Withdraw to M-Pesa. Each payout the worker confirms passes the phone's biometric prompt,
// then the device's step-up (lib/device-step-up), whose token goes with the payout. One
// idempotency key per withdrawal: a retried tap or a lost answer never sends the money twice.
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { useMutation, useQuery } from "@connectrpc/connect-query";
import { PayoutStatus, type Payout } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { LimitKind } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { plainError } from "../lib/errors";
import { formatAmount, formatMoney, parseWholeUnits, PAYOUT_MIN_UNITS, WALLET_CURRENCY } from "@ttip/web-lib/money";
import { payoutFinal, payoutOutcomeKey } from "@ttip/web-lib/payout-outcome";
import { nairobiDateTime } from "@ttip/web-lib/nairobi-time";
import { normaliseKenyanPhone } from "@ttip/web-lib/phone";
import { unansweredLikeIt, withdrawalOver } from "@ttip/web-lib/withdrawal-check";
import { settlesWrite, WriteKey } from "@ttip/web-lib/write-key";
import { useEffect, useRef, useState } from "react";
import { Text, View } from "react-native";
import { type AppServices, useApp } from "../app-context";
import type { StepUpStage } from "@ttip/web-lib/step-up-flow";
import { useDeviceStepUp } from "../lib/device-step-up";
import { usePinPrompt } from "./pin-prompt";
import { localPhone, payoutStatus } from "../lib/format";
import { useI18n, type MessageKey } from "../lib/i18n";
import { Button, ErrorText, Field, Notice, Screen, Title, styles } from "../ui";

/** What the amount field reads at most (seven digits); the limits that apply are wallet's. */
const MAX_TYPED_UNITS = 9_999_999;
const LIMITS: Partial<Record<LimitKind, MessageKey>> = {
  [LimitKind.PER_TRANSACTION]: "limitPerWithdrawal",
  [LimitKind.DAILY]: "limitToday",
  [LimitKind.MONTHLY]: "limitMonth",
  [LimitKind.MPESA_PER_TRANSACTION]: "limitMpesaPerTransaction",
  [LimitKind.MPESA_DAILY]: "limitMpesaDaily",
};

/**
 * Per signed-in worker, the keys of the withdrawals asked for, each kept until the service answers for it, past this
 * screen (Cancel, another tab unmounts it) and past the app's restart (saved on the phone): the same withdrawal asked
 * for again after a lost answer is the same payout, never a second one. Another amount or number is another
 * withdrawal, with a new key. Read from the phone once per app start (its services) and worker.
 */
const payoutKeys = new WeakMap<AppServices, Map<string, Promise<WriteKey>>>();
const payoutKeysSlot = (userId: string) => `${userId}:payout-keys`;

function payoutKeysOf(app: AppServices, userId: string): Promise<WriteKey> {
  let ofApp = payoutKeys.get(app);
  if (!ofApp) payoutKeys.set(app, (ofApp = new Map()));
  let keys = ofApp.get(userId);
  if (!keys) {
    const loading = (keys = loadPayoutKeys(app, userId));
    ofApp.set(userId, loading);
    // A read that failed is not kept: kept as no keys, its empty list was saved over the keys the phone holds.
    loading.catch(() => ofApp.get(userId) === loading && ofApp.delete(userId));
  }
  return keys;
}

/**
 * The worker's kept keys; rejects when the phone's storage cannot be read (nothing may be sent then). Keys an earlier
 * version kept beside the offline copies are read from there until the first save moves them.
 */
async function loadPayoutKeys(app: AppServices, userId: string): Promise<WriteKey> {
  const slot = payoutKeysSlot(userId);
  // Unreadable, the old copy is no copy either: nothing is sent (its keys would be lost at the first save).
  const saved = (await app.writeKeys.get(slot)) ?? (await app.cache.get(slot));
  // [intent, key], and a time after them in copies saved before the keys were kept until answered.
  let writes: [string, string][] = [];
  try {
    const parsed: unknown = saved ? JSON.parse(saved) : [];
    if (Array.isArray(parsed)) {
      writes = parsed.filter((w): w is [string, string] => Array.isArray(w) && typeof w[0] === "string" && typeof w[1] === "string")
        .map(([intent, key]) => [intent, key]);
    }
  } catch {
    // An unreadable copy is no copy: this app start's keys still hold.
  }
  return new WriteKey(undefined, app.newKey, writes);
}

/** Saved after every change: false when the phone could not save them. */
async function savePayoutKeys(app: AppServices, userId: string, keys: WriteKey): Promise<boolean> {
  const slot = payoutKeysSlot(userId);
  const saved = await app.writeKeys.set(slot, JSON.stringify(keys.unansweredWrites())).then(() => true, () => false);
  if (saved) await app.cache.delete(slot).catch(() => undefined);
  return saved;
}

/**
 * Per worker, the withdrawal last sent in this app run: its answer, or its request still on its way. The Withdraw tab
 * shows it again when the worker comes back (tabs unmount their screens): before, an answer that came while the worker
 * was on another tab was shown nowhere (the app lists no payouts), its key settled, and the same amount asked for
 * again was a second payout.
 */
const lastSends = new WeakMap<AppServices, Map<string, Promise<LastSend>>>();
/** How the last send ended: the payout asked for, or the error no screen showed (the worker was on another tab). */
interface LastSend {
  requested?: Payout;
  /** The payout is an earlier send's, answered again (RequestPayoutResponse.replayed). */
  earlier?: boolean;
  error?: string;
}
const lastSendsOf = (app: AppServices) => {
  let ofApp = lastSends.get(app);
  if (!ofApp) lastSends.set(app, (ofApp = new Map()));
  return ofApp;
};

type Stage = { kind: "form" } | { kind: "confirm"; amount: bigint; mpesaPhone: string } | { kind: "working"; note: string } | { kind: "sent"; requested: Payout; earlier?: boolean };

export function Withdraw() {
  const app = useApp();
  const { sessions, biometric } = app;
  const { t, locale } = useI18n();
  const balance = useQuery(WalletService.method.getBalance, { currency: "KES" });
  const limits = useQuery(WalletService.method.getWithdrawalLimits, { currency: "KES" });
  const { askPin, pinPrompt } = usePinPrompt();
  const stepUp = useDeviceStepUp(askPin);
  const payout = useMutation(PaymentService.method.requestPayout);
  const [amountText, setAmountText] = useState("");
  const [phoneText, setPhoneText] = useState("");
  const [stage, setStage] = useState<Stage>({ kind: "form" });
  const [error, setError] = useState("");
  // One confirmation at a time: a tap while the fingerprint prompt is open starts no second prompt.
  const sending = useRef(false);
  /** The request asked about beside an unanswered send alike (unansweredLikeIt), with that send's key. */
  const askedAboutLike = useRef("");
  const [confirming, setConfirming] = useState(false);
  const available = balance.data?.balances[0]?.available?.amountMinor ?? 0n;
  // The last withdrawal sent, shown again on coming back to the tab (lastSends); an error once.
  const mounted = useRef(true);
  useEffect(() => {
    mounted.current = true;
    const userId = sessions.get()?.userId;
    const last = userId ? lastSendsOf(app).get(userId) : undefined;
    if (!last) return () => void (mounted.current = false);
    setStage((s) => (s.kind === "form" ? { kind: "working", note: t("sending") } : s));
    void last.then(({ requested, earlier, error }) => {
      if (!mounted.current) return;
      if (error && lastSendsOf(app).get(userId!) === last) lastSendsOf(app).delete(userId!);
      setStage((s) => (s.kind !== "working" ? s : requested ? { kind: "sent", requested, earlier } : { kind: "form" }));
      if (error) setError(error);
    });
    return () => void (mounted.current = false);
  }, [app, sessions, t]);
  const payoutId = stage.kind === "sent" ? stage.requested.payoutId : "";
  const status = useQuery(PaymentService.method.getPayout, { payoutId }, {
    enabled: payoutId !== "",
    refetchInterval: (q) => (payoutFinal(q.state.data?.payout) ? false : 1000),
  });

  const review = async () => {
    setError("");
    const amount = parseWholeUnits(amountText, MAX_TYPED_UNITS);
    if (!amount) return setError(t("amountInvalid"));
    // M-Pesa's least payout: refused here, before the biometric prompt, as payment would refuse it after it.
    const least = BigInt(PAYOUT_MIN_UNITS) * 100n;
    if (amount < least) return setError(t("underPayoutMinimum", { least: formatMoney(least, WALLET_CURRENCY) }));
    // The limit per withdrawal is wallet's, named with its amount; refused here as wallet would.
    const perWithdrawal = limits.data?.limits.find((l) => l.kind === LimitKind.PER_TRANSACTION)?.limit?.amountMinor;
    if (perWithdrawal !== undefined && amount > perWithdrawal) return setError(t("overPerWithdrawal", { limit: formatMoney(perWithdrawal, WALLET_CURRENCY) }));
    const typed = phoneText.trim();
    const mpesaPhone = typed ? normaliseKenyanPhone(typed) : "";
    if (mpesaPhone === undefined) return setError(t("mpesaInvalid"));
    // Over the balance or what is left of a limit (today's, this month's, M-Pesa's): refused here, before the
    // biometric prompt and the key's signature, as the gateway and wallet would refuse it after them. Not a payout
    // asked again after a lost answer: the balance read since may be less by that very payout, which asked again is
    // answered (payment replays it).
    const session = sessions.get();
    if (!session) return setError(t("sessionEnded"));
    const keys = await payoutKeysOf(app, session.userId).catch(() => undefined);
    if (!keys) return setError(t("payoutKeysUnsaved"));
    const intent = `${amount}|${mpesaPhone}`;
    const like = unansweredLikeIt(keys, amount, mpesaPhone);
    // Once for this request beside that send (a later send alike, also unanswered, is asked about again); asked again
    // as it is, it is a withdrawal of its own. Before, a retry with the payout number typed was a second payout.
    if (like && askedAboutLike.current !== `${like.key} ${intent}`) {
      askedAboutLike.current = `${like.key} ${intent}`;
      return setError(t("payoutMaybeSent", { amount: formatMoney(amount, WALLET_CURRENCY), how: t(like.intent.endsWith("|") ? "numberLeftEmpty" : "numberTyped") }));
    }
    const again = keys.sentUnanswered(intent);
    const over = again ? undefined : withdrawalOver(amount, balance.data ? available : undefined, limits.data?.limits ?? []);
    if (over) {
      const words = { left: formatMoney(over.leftMinor, WALLET_CURRENCY), least: formatMoney(least, WALLET_CURRENCY) };
      if (over.kind === "balance") return setError(over.belowPayoutMinimum ? t("availableUnderMinimum", words) : t("overAvailable", { available: words.left }));
      return setError(t(over.belowPayoutMinimum ? "limitUnderMinimum" : "overLimitLeft", { ...words, limit: t(LIMITS[over.limit.kind] ?? "limitOther") }));
    }
    setStage({ kind: "confirm", amount, mpesaPhone });
  };

  const send = async (attempt: Extract<Stage, { kind: "confirm" }>) => {
    if (sending.current) return;
    sending.current = true;
    setConfirming(true);
    try {
      await sendOnce(attempt);
    } finally {
      sending.current = false;
      setConfirming(false);
    }
  };

  const sendOnce = async (attempt: Extract<Stage, { kind: "confirm" }>) => {
    const { amount, mpesaPhone } = attempt;
    setError("");
    const session = sessions.get();
    if (!session) return setError(t("sessionEnded"));
    // Known from its start to its end, so the tab shows it again if the worker leaves and comes back meanwhile (even
    // during the prompt or the step-up): an answer shown nowhere, its key settled, the same amount again was a second payout.
    let outcome: LastSend = {};
    let told = (_: LastSend) => {};
    lastSendsOf(app).set(session.userId, new Promise<LastSend>((resolve) => (told = resolve)));
    try {
      if (!(await biometric.confirm(t("biometricPrompt", { amount: formatMoney(amount, WALLET_CURRENCY) })))) {
        outcome = { error: t("biometricFailed") };
        return setError(t("biometricFailed"));
      }
      const working = (stage: StepUpStage) => setStage({ kind: "working", note: t(stage === "key" ? "settingUpKey" : "signingKey") });
      const stepUpToken = await stepUp(session.userId, "payout", working);
      setStage({ kind: "working", note: t("sending") });
      const keys = await payoutKeysOf(app, session.userId).catch(() => undefined);
      const intent = `${amount}|${mpesaPhone}`;
      const kept = keys?.sentUnanswered(intent);
      // Taken at each send, not kept by the screen: after a refusal settled it, the next Confirm is a new
      // write whose key must be kept (a screen's key, forgotten, went unsaved; lost again, its retry was a new payout).
      const idempotencyKey = keys?.use(intent);
      // Not sent under a key the phone does not hold: its answer lost and the app started again, the same withdrawal
      // asked for again had a new key, and was a second payout. A new key not sent is forgotten again (kept, it
      // read as a withdrawal sent and unanswered).
      if (!keys || !idempotencyKey || !(await savePayoutKeys(app, session.userId, keys))) {
        if (keys && idempotencyKey && !kept) keys.settle(idempotencyKey);
        outcome = { error: t("payoutKeysUnsaved") };
        setStage(attempt);
        return setError(outcome.error!);
      }
      const settle = () => (keys.settle(idempotencyKey), savePayoutKeys(app, session.userId, keys));
      const res = await payout.mutateAsync({ idempotencyKey, amount: { amountMinor: amount, currency: "KES" }, mpesaPhone, stepUpToken }).catch(async (err: unknown) => {
        if (settlesWrite(err)) await settle();
        throw err;
      });
      await settle();
      // Payment's word, not a clock's: the payout an earlier send made, whose answer was lost, said as such (when it
      // was asked for; nothing new sent). A kept key whose first send made nothing makes a new payout now.
      const earlier = res.replayed;
      outcome = { requested: res.payout, earlier };
      setStage({ kind: "sent", requested: res.payout!, earlier });
      // The payout holds its amount from now on: the balance and limits shown follow at once, not when it ends.
      void Promise.all([balance.refetch(), limits.refetch()]);
    } catch (err) {
      outcome = { error: plainError(err, locale) };
      setStage(attempt);
      setError(outcome.error!);
      // A send whose answer was lost may have made the payout, which holds its amount: the balance shown follows,
      // not the one from before it (read as "nothing moved", it led to a second withdrawal).
      void Promise.all([balance.refetch(), limits.refetch()]);
    } finally {
      // An error this screen showed is not shown again.
      told(outcome.error && mounted.current ? {} : outcome);
    }
  };

  // The payout as RequestPayout answered it until GetPayout does: never "KES 0".
  const p = status.data?.payout ?? (stage.kind === "sent" ? stage.requested : undefined);
  const final = payoutFinal(p);
  const outcome = p && payoutOutcomeKey(p.status, p.resultCode);
  const { refetch: refetchBalance } = balance;
  const { refetch: refetchLimits } = limits;
  useEffect(() => {
    // A settled or released payout changes the balance and what is left of the limits (React hooks stay in each app: the phone has its own React).
    if (final) void Promise.all([refetchBalance(), refetchLimits()]);
  }, [final, refetchBalance, refetchLimits]);
  return (
    <Screen testID="withdraw">
      <Title>{t("withdrawTitle")}</Title>
      {/* Not known is not KES 0: "…" while loading, the reason when it failed. */}
      <Text style={styles.text}>{t("available")}: <Text testID="withdraw-available" style={{ fontWeight: "700" }}>{balance.data ? formatMoney(available, WALLET_CURRENCY) : balance.error ? "—" : "…"}</Text></Text>
      {balance.error || limits.error ? <ErrorText>{plainError(balance.error ?? limits.error, locale)}</ErrorText> : null}
      {limits.data?.limits.map((l) => (
        <View key={l.kind} style={styles.row}>
          <Text style={styles.muted}>{t(LIMITS[l.kind] ?? "limitOther")}</Text>
          <Text style={styles.muted}>{t("limitLeft", { left: formatAmount(l.remaining, WALLET_CURRENCY), limit: formatAmount(l.limit, WALLET_CURRENCY) })}</Text>
        </View>
      ))}
      {stage.kind === "sent" ? (
        <Notice testID="payout">
          <Text role="status" aria-live="polite" style={styles.text}>
            {t("payoutStatus", { amount: formatAmount(p?.amount, WALLET_CURRENCY), status: p ? payoutStatus(p.status, locale) : payoutStatus(PayoutStatus.PENDING, locale) })}
          </Text>
          {p?.transferFee ? <Text style={styles.muted}>{t("mpesaFee", { fee: formatAmount(p.transferFee, WALLET_CURRENCY) })}</Text> : null}
          {outcome ? <Text testID="payout-outcome" style={styles.text}>{t(outcome)}</Text> : null}
          {p?.mpesaReceipt ? <Text testID="receipt" style={styles.text}>{t("receipt", { receipt: p.mpesaReceipt })}</Text> : null}
          {stage.earlier && p?.createdAt ? <Text testID="payout-earlier" style={styles.text}>{t("payoutEarlier", { when: nairobiDateTime(timestampDate(p.createdAt)).slice(0, 16) })}</Text> : null}
          {status.error && !final ? <ErrorText>{plainError(status.error, locale)}</ErrorText> : null}
          <Button kind="secondary" title={t("another")} onPress={() => (lastSendsOf(app).delete(sessions.get()?.userId ?? ""), setStage({ kind: "form" }), setAmountText(""))} />
        </Notice>
      ) : stage.kind === "confirm" ? (
        <Notice testID="confirm">
          <Text style={styles.text}>{t("confirmWithdraw", { amount: formatMoney(stage.amount, WALLET_CURRENCY), to: stage.mpesaPhone ? localPhone(stage.mpesaPhone) : t("toPayoutNumber") })}</Text>
          <ErrorText>{error}</ErrorText>
          <Button testID="withdraw-confirm" title={t("confirm")} onPress={() => void send(stage)} disabled={confirming} />
          {/* Not while this one is being confirmed (the fingerprint, the PIN prompt): the send it started goes on. */}
          <Button kind="secondary" title={t("cancel")} onPress={() => (setStage({ kind: "form" }), setError(""))} disabled={confirming} />
        </Notice>
      ) : (
        <>
          <Field id="amount" label={t("amountLabel")} value={amountText} onChangeText={setAmountText} keyboardType="number-pad" inputMode="numeric" />
          <Field id="mpesa" label={t("mpesaLabel")} value={phoneText} onChangeText={setPhoneText} keyboardType="phone-pad" inputMode="tel" />
          {stage.kind === "working" ? <Text role="status" style={styles.text}>{stage.note}</Text> : null}
          <ErrorText>{error}</ErrorText>
          <Button testID="withdraw-submit" title={t("withdraw")} onPress={review} disabled={stage.kind === "working"} />
        </>
      )}
      {pinPrompt}
    </Screen>
  );
}
