"use client";
import { type FormEvent, startTransition, useActionState, useEffect, useRef, useState } from "react";
import { translator, type Locale } from "../../../lib/i18n";
import { formatMoney } from "../../../lib/money";
import { keepSeed, keptSeed } from "../../../lib/tip-seed";
import { payTip, type TipFormState } from "./actions";
import { quoteTip } from "./quote";

export interface Preset {
  minor: string;
  label: string;
  fee: string;
  feeLabel: string;
}

interface Props {
  locale: Locale;
  shortCode: string;
  payload: string;
  name: string;
  workerId: string;
  currency: string;
  presets: Preset[];
  fixed: boolean;
  /** The seed of the form's idempotency keys: one per page (or the device's, kept), each request's key worked out from it and what it asks. */
  keySeed: string;
  rememberedPhone: string;
  initialAmount: string;
}

/**
 * The amount, fee and M-Pesa number. A plain form posting to a server action:
 * it works without scripts; with them it also quotes a typed amount as the
 * customer types and shows the total on the button.
 */
export function TipForm(p: Props) {
  const t = translator(p.locale);
  const initial: TipFormState = {
    errors: {},
    values: { amount: p.initialAmount, other: "", phone: p.rememberedPhone, email: "", cover: true, remember: p.rememberedPhone !== "" },
  };
  const [state, action, pending] = useActionState(payTip, initial);
  const v = state.values;
  const [amount, setAmount] = useState(v.amount);
  const [other, setOther] = useState(v.other);
  const [cover, setCover] = useState(v.cover);
  const [live, setLive] = useState<{ key: string; fee: string; total: string; receives: string }>();
  const formRef = useRef<HTMLFormElement>(null);
  // The device's seed for this code (tip-seed.ts): a page opened again after a lost answer asks under the same key.
  const [seed, setSeed] = useState(p.keySeed);
  useEffect(() => setSeed(keptSeed(p.shortCode, p.keySeed)), [p.shortCode, p.keySeed]);
  useEffect(() => {
    if (state.seed) keepSeed(p.shortCode, state.seed);
  }, [p.shortCode, state.seed]);

  // A refused form puts the focus on its first named field (the Pay button it left is disabled while
  // pending, so the focus fell to the page): the customer corrects it without hunting for it.
  useEffect(() => {
    const form = formRef.current;
    const e = state.errors;
    if (!form) return;
    if (e.email) form.querySelector("details")?.setAttribute("open", "");
    const field = e.amount ? (form.querySelector("#other") ?? form.querySelector("input[name=amount]")) : e.phone ? form.querySelector("#phone") : e.email ? form.querySelector("#email") : null;
    if (field instanceof HTMLElement) field.focus();
  }, [state.errors]);

  // Sent from here rather than by React's form action, which resets the form once the action returns:
  // a refused form's radios went back to the amount the page was rendered with while this state (the
  // button's total) kept the customer's, so the next Pay charged the first choice. Without scripts the
  // form still posts to the action.
  const submit = (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const data = new FormData(e.currentTarget);
    // Kept from this Pay on: a page opened at the table and paid an hour later keeps its seed past a lost answer.
    keepSeed(p.shortCode, String(data.get("seed")));
    startTransition(() => action(data));
  };

  useEffect(() => {
    if (amount !== "other" || !other) return setLive(undefined);
    const handle = setTimeout(() => {
      quoteTip(other, cover, p.workerId, p.currency).then(setLive, () => setLive(undefined));
    }, 350);
    return () => clearTimeout(handle);
  }, [amount, other, cover, p.workerId, p.currency]);

  const preset = p.presets.find((x) => x.minor === amount);
  const quoted = state.quoted && amount === "other" && state.quoted.minor === String(BigInt(other.replace(/\D/g, "") || "0") * 100n) && state.quoted.cover === cover ? state.quoted : undefined;
  const shown = live ?? quoted;
  const total = preset ? (cover ? formatMoney(BigInt(preset.minor) + BigInt(preset.fee), p.currency) : preset.label) : shown?.total;
  const err = state.errors;
  return (
    <form ref={formRef} action={action} onSubmit={submit} noValidate aria-describedby={err.form ? "form-error" : undefined}>
      <input type="hidden" name="locale" value={p.locale} />
      <input type="hidden" name="code" value={p.shortCode} />
      <input type="hidden" name="p" value={p.payload} />
      <input type="hidden" name="worker" value={p.workerId} />
      <input type="hidden" name="currency" value={p.currency} />
      <input type="hidden" name="seed" value={state.seed ?? seed} />
      {shown ? <input type="hidden" name="quoted" value={live?.key ?? `${quoted!.minor}:${quoted!.cover}`} /> : null}
      <fieldset aria-describedby={err.amount ? "amount-error" : undefined}>
        <legend>{p.fixed ? t("fixedAmount", { amount: p.presets[0]?.label ?? "" }) : t("chooseAmount")}</legend>
        <div className="amounts">
          {p.presets.map((x) => (
            <label className="amount" key={x.minor}>
              <input type="radio" name="amount" value={x.minor} checked={amount === x.minor} onChange={() => setAmount(x.minor)} />
              <span>
                {x.label}
                <small>{t("fee", { fee: x.feeLabel })}</small>
              </span>
            </label>
          ))}
          {p.fixed ? null : (
            <label className="amount">
              <input type="radio" name="amount" value="other" checked={amount === "other"} onChange={() => setAmount("other")} />
              <span>{t("otherChoice")}</span>
            </label>
          )}
        </div>
        {p.fixed ? null : (
          <>
            <label className="field" htmlFor="other">{t("otherAmount", { currency: p.currency })}</label>
            <input id="other" name="other" type="text" inputMode="numeric" autoComplete="off" placeholder={t("otherAmountHint")} value={other}
              aria-invalid={err.amount ? true : undefined}
              onChange={(e) => { setOther(e.target.value); setAmount("other"); }} />
          </>
        )}
        {err.amount ? <p id="amount-error" className="error">{t(err.amount)}</p> : null}
      </fieldset>

      <div className="check">
        <input id="cover" name="cover" type="checkbox" checked={cover} onChange={(e) => setCover(e.target.checked)} />
        <label htmlFor="cover">{t("coverFee", { name: p.name })}</label>
      </div>
      {shown ? (
        <p className="total" aria-live="polite">
          {t("feeLine", { fee: shown.fee })} · {cover ? t("youPay", { total: shown.total }) : t("receives", { name: p.name, amount: shown.receives })}
        </p>
      ) : null}

      <h2>{t("mpesaHeading")}</h2>
      <label className="field" htmlFor="phone">{t("phone")}</label>
      <input id="phone" name="phone" type="tel" inputMode="tel" autoComplete="tel" placeholder={t("phoneHint")} defaultValue={v.phone}
        aria-invalid={err.phone ? true : undefined} aria-describedby={err.phone ? "phone-error" : undefined} />
      {err.phone ? <p id="phone-error" className="error">{t(err.phone)}</p> : null}
      <div className="check">
        <input id="remember" name="remember" type="checkbox" defaultChecked={v.remember} />
        <label htmlFor="remember">{t("remember")}</label>
      </div>
      <details>
        <summary>{t("email")}</summary>
        <label className="field sr-only" htmlFor="email">{t("email")}</label>
        <input id="email" name="email" type="email" autoComplete="email" defaultValue={v.email}
          aria-invalid={err.email ? true : undefined} aria-describedby={err.email ? "email-error" : undefined} />
      </details>
      {err.email ? <p id="email-error" className="error">{t(err.email)}</p> : null}
      {err.form ? <p id="form-error" className="notice bad" role="alert">{t(err.form)}</p> : null}
      {/* While it is asked, the button says so (before, it only turned grey). */}
      <button type="submit" disabled={pending} aria-busy={pending || undefined}>{pending ? t("paySending") : total ? t("payTotal", { total }) : t("pay")}</button>
    </form>
  );
}
