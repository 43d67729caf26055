"use client";
// Pay by card: the Payment Element (card, and Apple Pay / Google Pay where the
// browser offers them) from Stripe.js, loaded only when the customer chooses
// a card, so the page stays light for M-Pesa customers on slow networks.
import { useRouter } from "next/navigation";
import { type FormEvent, useRef, useState } from "react";
import { formatMoney } from "../../../lib/money";
import { keepSeed, keptSeed } from "../../../lib/tip-seed";
import { useWrite } from "../../../lib/use-write";
import { startCardTip } from "./card-actions";
import { CARD_CURRENCIES, STRIPE_LEAST_MINOR } from "@ttip/payment/card-currencies";

interface StripeJs {
  elements(o: { clientSecret: string }): { create(kind: "payment"): { mount(el: HTMLElement): void } };
  confirmPayment(o: { elements: unknown; confirmParams: { return_url: string }; redirect: "if_required" }): Promise<{ error?: { code?: string; message?: string }; paymentIntent?: { status: string } }>;
}
declare global {
  interface Window {
    Stripe?: (key: string) => StripeJs;
  }
}

const WORDS = {
  en: {
    amount: "Amount", currency: "Currency", start: "Pay by card", pay: (a: string) => `Pay ${a} by card`, loading: "Loading the card form…",
    amountBad: "Enter a whole amount.", least: (a: string) => `A card tip is at least ${a}.`, limit: "That is above the card limit for one tip.", unavailable: "Card payments are not available right now. Please pay with M-Pesa.",
    ended: "This card payment did not go through, and nothing was charged. Press Pay by card to try again.",
    generic: "Something went wrong. Please try again.", busy: "TTIP is busy right now. Nothing was charged; please try again in a few seconds.", note: "Paid in your currency; the worker receives Kenya shillings at today's rate.",
    poolNote: "Paid in your currency; the team's pool receives Kenya shillings at today's rate.",
  },
  sw: {
    amount: "Kiasi", currency: "Sarafu", start: "Lipa kwa kadi", pay: (a: string) => `Lipa ${a} kwa kadi`, loading: "Inapakia fomu ya kadi…",
    amountBad: "Weka kiasi kamili.", least: (a: string) => `Tip kwa kadi ni angalau ${a}.`, limit: "Kiasi hicho kinazidi kikomo cha kadi kwa tip moja.", unavailable: "Malipo kwa kadi hayapatikani sasa. Tafadhali lipa kwa M-Pesa.",
    ended: "Malipo haya ya kadi hayakufanikiwa, na hakuna pesa iliyotozwa. Bonyeza Lipa kwa kadi kujaribu tena.",
    generic: "Hitilafu imetokea. Tafadhali jaribu tena.", busy: "TTIP ina shughuli nyingi sasa hivi. Hakuna pesa iliyotozwa; tafadhali jaribu tena baada ya sekunde chache.", note: "Unalipa kwa sarafu yako; mfanyakazi anapokea shilingi za Kenya kwa bei ya leo.",
    poolNote: "Unalipa kwa sarafu yako; mfuko wa timu unapokea shilingi za Kenya kwa bei ya leo.",
  },
};

function loadScript(src: string): Promise<void> {
  if (window.Stripe) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const s = document.createElement("script");
    s.src = src;
    s.onload = () => resolve();
    s.onerror = () => reject(new Error("Stripe.js did not load"));
    document.head.appendChild(s);
  });
}

/**
 * `keySeed`: the page's new seed, which the card form keeps on the device (tip-seed.ts) unless it kept one for the
 * code already: the card tip's key is worked out of it;
 * `fixedUnits`: a code's fixed amount, in whole units of `defaultCurrency`: the only amount the card may pay; `shared`: a venue's pool is tipped.
 */
export function CardForm({ locale, shortCode, payload, keySeed, defaultCurrency, fixedUnits, shared }: { locale: "en" | "sw"; shortCode: string; payload: string; keySeed: string; defaultCurrency: string; fixedUnits?: string; shared: boolean }) {
  const w = WORDS[locale];
  const router = useRouter();
  const [amount, setAmount] = useState(fixedUnits ?? "");
  const [currency, setCurrency] = useState(defaultCurrency);
  const [error, setError] = useState("");
  const [ready, setReady] = useState<{ stripe: StripeJs; elements: unknown; statusUrl: string; label: string } | null>(null);
  const mountRef = useRef<HTMLDivElement>(null);
  // One card tip is one write: started (the payment service's tip and PaymentIntent) under a key worked out from the
  // device's kept seed and what it asks, then confirmed with Stripe. The same card tip asked again (a retry after a
  // lost answer, or from the page opened again after the confirm's answer was lost) is the same tip: confirmed
  // already, the status page shows it, not a second charge.
  const tip = useWrite();
  const busy = tip.busy;

  const startTip = async (find = false) => {
    const seed = keptSeed(shortCode, keySeed, "card");
    keepSeed(shortCode, seed, "card");
    const r = await startCardTip({ code: shortCode, payload, amount, currency, seed, locale, find });
    if (r.ok && r.seed !== seed) keepSeed(shortCode, r.seed, "card");
    return r;
  };

  const start = (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    void tip.run(async () => {
      setError("");
      const r = await startTip();
      if (!r.ok) {
        // The least as the service has it for the currency asked (the amount was refused beside it, not as a fraction).
        const least = STRIPE_LEAST_MINOR[currency];
        setError(r.error === "least" && least !== undefined ? w.least(formatMoney(least, currency)) : r.error === "amount" || r.error === "least" ? w.amountBad : r.error === "limit" ? w.limit : r.error === "unavailable" ? w.unavailable : r.error === "busy" ? w.busy : w.generic);
        return;
      }
      if (!r.open) return router.push(r.statusUrl);
      await loadScript(r.stripeJsUrl);
      const stripe = window.Stripe!(r.publishableKey);
      const elements = stripe.elements({ clientSecret: r.clientSecret });
      elements.create("payment").mount(mountRef.current!);
      setReady({ stripe, elements, statusUrl: r.statusUrl, label: formatMoney(BigInt(r.amountMinor), currency) });
    }, () => setError(w.generic));
  };

  // A confirm that did not answer may have charged the card (and a Pay after it is refused: the payment is no
  // longer open): the tip is looked up (the same card tip, asked again) and shown when it needs nothing more;
  // else the form stays for another Pay.
  const lookUp = async () => {
    const r = await startTip(true).catch(() => undefined);
    if (r?.ok && !r.open) return router.push(r.statusUrl);
    if (r && !r.ok && r.error === "ended") {
      // Its payment is over: the form starts again (a new tip, on Pay by card), not Pay on a payment that ended.
      mountRef.current?.replaceChildren();
      setReady(null);
      return setError(w.ended);
    }
    setError(w.generic);
  };

  const confirm = () => tip.run(async () => {
    if (!ready) return;
    setError("");
    const result = await ready.stripe.confirmPayment({
      elements: ready.elements,
      // 3-D Secure pages send the customer back here. For them Stripe.js leaves this page and its
      // promise never settles, so an answer means no redirect: going on from it races nothing.
      confirmParams: { return_url: `${window.location.origin}${ready.statusUrl}` },
      redirect: "if_required",
    }).catch(() => undefined);
    if (!result || result.error?.code === "payment_intent_unexpected_state") await lookUp();
    else if (result.error) setError(result.error.message ?? w.generic);
    else router.push(ready.statusUrl);
  }, () => setError(w.generic));

  return (
    <form onSubmit={start} className="card-form">
      <p className="muted">{shared ? w.poolNote : w.note}</p>
      <label className="field">
        {w.amount}
        <input type="text" name="card-amount" inputMode="numeric" value={amount} onChange={(e) => setAmount(e.target.value)} disabled={!!ready} readOnly={fixedUnits !== undefined} required />
      </label>
      <label className="field">
        {w.currency}
        <select name="card-currency" value={currency} onChange={(e) => setCurrency(e.target.value)} disabled={!!ready || fixedUnits !== undefined}>
          {CARD_CURRENCIES.map((c) => <option key={c} value={c}>{c}</option>)}
        </select>
      </label>
      <div ref={mountRef} id="payment-element" />
      {error ? <p className="notice bad" role="alert">{error}</p> : null}
      {ready ? (
        <button type="button" className="button" onClick={confirm} disabled={busy}>{w.pay(ready.label)}</button>
      ) : (
        <button type="submit" className="button" disabled={busy}>{busy ? w.loading : w.start}</button>
      )}
    </form>
  );
}
