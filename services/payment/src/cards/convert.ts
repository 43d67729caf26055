// Card tips in contract messages, and their results in the customer's words.
import { optionalTimestamp } from "@ttip/runtime";
import { create } from "@bufbuild/protobuf";
import { MoneySchema } from "@ttip/proto/ttip/common/v1/money_pb.js";
import { CardProvider, CardTipState, type Tip as TipMessage } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { TIP_OUTCOME_WORDS } from "../messages.js";
import type { CardTipPart, Tip } from "../stores/tips.js";
import type { TipRow } from "../tips.js";

/** The card columns of a tip row (see migrations/0004_card_tips.sql). */
export interface CardColumns {
  card_provider: "stripe" | "paypal" | null;
  provider_payment_id: string | null;
  provider_charge_id: string | null;
  platform_fee_minor: bigint;
  processing_fee_minor: bigint;
  worker_share_minor: bigint;
  wallet_currency: string;
  fx_rate: string | null;
  fx_rate_source: string | null;
  fx_rate_time: Date | null;
  customer_country: string;
  card_fingerprint: string | null;
  card_country: string | null;
  next_action_url: string;
  card_state: "none" | "refunded" | "disputed" | "dispute_won" | "dispute_lost";
  refunded_minor: bigint;
  reversed_wallet_minor: bigint;
  /** What the card was charged in KES (null for a tip from before it was kept). */
  charged_kes_minor: bigint | null;
}
export type CardTipRow = TipRow & CardColumns;

const STATE: Record<CardColumns["card_state"], CardTipState> = {
  none: CardTipState.NONE,
  refunded: CardTipState.REFUNDED,
  disputed: CardTipState.DISPUTED,
  dispute_won: CardTipState.DISPUTE_WON,
  dispute_lost: CardTipState.DISPUTE_LOST,
};

const MESSAGES: Record<string, { en: string; sw: string }> = {
  ...TIP_OUTCOME_WORDS,
  requires_action: { en: "Your bank asks you to confirm this payment.", sw: "Benki yako inakuomba uthibitishe malipo haya." },
  "card_declined/insufficient_funds": { en: "Your card has insufficient funds. Try another card.", sw: "Kadi yako haina pesa za kutosha. Jaribu kadi nyingine." },
  card_declined: { en: "Your card was declined. Try another card.", sw: "Kadi yako imekataliwa. Jaribu kadi nyingine." },
  payment_intent_authentication_failure: { en: "The card could not be verified by your bank. Nothing was charged; try again.", sw: "Benki yako haikuweza kuthibitisha kadi. Hakuna pesa iliyotozwa; jaribu tena." },
  card_velocity: { en: "This card has tipped too often. Nothing was charged.", sw: "Kadi hii imetumika mara nyingi mno. Hakuna pesa iliyotozwa." },
  card_limit: { en: "This card has reached its tipping limit for today. Nothing was charged.", sw: "Kadi hii imefikia kikomo cha leo. Hakuna pesa iliyotozwa." },
  card_country_mismatch: { en: "This card cannot be used here. Nothing was charged.", sw: "Kadi hii haiwezi kutumika hapa. Hakuna pesa iliyotozwa." },
  canceled: { en: "The card payment was cancelled. Nothing was charged.", sw: "Malipo ya kadi yamesitishwa. Hakuna pesa iliyotozwa." },
  expired: { en: "The card payment was not completed in time. Nothing was charged.", sw: "Malipo ya kadi hayakukamilika kwa wakati. Hakuna pesa iliyotozwa." },
  provider_refused: { en: "The card payment could not be started. Nothing was charged; try again.", sw: "Malipo ya kadi hayakuweza kuanzishwa. Hakuna pesa iliyotozwa; jaribu tena." },
};

export function cardResultMessage(code: string, locale = "en"): string {
  const m = MESSAGES[code] ?? MESSAGES[code.split("/")[0]] ?? MESSAGES.card_declined;
  return locale.toLowerCase().startsWith("sw") ? m.sw : m.en;
}

/** Fills a tip message's card fields (and its result in card words) from the tip. */
export function withCardFields(tip: TipMessage, t: Tip, card: CardTipPart, locale = "en"): TipMessage {
  const key = t.status === "held_for_review" ? "review" : t.resultCode;
  tip.resultMessage = key ? cardResultMessage(key, locale) : "";
  tip.cardProvider = card.provider === "paypal" ? CardProvider.PAYPAL : CardProvider.STRIPE;
  tip.providerPaymentId = card.providerPaymentId ?? "";
  tip.stripePaymentIntentId = card.provider === "stripe" ? (card.providerPaymentId ?? "") : "";
  tip.workerReceives = create(MoneySchema, t.workerReceives);
  tip.fxRate = card.fxRate ?? "";
  tip.fxRateSource = card.fxRateSource ?? "";
  tip.fxRateTime = optionalTimestamp(card.fxRateTime);
  tip.nextActionUrl = t.status === "pending" ? card.nextActionUrl : "";
  tip.cardState = STATE[card.state] ?? CardTipState.NONE;
  tip.refunded = create(MoneySchema, card.refunded);
  return tip;
}
