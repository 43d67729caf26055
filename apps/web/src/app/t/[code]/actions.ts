"use server";
// The tip form's action. It runs on the server, so the form works as a plain
// post where scripts do not run (proxy browsers), and the same code serves
// the page when they do.
import { Code, ConnectError } from "@connectrpc/connect";
import { cookies } from "next/headers";
import { redirect } from "next/navigation";
import { DomainErrorInfoSchema } from "@ttip/proto/ttip/common/v1/errors_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { PaymentRail } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { serverClient } from "../../../lib/api";
import { overloaded } from "../../../lib/errors";
import type { Locale, Messages } from "../../../lib/i18n";
import { formatMoney, parseWholeUnits } from "../../../lib/money";
import { normaliseKenyanPhone } from "../../../lib/phone";
import { requestKey } from "../../../lib/request-key";
import { SCRIPTLESS_SEED_SECONDS, SEED_COOKIE, seedCookiePath } from "../../../lib/tip-seed";
import { newWriteKey, settlesWrite } from "../../../lib/write-key";
import { recipientOf } from "./target";

export interface TipFormState {
  /** Per field, a message key; "form" for the whole form. */
  errors: Partial<Record<"amount" | "phone" | "email" | "form", keyof Messages>>;
  /** A custom amount's fee, quoted before paying (the form's second step without scripts). */
  quoted?: { minor: string; total: string; fee: string; receives: string; cover: boolean };
  values: { amount: string; other: string; phone: string; email: string; cover: boolean; remember: boolean };
  /**
   * The seed of the next attempt's idempotency key (requestKey): the one posted, or a new one once the
   * service has answered for it. Posted as "seed"; a page rendered before seeds posted its key as "key".
   */
  seed?: string;
}

const text = (f: FormData, name: string) => String(f.get(name) ?? "").trim();

export async function payTip(_prev: TipFormState, form: FormData): Promise<TipFormState> {
  const locale = (text(form, "locale") === "sw" ? "sw" : "en") as Locale;
  const shortCode = text(form, "code");
  const payload = text(form, "p");
  const workerId = text(form, "worker");
  const currency = text(form, "currency") || "KES";
  const values = {
    amount: text(form, "amount"),
    other: text(form, "other"),
    phone: text(form, "phone"),
    email: text(form, "email"),
    cover: form.get("cover") === "on",
    remember: form.get("remember") === "on",
  };
  // The posted seed goes back with the form (a page rendered again without scripts would make a new one).
  const state: TipFormState = { errors: {}, values, seed: text(form, "seed") || undefined };

  const custom = values.amount === "other" || values.amount === "";
  const amountMinor = custom ? parseWholeUnits(values.other) : /^[0-9]{1,12}$/.test(values.amount) ? BigInt(values.amount) : undefined;
  if (amountMinor === undefined || amountMinor <= 0n || amountMinor % 100n !== 0n) state.errors.amount = "err_amount";
  const phone = normaliseKenyanPhone(values.phone);
  if (!phone) state.errors.phone = "err_phone";
  if (values.email && !/^[^\s@]+@[^\s@]+\.[^\s@]+$/.test(values.email)) state.errors.email = "err_email";
  if (Object.keys(state.errors).length) return state;

  // A typed amount's fee is shown before paying: without scripts that is a second step.
  if (custom && text(form, "quoted") !== `${amountMinor}:${values.cover}`) {
    try {
      const { quote } = await serverClient(WalletService, { locale }).quoteFees({
        amount: { amountMinor: amountMinor!, currency }, rail: PaymentRail.MPESA, customerCoversFee: values.cover, workerId,
      });
      const fee = (quote?.platformFee?.amountMinor ?? 0n) + (quote?.processingFee?.amountMinor ?? 0n);
      return {
        ...state,
        quoted: {
          minor: amountMinor!.toString(),
          cover: values.cover,
          fee: formatMoney(fee, currency),
          total: formatMoney(quote?.customerPays?.amountMinor ?? amountMinor!, currency),
          receives: formatMoney(quote?.workerReceives?.amountMinor ?? amountMinor!, currency),
        },
      };
    } catch {
      return { ...state, errors: { form: "err_generic" } };
    }
  }

  const recipient = recipientOf(shortCode, payload);
  // The key follows what is asked of M-Pesa: a retry of this request replays it, an edited one is a new tip. Not the
  // receipt's address, which a page opened again after a lost answer does not keep: with it, the retry was a second tip.
  // A page from before seeds posts its key, sent as it is (as that page's server did).
  const key = state.seed ? requestKey(state.seed, JSON.stringify([recipient, amountMinor!.toString(), currency, phone, values.cover])) : text(form, "key");
  let tipId: string;
  try {
    const { tip } = await serverClient(PaymentService, { locale }).createTip({
      idempotencyKey: key,
      recipient: { case: "qrCode", value: recipient },
      amount: { amountMinor: amountMinor!, currency },
      payment: { case: "mpesaPhone", value: phone! },
      customerCoversFee: values.cover,
      customerEmail: values.email,
      // The page's language: the SMS receipt is written in it.
      locale,
    });
    tipId = tip!.tipId;
  } catch (err) {
    const e = ConnectError.from(err);
    if (settlesWrite(e)) {
      state.seed = newWriteKey();
      // A page opened again renders its cookie's seed (a browser without scripts keeps no other).
      (await cookies()).set(SEED_COOKIE, state.seed, { path: seedCookiePath(shortCode), maxAge: SCRIPTLESS_SEED_SECONDS, sameSite: "lax" });
    }
    if (e.code === Code.InvalidArgument && /mpesa_phone|phone/.test(e.rawMessage)) return { ...state, errors: { phone: "err_phone" } };
    // Within the limit, but the fee the customer covers takes M-Pesa's charge past it.
    if (e.code === Code.InvalidArgument && /^amount:.*per transaction/.test(e.rawMessage) && values.cover) return { ...state, errors: { amount: "err_amountOverMpesa" } };
    if (e.code === Code.InvalidArgument && /amount/.test(e.rawMessage)) return { ...state, errors: { amount: "err_amount" } };
    if (e.code === Code.InvalidArgument && /email/.test(e.rawMessage)) return { ...state, errors: { email: "err_email" } };
    const refused = customerRefusal(e);
    if (refused) return { ...state, errors: refused };
    if (e.code === Code.ResourceExhausted) return { ...state, errors: { form: "err_rate" } };
    if (e.code === Code.Unimplemented) return { ...state, errors: { form: "err_card" } };
    // Refused before anything ran: the key posted stays (not settled), so pressing Pay again is the retry.
    if (overloaded(e)) return { ...state, errors: { form: "err_busy" } };
    if (e.code === Code.FailedPrecondition || e.code === Code.NotFound) return { ...state, errors: { form: "problem_other" } };
    return { ...state, errors: { form: "err_generic" } };
  }

  // The number stays on this device only when the customer asked for it.
  const jar = await cookies();
  if (values.remember) jar.set("ttip_phone", values.phone, { path: "/t", maxAge: 180 * 86400, httpOnly: true, sameSite: "lax" });
  else jar.delete({ name: "ttip_phone", path: "/t" });
  redirect(`/t/${encodeURIComponent(shortCode)}/tips/${tipId}${payload ? `?p=${encodeURIComponent(payload)}` : ""}`);
}

/** The fraud rules on a payer's number (payment names the rule), as the USSD menu words them. */
const NUMBER_REFUSALS: Record<string, keyof Messages> = { BLOCKED_NUMBER: "err_numberBlocked", PIN_FAILURES: "err_pinLimited", VELOCITY_PHONE: "err_phoneLimited" };

/**
 * A refusal the customer can act on, on the field to change: M-Pesa's 2-minute rule on a repeated amount
 * (before: "this QR code cannot take tips"), and a fraud rule on the number (before: "press Pay again").
 */
function customerRefusal(e: ConnectError): TipFormState["errors"] | undefined {
  const info = e.findDetails(DomainErrorInfoSchema)[0]?.metadata ?? {};
  if (e.code === Code.FailedPrecondition && info.wait_seconds) return { amount: "err_ruleLimited" };
  const number = info.fraud_rule ? NUMBER_REFUSALS[info.fraud_rule] : undefined;
  return number ? { phone: number } : undefined;
}
