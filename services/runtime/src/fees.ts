// The fee arithmetic of a tip: wallet answers quotes with it (QuoteFees,
// QuoteTipFees) and payment charges M-Pesa tips with it from its copy of the
// schedules, so the two can never disagree. Pure: no I/O, the schedule is an argument.
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { FeeQuoteSchema, PaymentRail, type FeeQuote, type FeeSchedule } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { NotConfiguredError } from "./domain-errors.js";
import { CARD_FEE_BPS_MAX } from "./fee-limits.js";
import { fieldError } from "./field-errors.js";
import { formatMoney, money, mulDivRound } from "./money.js";

/**
 * The version in force at `atMs` of `schedules` (one currency's): the newest
 * version already effective, as wallet's SQL picks it (a later version with an
 * earlier effective_from wins over an earlier one). NOT_CONFIGURED when none is.
 */
export function scheduleInForce(schedules: readonly FeeSchedule[], currency: string, atMs: number): FeeSchedule {
  let found: FeeSchedule | undefined;
  for (const s of schedules) {
    if (s.currency !== currency || (s.effectiveFrom && timestampMs(s.effectiveFrom) > atMs)) continue;
    if (!found || s.version > found.version) found = s;
  }
  if (!found) throw new NotConfiguredError(`no fee schedule for ${currency}`);
  return found;
}

/**
 * The currency a tip lands in for a worker whose wallets hold `currencies`:
 * KES when they have a KES wallet or none, else their first (sorted). Having
 * a KES wallet never stops being true (wallets are never deleted), so a caller
 * may remember it; the other answers can change.
 */
export function tipWalletCurrency(currencies: readonly string[]): string {
  return currencies.includes("KES") ? "KES" : (currencies[0] ?? "KES");
}

/**
 * Platform fee: amount x bps / 10 000, rounded half away from zero to the
 * minor unit, then held within [min, cap] and never more than the tip.
 */
export function platformFee(s: FeeSchedule, amountMinor: bigint): bigint {
  let fee = mulDivRound(amountMinor, BigInt(s.platformFeeBps), 10_000n);
  if (fee < s.platformFeeMinMinor) fee = s.platformFeeMinMinor;
  if (fee > s.platformFeeCapMinor) fee = s.platformFeeCapMinor;
  return fee > amountMinor ? amountMinor : fee;
}

/** Card processing fee on what the card is charged: bps (rounded half away from zero) plus the fixed part. */
export function cardFee(s: FeeSchedule, chargedMinor: bigint): bigint {
  return mulDivRound(chargedMinor, BigInt(s.cardFeeBps), 10_000n) + s.cardFeeFixedMinor;
}

/**
 * M-Pesa's B2C charge for a payout of `amountMinor`: the band it falls in (edges inclusive). Outside every band,
 * INVALID_ARGUMENT naming the payout's `amount` and the range the bands cover (before: OUT_OF_RANGE naming neither).
 */
export function b2cFee(s: FeeSchedule, amountMinor: bigint): bigint {
  const bands = s.mpesaB2cBands;
  const band = bands.find((b) => amountMinor >= b.minMinor && amountMinor <= b.maxMinor);
  if (band) return band.feeMinor;
  const least = bands.reduce((m, b) => (b.minMinor < m ? b.minMinor : m), bands[0]?.minMinor ?? 0n);
  const most = bands.reduce((m, b) => (b.maxMinor > m ? b.maxMinor : m), 0n);
  throw fieldError("amount", `no M-Pesa B2C fee band covers ${formatMoney(amountMinor, s.currency)}: payouts are ${formatMoney(least, s.currency)} to ${formatMoney(most, s.currency)}`);
}

/**
 * What a tip costs and what the worker gets, in the tip's currency (the
 * caller converts when the wallet's currency differs).
 *
 * - M-Pesa: no processing fee on the customer's side (the paybill tariff is
 *   the platform's cost). Fees are whole shillings for KES, rounded down in
 *   the worker's favour, because M-Pesa moves whole shillings.
 * - Card: fee on the amount the card is charged.
 * - Customer covers the fee: the customer pays tip + fees, the worker gets
 *   the whole tip. Otherwise the fees come out of the tip.
 */
export function quoteTip(s: FeeSchedule, amountMinor: bigint, rail: PaymentRail, customerCovers: boolean): FeeQuote {
  let platform = platformFee(s, amountMinor);
  let processing = 0n;
  if (rail === PaymentRail.MPESA && s.currency === "KES") platform -= platform % 100n;
  let pays = amountMinor;
  if (rail === PaymentRail.CARD) {
    if (customerCovers) {
      // Charge enough that what is left after the card fee on the charge itself
      // covers the tip and the platform fee; a rounding cent over goes to the platform.
      // Each step closes all but the fee's share of the gap: up to CARD_FEE_BPS_MAX, a few steps from base do. A
      // schedule stored before that limit starts from the charge that covers base before rounding (from base, 9990
      // bps took thousands of steps); a fee of the whole charge (10000 bps) has no such charge.
      const base = amountMinor + platform;
      const keeps = 10_000n - BigInt(s.cardFeeBps);
      assert(keeps > 0n, `a card fee of ${s.cardFeeBps} bps leaves nothing of the charge`);
      pays = s.cardFeeBps <= CARD_FEE_BPS_MAX ? base : ((base + s.cardFeeFixedMinor) * 10_000n + keeps - 1n) / keeps;
      for (let step = 0; pays - cardFee(s, pays) < base; step++) {
        assert(step < 64, "card charge did not converge");
        pays += base - (pays - cardFee(s, pays));
      }
      processing = cardFee(s, pays);
      platform = pays - processing - amountMinor;
    } else {
      processing = cardFee(s, amountMinor);
    }
  } else if (customerCovers) {
    pays = amountMinor + platform;
  }
  const receives = customerCovers ? amountMinor : amountMinor - platform - processing;
  if (receives <= 0n) {
    throw fieldError("amount", `a tip of ${amountMinor} minor units does not cover its fees; tip more or cover the fee`);
  }
  return create(FeeQuoteSchema, {
    feeScheduleVersion: s.version,
    customerPays: money(pays, s.currency),
    platformFee: money(platform, s.currency),
    processingFee: money(processing, s.currency),
    workerReceives: money(receives, s.currency),
    customerCoversFee: customerCovers,
  });
}
