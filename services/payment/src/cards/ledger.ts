// Card money in the wallet's ledger. A card tip is paid in the customer's
// currency and lands in the worker's wallet, in its currency (KES as a rule,
// whatever the worker holds otherwise), or in a venue's pool (KES): the entry balances per
// currency through the platform's FX position, and carries the rate, its
// source and its time. Every write has an idempotency key derived from the
// provider's ids, so a webhook applied twice posts once.
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AccountKind } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import type { Ledger } from "../ledger.js";

/** What a card tip moved, from its row. */
export interface CardSplit {
  tipId: string;
  /** "" for a tip to a venue's pool. */
  workerId: string;
  venueId: string;
  paymentId: string;
  provider: "stripe" | "paypal";
  /** The tip's (customer's) currency and what was charged in it. */
  currency: string;
  chargedMinor: bigint;
  /** The worker's share in the tip's currency, before conversion. */
  shareMinor: bigint;
  walletCurrency: string;
  /** The worker's share in the wallet's currency. */
  walletMinor: bigint;
  fx?: { rate: string; source: string; time: Date };
}

/** Part of a card tip: `chargedMinor` of the charge, `shareMinor`/`walletMinor` of the worker's part. */
export interface Portion {
  chargedMinor: bigint;
  shareMinor: bigint;
  walletMinor: bigint;
}

/** Each provider owes us through its own clearing account. */
const clearingKind = (p: "stripe" | "paypal") => (p === "stripe" ? AccountKind.STRIPE_CLEARING : AccountKind.PAYPAL_CLEARING);

type Leg = { kind: AccountKind; owner?: string; currency: string; amount: bigint; memo: string };

/** Where a card tip's share lands and is taken back from: the worker's wallet, or the venue's pool for a tip by its code. */
const shareKind = (s: CardSplit) => (s.workerId ? AccountKind.WORKER_WALLET : AccountKind.VENUE_POOL);

function shareLeg(s: CardSplit, amount: bigint, memo: string): Leg {
  return { kind: shareKind(s), owner: s.workerId || s.venueId, currency: s.walletCurrency, amount, memo };
}

/** Card entries go through the Ledger's PostEntry, with its deadline. */
export class CardLedger {
  constructor(private readonly ledger: Ledger) {}

  /**
   * The legs of a card payment of `p` reaching `dest` (the worker or the venue's pool, or suspense):
   * the provider's clearing account gives what the card paid, the platform
   * keeps its fees in that currency, and the worker's share crosses to the
   * wallet's currency through the FX position.
   */
  private legs(s: CardSplit, p: Portion, dest: "recipient" | "suspense"): Leg[] {
    const destLeg: Leg = dest === "recipient"
      ? shareLeg(s, p.walletMinor, "card tip")
      : { kind: AccountKind.SUSPENSE, currency: s.walletCurrency, amount: p.walletMinor, memo: "card tip held for review" };
    const clearing: Leg = { kind: clearingKind(s.provider), currency: s.currency, amount: -p.chargedMinor, memo: `${s.provider} ${s.paymentId}` };
    if (s.currency === s.walletCurrency) {
      return [clearing, destLeg, { kind: AccountKind.PLATFORM_FEES, currency: s.currency, amount: p.chargedMinor - p.walletMinor, memo: "platform and card fees" }];
    }
    return [
      clearing,
      { kind: AccountKind.PLATFORM_FEES, currency: s.currency, amount: p.chargedMinor - p.shareMinor, memo: "platform and card fees" },
      { kind: AccountKind.FX_POSITION, currency: s.currency, amount: p.shareMinor, memo: `bought ${s.walletCurrency}` },
      { kind: AccountKind.FX_POSITION, currency: s.walletCurrency, amount: -p.walletMinor, memo: `sold for ${s.currency}` },
      destLeg,
    ];
  }

  private conversions(s: CardSplit, p: Portion) {
    if (!s.fx || s.currency === s.walletCurrency) return [];
    return [{
      from: { currency: s.currency, amountMinor: p.shareMinor },
      to: { currency: s.walletCurrency, amountMinor: p.walletMinor },
      rate: s.fx.rate,
      rateSource: s.fx.source,
      rateTime: timestampFromDate(s.fx.time),
    }];
  }

  private cause(s: CardSplit) {
    return { cause: s.provider === "stripe" ? { case: "stripePaymentId" as const, value: s.paymentId } : { case: "tipAttemptId" as const, value: s.tipId } };
  }

  private async post(key: string, s: CardSplit, legs: Leg[], description: string, conversions: ReturnType<CardLedger["conversions"]> = [], allowOwnerDebt = false): Promise<string> {
    const postings = await Promise.all(
      legs.filter((l) => l.amount !== 0n).map(async (l) => ({
        accountId: await this.ledger.account(l.kind, l.owner ?? "", l.currency),
        amount: { currency: l.currency, amountMinor: l.amount },
        memo: l.memo,
      })),
    );
    return this.ledger.postEntry({
      idempotencyKey: key,
      cause: this.cause(s),
      postings,
      conversions,
      description,
      allowOwnerDebt,
    });
  }

  /** The whole charge credited: to the worker (or the venue's pool), or to suspense when a rule holds it. */
  credit(s: CardSplit, dest: "recipient" | "suspense"): Promise<string> {
    const whole = { chargedMinor: s.chargedMinor, shareMinor: s.shareMinor, walletMinor: s.walletMinor };
    return this.post(`card:${s.paymentId}`, s, this.legs(s, whole, dest), `Card tip ${s.tipId} (${s.provider} ${s.paymentId})`, this.conversions(s, whole));
  }

  /** Gives back part of a credit taken back before (a refund the provider refused), to where it was taken from. */
  restore(key: string, s: CardSplit, p: Portion, to: "recipient" | "suspense", description: string): Promise<string> {
    return this.post(key, s, this.legs(s, p, to), description, this.conversions(s, p));
  }

  /** A held card tip an admin approved: suspense pays the worker (or the venue's pool). */
  releaseFromSuspense(s: CardSplit): Promise<string> {
    return this.post(`card:${s.paymentId}:approved`, s, [
      { kind: AccountKind.SUSPENSE, currency: s.walletCurrency, amount: -s.walletMinor, memo: "review approved" },
      shareLeg(s, s.walletMinor, "card tip"),
    ], `Card tip ${s.tipId} approved`);
  }

  /** A held card tip an admin rejected: its approval's key closed (Ledger.closeApproval). */
  closeApproval(s: CardSplit): Promise<void> {
    return this.ledger.closeApproval(`card:${s.paymentId}:approved`, this.cause(s), s.walletCurrency);
  }

  /**
   * Takes `p` back (a refund, a lost dispute): the reverse of a credit. The
   * worker's part comes `fromHeld` out of suspense (what a dispute set aside)
   * and the rest from the wallet; only a lost dispute may push it below zero.
   */
  reverse(key: string, s: CardSplit, p: Portion, opts: { fromHeld?: bigint; allowOwnerDebt?: boolean; description: string }): Promise<string> {
    const held = opts.fromHeld ?? 0n;
    const legs = this.legs(s, p, "recipient").map((l) => ({ ...l, amount: -l.amount }));
    const share = legs.find((l) => l.kind === shareKind(s))!;
    share.amount += held;
    if (held) legs.push({ kind: AccountKind.SUSPENSE, currency: s.walletCurrency, amount: -held, memo: "disputed amount set aside" });
    return this.post(key, s, legs, opts.description, this.conversions(s, p).map((c) => ({ ...c, from: c.to, to: c.from })), opts.allowOwnerDebt);
  }

  /** Sets a disputed amount aside (worker or pool → suspense), or gives it back (`back`). */
  moveDisputed(key: string, s: CardSplit, amountMinor: bigint, back: boolean): Promise<string> {
    const sign = back ? 1n : -1n;
    return this.post(key, s, [
      shareLeg(s, sign * amountMinor, back ? "dispute won" : "dispute opened"),
      { kind: AccountKind.SUSPENSE, currency: s.walletCurrency, amount: -sign * amountMinor, memo: back ? "dispute won" : "disputed amount set aside" },
    ], `Card tip ${s.tipId} ${back ? "dispute won" : "disputed"}`);
  }

  /**
   * The provider's own fee on a balance transaction: it keeps it out of what it
   * owes us (clearing) and it is the platform's cost (fees). Negative fees (a
   * dispute fee given back) post the other way.
   */
  async providerFee(key: string, provider: "stripe" | "paypal", currency: string, feeMinor: bigint, reference: string): Promise<string> {
    const [clearing, fees] = await Promise.all([
      this.ledger.account(clearingKind(provider), "", currency),
      this.ledger.account(AccountKind.PLATFORM_FEES, "", currency),
    ]);
    return this.ledger.postEntry({
      idempotencyKey: key,
      cause: { cause: { case: "adjustmentTicket", value: `${provider}-fee:${reference}` } },
      postings: [
        { accountId: clearing, amount: { currency, amountMinor: feeMinor }, memo: `${provider} fee ${reference}` },
        { accountId: fees, amount: { currency, amountMinor: -feeMinor }, memo: `${provider} fee` },
      ],
      description: `${provider} fee on ${reference}`,
    });
  }
}
