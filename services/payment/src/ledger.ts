// The wallet service, as payment uses it. Every write carries an idempotency
// key, so a call repeated after a crash or a lost answer changes nothing.
import assert from "node:assert/strict";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { type Client, Code, ConnectError, createClient } from "@connectrpc/connect";
import { asConnectError, b2cFee, BoundedMap, callerHeaders, clockOf, ConcurrentChangeError, DependencyUnavailableError, InvalidStateError, type MoneyAmount, publicTipAmount, quoteTip, type ServiceContext } from "@ttip/runtime";
import { AccountKind, LimitKind, OwnerKind, PaymentRail, type FeeQuote } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { type PostEntryRequestSchema, WalletInternalService, WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { FeeSchedules } from "./fee-schedules.js";
import { kes } from "./money.js";

/** How many account ids a replica remembers (a key and a UUID each: a few MB at most); the oldest goes first, asked of wallet again when needed. */
const KNOWN_ACCOUNTS_MAX = 100_000;

/** How many workers known to have a KES wallet a replica remembers from quotes (a UUID each: a few MB at most); the oldest goes first. */
const KNOWN_KES_WORKERS_MAX = 100_000;

/** The key of an account id in a replica's memo (account(), landsInKes). */
const accountKey = (kind: AccountKind, ownerId: string, currency: string) => `${kind}:${ownerId}:${currency}`;

/** Entries per PostEntries call at most: the contract's limit. */
export const POST_ENTRIES_MAX = 100;

/**
 * How long wallet has to answer a call posting entries (PostEntry, PostEntries) unless configured:
 * one statement's work, with room for a busy database. See PaymentConfig.walletPostEntryTimeoutMs.
 */
export const POST_ENTRY_TIMEOUT_MS = 5_000;

/**
 * How long wallet has to answer a payout's calls: on its hold (place, settle, release) and the
 * reads an automatic payout's amount comes from (balance, withdrawal limits); each one short
 * transaction there, with room for a busy database. Past it the payout's step is retried (the
 * payout stays unsent, or its hold open, for reconciliation; each call is idempotent per payout;
 * an automatic payout not started is started by a later tip), rather than holding the payout, a
 * reconciliation pass working through its payouts one by one, or the worker's later automatic
 * payouts queued behind it, for as long as wallet is stuck.
 */
const PAYOUT_CALL_TIMEOUT_MS = 5_000;

/**
 * How long wallet has to answer the reads a tip's quote comes from (its fee schedules, a quote, a
 * conversion): one short read there, with room for a busy database. Past it the quote fails
 * UNAVAILABLE naming the call (walletDidNotAnswer) and the tip is refused before anything of it is
 * stored, to be retried with the same key, rather than holding the customer's CreateTip (and every
 * tip waiting on the same fee schedules' load) for as long as wallet is stuck.
 */
const QUOTE_CALL_TIMEOUT_MS = 5_000;

/**
 * A wallet call's failure past the deadline we gave it (`timeoutMs`) as UNAVAILABLE naming the
 * call, to retry (DEADLINE_EXCEEDED would read as the caller's own deadline); any other as it is.
 */
export function walletDidNotAnswer(method: string, timeoutMs: number): (err: unknown) => never {
  return (err) => {
    if (asConnectError(err).code !== Code.DeadlineExceeded) throw err;
    throw new DependencyUnavailableError(`wallet did not answer ${method} within ${timeoutMs} ms; retry`);
  };
}

/**
 * A held tip's approval (its entry under the approval's key) refused because a rejection closed
 * that key first (Ledger.closeApproval): the rejection decided and nothing was paid, which wallet's
 * bare "idempotency_key: already used" does not say. FAILED_PRECONDITION saying so; any other
 * failure as it is. An approval's entry is the same at every try (from the tip's row), so a key
 * holding another entry holds the rejection's.
 */
export function approvalRefused(err: unknown): never {
  if (asConnectError(err).code !== Code.AlreadyExists) throw err;
  throw new InvalidStateError("tip_id: a rejection of this tip came first (it closed the tip's approval): nothing was paid to the worker; if the tip still shows held, reject it to finish");
}

/** EnsureAccount's deadline unless configured: see PaymentConfig.walletEnsureAccountTimeoutMs. */
export const ENSURE_ACCOUNT_TIMEOUT_MS = 5_000;

/** A wallet entry to post, as PostEntry takes it. */
export type EntryToPost = MessageInitShape<typeof PostEntryRequestSchema>;

/** Who a tip is for: one worker, or a venue's pool (shared by the venue's split rule). */
export type TipRecipient = { workerId: string } | { venueId: string };

/** The key of the entry booking what M-Pesa paid for a payout beyond (or short of) its amount. */
export const paidDifferenceKey = (payoutId: string) => `payout:${payoutId}:paid-difference`;

export class Ledger {
  private readonly internal: Client<typeof WalletInternalService>;
  private readonly user: Client<typeof WalletService>;
  private readonly accounts = new BoundedMap<string, string>(KNOWN_ACCOUNTS_MAX);
  /** Workers wallet said have a KES wallet (QuoteTipFees): true for good; the oldest forgotten first, asked again. */
  private readonly kesWorkers = new BoundedMap<string, true>(KNOWN_KES_WORKERS_MAX);
  /** Wallet's fee schedules, copied: most tips are quoted here, without a call. */
  readonly feeSchedules: FeeSchedules;

  constructor(
    ctx: ServiceContext,
    /** EnsureAccount's deadline, read per call (the config may change). */
    private readonly ensureAccountTimeoutMs: () => number = () => ENSURE_ACCOUNT_TIMEOUT_MS,
    /** PostEntry's and PostEntries' deadline, read per call. */
    private readonly postEntryTimeoutMs: () => number = () => POST_ENTRY_TIMEOUT_MS,
    /** The deadline of a payout's calls (its hold, its reads of balance and limits), read per call. */
    private readonly payoutCallTimeoutMs: () => number = () => PAYOUT_CALL_TIMEOUT_MS,
  ) {
    this.internal = createClient(WalletInternalService, ctx.peers("wallet"));
    this.user = createClient(WalletService, ctx.peers("wallet"));
    const loadFeeSchedules = (currency: string) =>
      this.internal.loadFeeSchedules({ currency }, { timeoutMs: QUOTE_CALL_TIMEOUT_MS }).catch(walletDidNotAnswer("LoadFeeSchedules", QUOTE_CALL_TIMEOUT_MS));
    this.feeSchedules = new FeeSchedules(async (currency) => (await loadFeeSchedules(currency)).schedules, clockOf(ctx), ctx.metrics);
  }

  /** Account ids never change for a (kind, owner, currency): cached after the first answer, up to KNOWN_ACCOUNTS_MAX. */
  async account(kind: AccountKind, ownerId = "", currency = "KES"): Promise<string> {
    const key = accountKey(kind, ownerId, currency);
    const known = this.accounts.get(key);
    if (known) return known;
    const ownerKind = !ownerId ? OwnerKind.PLATFORM : kind === AccountKind.VENUE_POOL ? OwnerKind.VENUE : OwnerKind.WORKER;
    const timeoutMs = this.ensureAccountTimeoutMs();
    const { account } = await this.internal.ensureAccount({ kind, ownerKind, ownerId, currency }, { timeoutMs }).catch((err: unknown) => {
      // Our deadline, not the caller's: ABORTED as wallet answers its own bounded lock wait, to try again.
      if (asConnectError(err).code !== Code.DeadlineExceeded) throw err;
      throw new ConcurrentChangeError(`wallet did not answer EnsureAccount within ${timeoutMs} ms; retry`);
    });
    if (!account?.accountId) throw new Error("wallet EnsureAccount answered without an account");
    this.accounts.set(key, account.accountId);
    return account.accountId;
  }

  /**
   * An M-Pesa tip's quote, always here and in KES: its money is posted to the recipient's KES
   * account whatever other wallets they hold (creditTip), so no conversion to another wallet's
   * currency may shape what they receive.
   */
  async quoteTip(amountMinor: bigint, customerCoversFee: boolean): Promise<FeeQuote> {
    return this.quoteHere(kes(amountMinor), PaymentRail.MPESA, customerCoversFee);
  }

  /**
   * A card tip's quote: what wallet's QuoteTipFees answers (a card tip is credited in the
   * worker's wallet currency), computed here from the copy of the fee schedules when it
   * lands in KES without conversion: a KES tip to a venue's pool or to a worker known to
   * have a KES wallet. Anything else (a conversion needs wallet's rates; a worker not
   * known here) asks wallet.
   */
  async quote(amount: MoneyAmount, rail: PaymentRail, recipient: TipRecipient, customerCoversFee: boolean): Promise<FeeQuote> {
    if (amount.currency === "KES" && this.landsInKes(recipient)) return this.quoteHere(amount, rail, customerCoversFee);
    // Wallet picks the currency among the worker wallets of the id (a venue's id has none: KES).
    const workerId = "workerId" in recipient ? recipient.workerId : recipient.venueId;
    const { quote, workerWalletCurrencies } = await this.internal
      .quoteTipFees({ amount, rail, customerCoversFee, workerId }, { timeoutMs: QUOTE_CALL_TIMEOUT_MS })
      .catch(walletDidNotAnswer("QuoteTipFees", QUOTE_CALL_TIMEOUT_MS));
    if (!quote?.customerPays || !quote.workerReceives || !quote.platformFee || !quote.processingFee) throw new Error("wallet QuoteTipFees answered without a quote");
    if ("workerId" in recipient && workerWalletCurrencies.includes("KES")) {
      this.kesWorkers.set(recipient.workerId, true);
    }
    return quote;
  }

  /** `amount` in KES minor units at wallet's rate now (a card tip's limit when neither its currency nor its wallet's is KES). */
  async inKes(amount: MoneyAmount): Promise<bigint> {
    if (amount.currency === "KES") return amount.amountMinor;
    const { conversion } = await this.internal
      .convertAmount({ amount, toCurrency: "KES" }, { timeoutMs: QUOTE_CALL_TIMEOUT_MS })
      .catch(walletDidNotAnswer("ConvertAmount", QUOTE_CALL_TIMEOUT_MS));
    if (!conversion?.to) throw new Error("wallet ConvertAmount answered without a conversion");
    return conversion.to.amountMinor;
  }

  /**
   * Whether the tip lands in KES as wallet would choose (tipWalletCurrency):
   * a venue's pool always (wallet finds no worker wallets for its id); a
   * worker once this replica has had their KES wallet from EnsureAccount or
   * heard of it with a quote (wallets are never deleted, so that stays true).
   */
  private landsInKes(recipient: TipRecipient): boolean {
    if (!("workerId" in recipient)) return true;
    return this.kesWorkers.has(recipient.workerId) || this.accounts.has(accountKey(AccountKind.WORKER_WALLET, recipient.workerId, "KES"));
  }

  /** A KES tip's quote from the copy of the fee schedules, with no conversion. */
  private async quoteHere(amount: MoneyAmount, rail: PaymentRail, customerCoversFee: boolean): Promise<FeeQuote> {
    // The bounds wallet checks before its arithmetic (callers have checked them already).
    publicTipAmount(amount, "amount", rail === PaymentRail.CARD ? "card" : "mpesa");
    return quoteTip(await this.feeSchedules.inForce("KES"), amount.amountMinor, rail, customerCoversFee);
  }

  /** The account a confirmed tip lands in: the worker's wallet, or the venue's pool for a shared tip. */
  recipientAccount(recipient: TipRecipient): Promise<string> {
    return "workerId" in recipient
      ? this.account(AccountKind.WORKER_WALLET, recipient.workerId)
      : this.account(AccountKind.VENUE_POOL, recipient.venueId);
  }

  /** The accounts an M-Pesa tip's money moves between: M-Pesa clearing, the recipient's, the platform's fees. */
  private tipAccounts(recipient: TipRecipient): Promise<[string, string, string]> {
    return Promise.all([this.account(AccountKind.MPESA_CLEARING), this.recipientAccount(recipient), this.account(AccountKind.PLATFORM_FEES)]);
  }

  /**
   * A confirmed M-Pesa payment's entry: the clearing account gives what the
   * customer paid, the worker (or the venue's pool) gets the tip net of fees
   * and the platform the rest. Posted once per key (the receipt number), whoever
   * asks again: STK callbacks, STK queries and C2B confirmations all credit through here.
   */
  async tipCreditEntry(input: { key: string; receipt: string; recipient: TipRecipient; chargedMinor: bigint; workerMinor: bigint; description: string }): Promise<EntryToPost> {
    const [clearing, recipient, fees] = await this.tipAccounts(input.recipient);
    const feeMinor = input.chargedMinor - input.workerMinor;
    return {
      idempotencyKey: input.key,
      cause: { cause: { case: "mpesaReceipt", value: input.receipt } },
      postings: [
        { accountId: clearing, amount: kes(-input.chargedMinor), memo: `M-Pesa ${input.receipt}` },
        { accountId: recipient, amount: kes(input.workerMinor), memo: "workerId" in input.recipient ? "tip" : "shared tip" },
        ...(feeMinor > 0n ? [{ accountId: fees, amount: kes(feeMinor), memo: "platform fee" }] : []),
      ],
      description: input.description,
    };
  }

  /**
   * An M-Pesa tip's credit (tipCreditEntry) the other way, for its reversal: M-Pesa gives the payer all of it
   * back, so the recipient's part and the platform's fee both go back to clearing. Refused by wallet
   * (FAILED_PRECONDITION) when the recipient's balance no longer holds their part.
   */
  async tipReversalEntry(input: { key: string; creditEntryId: string; receipt: string; recipient: TipRecipient; chargedMinor: bigint; workerMinor: bigint; description: string }): Promise<EntryToPost> {
    const [clearing, recipient, fees] = await this.tipAccounts(input.recipient);
    const feeMinor = input.chargedMinor - input.workerMinor;
    return {
      idempotencyKey: input.key,
      cause: { cause: { case: "reversedEntryId", value: input.creditEntryId } },
      postings: [
        { accountId: clearing, amount: kes(input.chargedMinor), memo: `M-Pesa ${input.receipt} reversed` },
        { accountId: recipient, amount: kes(-input.workerMinor), memo: "tip reversed" },
        ...(feeMinor > 0n ? [{ accountId: fees, amount: kes(-feeMinor), memo: "platform fee given back" }] : []),
      ],
      description: input.description,
    };
  }

  /** Money that arrived but cannot be credited as asked (mismatch, held tip): its entry parking it in suspense. */
  async suspenseEntry(input: { key: string; receipt: string; amountMinor: bigint; description: string; memo?: string }): Promise<EntryToPost> {
    const [clearing, suspense] = await Promise.all([this.account(AccountKind.MPESA_CLEARING), this.account(AccountKind.SUSPENSE)]);
    return {
      idempotencyKey: input.key,
      cause: { cause: { case: "mpesaReceipt", value: input.receipt } },
      postings: [
        { accountId: clearing, amount: kes(-input.amountMinor), memo: `M-Pesa ${input.receipt}` },
        { accountId: suspense, amount: kes(input.amountMinor), memo: input.memo ?? "awaiting review" },
      ],
      description: input.description,
    };
  }

  /**
   * A held tip's parking in suspense (suspenseEntry) undone: the amount back from suspense to M-Pesa clearing,
   * for a hold whose payment never reached clearing a second time. Posted once per key; answers the entry's id.
   */
  async suspenseToClearing(input: { key: string; receipt: string; amountMinor: bigint; description: string; memo?: string }): Promise<string> {
    const [clearing, suspense] = await Promise.all([this.account(AccountKind.MPESA_CLEARING), this.account(AccountKind.SUSPENSE)]);
    return this.postEntry({
      idempotencyKey: input.key,
      cause: { cause: { case: "mpesaReceipt", value: input.receipt } },
      postings: [
        { accountId: suspense, amount: kes(-input.amountMinor), memo: input.memo ?? "hold reversed: the same payment" },
        { accountId: clearing, amount: kes(input.amountMinor), memo: `M-Pesa ${input.receipt}` },
      ],
      description: input.description,
    });
  }

  /** Parks money in suspense (suspenseEntry) at once; answers the entry's id. */
  async toSuspense(input: { key: string; receipt: string; amountMinor: bigint; description: string; memo?: string }): Promise<string> {
    return this.postEntry(await this.suspenseEntry(input));
  }

  /**
   * A held tip's rejection (or a suspense payment's refund): closes the key its approval posts under (`approvalKey`) with an entry
   * that moves nothing (one minor unit into suspense and back out), so that an approval whose
   * answer was lost (its deadline passed after wallet posted it) is found here, and one still on
   * its way to wallet can no longer post. Found: FAILED_PRECONDITION, the rejection refused (the
   * worker has the money: an approval again finishes it). Posted once per key, as any entry.
   */
  async closeApproval(
    approvalKey: string, cause: EntryToPost["cause"], currency = "KES",
    refusal = "tip_id: the tip's approval was posted (its answer was lost); approve it again to finish it",
  ): Promise<void> {
    const suspense = await this.account(AccountKind.SUSPENSE, "", currency);
    const unit = (amountMinor: bigint) => ({ accountId: suspense, amount: { currency, amountMinor }, memo: "review rejected" });
    try {
      await this.postEntry({ idempotencyKey: approvalKey, cause, postings: [unit(1n), unit(-1n)], description: "Review rejected: no approval under this key" });
    } catch (err) {
      if (asConnectError(err).code !== Code.AlreadyExists) throw err;
      throw new InvalidStateError(refusal);
    }
  }

  /**
   * Posts one entry, once per its key; answers its id. Bounded by the configured deadline: past
   * it the call fails DEADLINE_EXCEEDED and is retried as any wallet failure is (reconciliation,
   * the provider's webhook, the admin), the entry posted at most once by its key, rather than
   * holding its caller for as long as wallet is stuck.
   */
  async postEntry(entry: EntryToPost): Promise<string> {
    const { entry: posted } = await this.internal.postEntry(entry, { timeoutMs: this.postEntryTimeoutMs() });
    return posted?.entryId ?? "";
  }

  /**
   * Posts entries together, each once per its key: one outcome per entry, in
   * order: the entry's id, or the error that refused that entry alone (the
   * others are posted all the same). Rejects when nothing could be asked
   * (wallet out of reach): then none is known to be posted.
   */
  async postEntries(entries: EntryToPost[]): Promise<(string | ConnectError)[]> {
    assert(entries.length > 0 && entries.length <= POST_ENTRIES_MAX, "1 to POST_ENTRIES_MAX entries a call");
    try {
      const { results } = await this.internal.postEntries({ entries }, { timeoutMs: this.postEntryTimeoutMs() });
      assert.equal(results.length, entries.length, "one result per entry");
      return results.map((r) => (r.code === 0 ? (r.entry?.entryId ?? "") : new ConnectError(r.message, r.code)));
    } catch (err) {
      // A wallet without the call (a rolling upgrade), or a call it refused as a whole (an
      // entry it found malformed): each alone, so that one fails by itself.
      const code = asConnectError(err).code;
      if (code !== Code.Unimplemented && code !== Code.InvalidArgument) throw err;
      return Promise.all(entries.map((e) => this.postEntry(e).catch((err: unknown) => asConnectError(err))));
    }
  }

  /** A held tip an admin approved: suspense pays the worker and the platform fee. */
  async releaseFromSuspense(input: { key: string; receipt: string; recipient: TipRecipient; chargedMinor: bigint; workerMinor: bigint }): Promise<string> {
    const [suspense, worker, fees] = await Promise.all([
      this.account(AccountKind.SUSPENSE),
      this.recipientAccount(input.recipient),
      this.account(AccountKind.PLATFORM_FEES),
    ]);
    const feeMinor = input.chargedMinor - input.workerMinor;
    return this.postEntry({
      idempotencyKey: input.key,
      cause: { cause: { case: "mpesaReceipt", value: input.receipt } },
      postings: [
        { accountId: suspense, amount: kes(-input.chargedMinor), memo: "approved after review" },
        { accountId: worker, amount: kes(input.workerMinor), memo: "tip" },
        ...(feeMinor > 0n ? [{ accountId: fees, amount: kes(feeMinor), memo: "platform fee" }] : []),
      ],
      description: "Tip approved after review",
    });
  }

  /**
   * What M-Pesa paid for a payout beyond (or short of) its amount, `differenceMinor` (paid − amount), out of payout
   * clearing or into it, as the hold's settlement debited the payout's amount. More sent is the platform's loss
   * (fees → clearing): the worker asked for the payout's amount. Less sent is the worker's, back in their wallet
   * (clearing → wallet): they are charged what reached them. Posted once per payout by its key.
   */
  async payoutPaidDifference(input: { payoutId: string; workerId: string; receipt: string; differenceMinor: bigint }): Promise<string> {
    assert(input.differenceMinor !== 0n, "a difference to book");
    const more = input.differenceMinor > 0n;
    const [other, clearing] = await Promise.all([
      more ? this.account(AccountKind.PLATFORM_FEES) : this.account(AccountKind.WORKER_WALLET, input.workerId),
      this.account(AccountKind.PAYOUT_CLEARING),
    ]);
    return this.postEntry({
      idempotencyKey: paidDifferenceKey(input.payoutId),
      cause: { cause: { case: "payoutId", value: input.payoutId } },
      postings: [
        { accountId: other, amount: kes(-input.differenceMinor), memo: more ? "B2C paid more than the payout" : "B2C paid less than the payout: the rest back" },
        { accountId: clearing, amount: kes(input.differenceMinor), memo: `B2C ${input.receipt}` },
      ],
      description: `Payout ${input.payoutId}: M-Pesa paid ${more ? "more" : "less"} than the payout's amount (${input.receipt})`,
    });
  }

  async placeHold(workerId: string, amountMinor: bigint, payoutId: string): Promise<{ holdId: string; accountId: string }> {
    const accountId = await this.account(AccountKind.WORKER_WALLET, workerId);
    const { hold } = await this.internal.placeHold({ accountId, amount: kes(amountMinor), payoutId, idempotencyKey: `payout-hold:${payoutId}` }, { timeoutMs: this.payoutCallTimeoutMs() });
    if (!hold?.holdId) throw new Error("wallet PlaceHold answered without a hold");
    return { holdId: hold.holdId, accountId };
  }

  /**
   * M-Pesa's B2C charge for a payout, paid by the platform; fixed when the
   * payout is created. What wallet's QuotePayoutFee answers, from the copy of
   * the fee schedules (the band depends on nothing else).
   */
  async payoutFee(amountMinor: bigint): Promise<bigint> {
    return b2cFee(await this.feeSchedules.inForce("KES"), amountMinor);
  }

  /** Returns the settlement's entry id (the first settlement's, when settled before). */
  async settleHold(holdId: string, receipt: string, transferFeeMinor: bigint): Promise<string> {
    const { entry } = await this.internal.settleHold({ holdId, externalReference: receipt, transferFee: kes(transferFeeMinor) }, { timeoutMs: this.payoutCallTimeoutMs() });
    if (!entry?.entryId) throw new Error("wallet SettleHold answered without an entry");
    return entry.entryId;
  }

  async releaseHold(holdId: string, reason: string): Promise<void> {
    await this.internal.releaseHold({ holdId, reason: reason.slice(0, 500) }, { timeoutMs: this.payoutCallTimeoutMs() });
  }

  /** The most the worker may withdraw now under every withdrawal limit (undefined: no limits set). */
  async withdrawalRoom(workerId: string, currency = "KES"): Promise<{ room?: bigint; perWithdrawal?: bigint }> {
    const { limits } = await this.user.getWithdrawalLimits({ currency }, { headers: callerHeaders(workerId, "worker"), timeoutMs: this.payoutCallTimeoutMs() });
    const least = (values: (bigint | undefined)[]) => values.reduce<bigint | undefined>((a, v) => (v === undefined || (a !== undefined && a <= v) ? a : v), undefined);
    const room = least(limits.map((l) => l.remaining?.amountMinor));
    // The most one withdrawal may ever be (the tier's and M-Pesa's), whatever is used today.
    const perWithdrawal = least(limits.filter((l) => l.kind === LimitKind.PER_TRANSACTION || l.kind === LimitKind.MPESA_PER_TRANSACTION).map((l) => l.limit?.amountMinor));
    return { room: room === undefined ? undefined : room < 0n ? 0n : room, perWithdrawal };
  }

  /** What a venue's pool could pay out now; undefined from a wallet that does not say (older than this call's answer). */
  async poolAvailable(venueId: string, currency = "KES"): Promise<bigint | undefined> {
    const { balance } = await this.internal.ensureAccount(
      { kind: AccountKind.VENUE_POOL, ownerKind: OwnerKind.VENUE, ownerId: venueId, currency },
      { timeoutMs: this.payoutCallTimeoutMs() },
    );
    return balance?.available?.amountMinor;
  }

  /** What the worker could withdraw now, asked as the worker (a trusted in-cluster call). */
  async available(workerId: string, currency = "KES"): Promise<bigint> {
    const { balances } = await this.user.getBalance({ currency }, { headers: callerHeaders(workerId, "worker"), timeoutMs: this.payoutCallTimeoutMs() });
    return balances[0]?.available?.amountMinor ?? 0n;
  }
}
