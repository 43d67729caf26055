// Card fraud rules, run on the authorisation (before any money is taken):
// the card's fingerprint and issuing country are known only then.
import { lockForTransaction, type Queryable } from "@ttip/runtime";
import type { FraudActionCode, FraudReasonCode } from "../fraud.js";
import type { CardRules } from "./config.js";
import type { CardTipRow } from "./convert.js";
import type { CardDetails } from "./provider.js";

export interface CardVerdict {
  /** none: capture; hold: capture into suspense for review; refuse: cancel the authorisation. */
  action: "none" | "hold" | "refuse";
  /** The tip's result code when refused (card_velocity, card_limit, card_country_mismatch). */
  code: string;
  hits: { reason: FraudReasonCode; action: FraudActionCode; detail: string }[];
}

/**
 * Velocity per card (tips in the last hour), what the card was charged in 24 hours in KES,
 * and the issuing country against the customer's. Serialised per card by an
 * advisory lock, so two tips racing on one card both count.
 */
export async function checkAuthorisation(tx: Queryable, rules: CardRules, tip: CardTipRow, card: CardDetails | undefined): Promise<CardVerdict> {
  const hits: CardVerdict["hits"] = [];
  let code = "";
  if (card?.fingerprint) {
    await lockForTransaction(tx, `card:${card.fingerprint}`);
    const { rows } = await tx.query<{ last_hour: string; today_minor: string | null }>(
      `SELECT count(*) FILTER (WHERE created_at > now() - interval '1 hour') AS last_hour,
              sum(coalesce(charged_kes_minor, worker_receives_minor)) AS today_minor
         FROM payment.tips
        WHERE card_fingerprint = $1 AND tip_id <> $2 AND created_at > now() - interval '24 hours'
          AND (status IN ('succeeded', 'held_for_review') OR (status = 'pending' AND fraud_action <> 'refuse'))`,
      [card.fingerprint, tip.tip_id],
    );
    const lastHour = Number(rows[0].last_hour);
    // What the card was charged, in KES (a tip from before that was kept counts its worker's share, as it did).
    const today = BigInt(rows[0].today_minor ?? 0) + (tip.charged_kes_minor ?? tip.worker_receives_minor);
    if (lastHour >= rules.perCardPerHour) {
      hits.push({ reason: "CARD_VELOCITY", action: "refuse", detail: `${lastHour} card tips from this card within an hour (limit ${rules.perCardPerHour}); authorisation cancelled` });
      code ||= "card_velocity";
    }
    if (today > rules.perCardDailyKesMinor) {
      hits.push({ reason: "CARD_LIMIT", action: "refuse", detail: `this card would tip KES ${today / 100n} within 24 hours (limit KES ${rules.perCardDailyKesMinor / 100n}); authorisation cancelled` });
      code ||= "card_limit";
    }
  }
  if (rules.countryMismatch !== "off" && card?.country && tip.customer_country && card.country !== tip.customer_country) {
    const action = rules.countryMismatch === "refuse" ? "refuse" : "hold";
    hits.push({ reason: "CARD_COUNTRY_MISMATCH", action, detail: `card issued in ${card.country}, customer in ${tip.customer_country}` });
    if (action === "refuse") code ||= "card_country_mismatch";
  }
  const action = hits.some((h) => h.action === "refuse") ? "refuse" : hits.some((h) => h.action === "hold") ? "hold" : "none";
  return { action, code, hits };
}
