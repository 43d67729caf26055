"use client";
import { useMutation, useQuery } from "@connectrpc/connect-query";
import { useState, type FormEvent } from "react";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { PayoutStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { LimitKind } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { loadDeviceKey, newDeviceKey, saveDeviceKey, signChallenge } from "../../../lib/device-key";
import { plainError } from "../../../lib/errors";
import { formatMoney, parseWholeUnits } from "../../../lib/money";
import { normaliseKenyanPhone } from "../../../lib/phone";
import { loadSession } from "../../../lib/session";
import { WorkerNav } from "../nav";

const LIMITS: Partial<Record<LimitKind, string>> = {
  [LimitKind.PER_TRANSACTION]: "Per withdrawal",
  [LimitKind.DAILY]: "Today",
  [LimitKind.MONTHLY]: "This month",
  [LimitKind.MPESA_PER_TRANSACTION]: "M-Pesa per transaction",
};
const FINAL = new Set([PayoutStatus.SUCCEEDED, PayoutStatus.FAILED]);

/**
 * Withdraw to M-Pesa. The step-up is this browser's device key: made once
 * (WebCrypto, not extractable, kept in IndexedDB) and registered with auth
 * after the PIN sign-in; each payout signs a fresh challenge.
 */
export default function Withdraw() {
  const balance = useQuery(WalletService.method.getBalance, { currency: "KES" });
  const limits = useQuery(WalletService.method.getWithdrawalLimits, { currency: "KES" });
  const register = useMutation(AuthService.method.registerDevice);
  const challenge = useMutation(AuthService.method.createDeviceChallenge);
  const verify = useMutation(AuthService.method.verifyDeviceChallenge);
  const payout = useMutation(PaymentService.method.requestPayout);
  const [key] = useState(() => crypto.randomUUID());
  const [error, setError] = useState("");
  const [step, setStep] = useState("");
  const [payoutId, setPayoutId] = useState("");
  const status = useQuery(PaymentService.method.getPayout, { payoutId }, {
    enabled: payoutId !== "",
    refetchInterval: (q) => (q.state.data?.payout && FINAL.has(q.state.data.payout.status) ? false : 1000),
  });

  const submit = async (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    setError("");
    const form = new FormData(e.currentTarget);
    const amount = parseWholeUnits(String(form.get("amount") ?? ""));
    if (!amount) return setError("Enter whole shillings, from 1 to 250,000.");
    const typed = String(form.get("phone") ?? "").trim();
    const mpesaPhone = typed ? normaliseKenyanPhone(typed) : "";
    if (mpesaPhone === undefined) return setError("Enter a Kenyan M-Pesa number, for example 0712 345 678, or leave it empty for your payout number.");
    const session = loadSession();
    if (!session) return setError("Your session has ended. Please sign in again.");
    try {
      let device = await loadDeviceKey(session.userId);
      if (!device) {
        setStep("Setting up this device's key…");
        const made = await newDeviceKey();
        const { device: registered } = await register.mutateAsync({ name: navigator.userAgent.slice(0, 60) || "browser", publicKeyJwk: made.publicJwk });
        device = { deviceId: registered!.deviceId, privateKey: made.privateKey };
        await saveDeviceKey(session.userId, device);
      }
      setStep("Confirming with this device's key…");
      const c = await challenge.mutateAsync({ deviceId: device.deviceId, purpose: "payout" });
      const signature = await signChallenge(device.privateKey, c.challenge);
      const { stepUpToken } = await verify.mutateAsync({ challengeId: c.challengeId, signature });
      setStep("Sending to M-Pesa…");
      const res = await payout.mutateAsync({ idempotencyKey: key, amount: { amountMinor: amount, currency: "KES" }, mpesaPhone, stepUpToken });
      setPayoutId(res.payout!.payoutId);
      setStep("");
    } catch (err) {
      setStep("");
      setError(plainError(err));
    }
  };

  const p = status.data?.payout;
  const available = balance.data?.balances[0]?.available?.amountMinor ?? 0n;
  return (
    <>
      <WorkerNav />
      <h1>Withdraw to M-Pesa</h1>
      <p>Available: <strong>{formatMoney(available)}</strong></p>
      {limits.data ? (
        <table aria-label="Limits">
          <tbody>
            {limits.data.limits.map((l) => (
              <tr key={l.kind}><th>{LIMITS[l.kind] ?? "Limit"}</th><td>{formatMoney(l.remaining?.amountMinor ?? 0n)} left of {formatMoney(l.limit?.amountMinor ?? 0n)}</td></tr>
            ))}
          </tbody>
        </table>
      ) : null}
      {payoutId ? (
        <section role="status" aria-live="polite" className="notice">
          <p>Withdrawal of {formatMoney(p?.amount?.amountMinor ?? 0n)} to {p?.recipientPhoneMasked}: <strong data-testid="payout-status">{p ? PayoutStatus[p.status].toLowerCase().replace(/_/g, " ") : "sent"}</strong></p>
          {p?.transferFee ? <p className="muted">M-Pesa fee {formatMoney(p.transferFee.amountMinor)}</p> : null}
          {p?.resultMessage ? <p>{p.resultMessage}</p> : null}
          {p?.mpesaReceipt ? <p>M-Pesa receipt {p.mpesaReceipt}</p> : null}
        </section>
      ) : (
        <form onSubmit={submit} noValidate>
          <label className="field" htmlFor="amount">Amount (KES, whole shillings)</label>
          <input id="amount" name="amount" type="text" inputMode="numeric" autoComplete="off" />
          <label className="field" htmlFor="phone">M-Pesa number (empty: your payout number)</label>
          <input id="phone" name="phone" type="tel" inputMode="tel" autoComplete="tel" />
          {step ? <p role="status">{step}</p> : null}
          {error ? <p className="error" role="alert">{error}</p> : null}
          <button type="submit" disabled={step !== ""}>Withdraw</button>
        </form>
      )}
    </>
  );
}
