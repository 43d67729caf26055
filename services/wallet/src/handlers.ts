import { create } from "@bufbuild/protobuf";
import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type ConnectRouter, type ServiceImpl } from "@connectrpc/connect";
import { assertCurrency, auditAdminAction, decodePageToken, fieldError, InvalidStateError, keysetPage, NotFoundError, pageSize, type Pool, positionParts, publicTipAmount, type Queryable, requireCaller, type ServiceContext, withTransaction } from "@ttip/runtime";
import { AuditAction } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { StatementFormat, WalletAdminService, WalletInternalService, WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import {
  AccountKind,
  FxConversionSchema,
  LimitKind,
  OwnerKind,
  PaymentRail,
  SettlementMode,
  TransactionKind,
  WithdrawalLimitSchema,
  type FxConversion,
} from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { b2cFee, createSchedule, currentSchedule, currentScheduleAndWallets, feeScheduleSummary, listSchedules, quoteTip } from "./fees.js";
import type { RateSource } from "./fx.js";
import { placeHold, releaseHold, settleHold, withdrawalLimits } from "./holds.js";
import { ensureAccount, getAccount, loadEntry, postEntry, reverseEntry, toAccount, type AccountRow } from "./ledger.js";
import { convertMinor, money } from "./money.js";
import { getPoolRules } from "./pools.js";
import { getPoolTakings, postPoolDistribution, reversePoolDistribution } from "./pool-periods.js";
import { decodeHistoryToken, listTransactions, statement, statementCsv, toBalance, trialBalance } from "./queries.js";


/** Why the old pool RPCs refuse: splits belong to the venue service now. */
const VENUE_OWNS_SPLITS =
  "pool splits are made by the venue service: use ttip.venue.v1.VenueService (SetSplitRule, PreviewDistribution, ConfirmDistribution); SetPoolRules and DistributePool are deprecated";

/** M-Pesa's B2C fee for a payout of `amount` under the current schedule. */
async function payoutFee(db: Pool, amount: { amountMinor: bigint; currency: string }) {
  assertCurrency(amount.currency, "amount.currency");
  const schedule = await currentSchedule(db, amount.currency);
  return { fee: money(b2cFee(schedule, amount.amountMinor), amount.currency), feeScheduleVersion: schedule.version };
}

async function workerWallets(db: Queryable, workerId: string, currency: string): Promise<AccountRow[]> {
  const { rows } = await db.query<AccountRow>(
    `SELECT * FROM wallet.accounts WHERE kind = $1 AND owner_kind = $2 AND owner_id = $3 AND ($4 = '' OR currency = $4) ORDER BY currency`,
    [AccountKind.WORKER_WALLET, OwnerKind.WORKER, workerId, currency],
  );
  return rows;
}

/** The worker's wallet currency (of `currencies`, their wallets'): KES when they have one or none, else their first. */
function walletCurrency(currencies: string[]): string {
  return currencies.includes("KES") ? "KES" : (currencies[0] ?? "KES");
}

async function conversion(rates: RateSource, amountMinor: bigint, from: string, to: string): Promise<FxConversion> {
  assertCurrency(from, "amount.currency");
  assertCurrency(to, "to_currency");
  const r = await rates.rate(from, to);
  return create(FxConversionSchema, {
    from: money(amountMinor, from),
    to: money(convertMinor(amountMinor, from, to, r.rate), to),
    rate: r.rate,
    rateSource: r.source,
    rateTime: timestampFromDate(r.time),
  });
}

async function quote(db: Pool, rates: RateSource, req: { amount?: { amountMinor: bigint; currency: string }; rail: number; customerCoversFee: boolean; workerId: string }) {
  const amount = req.amount!;
  // A public RPC: the amount is bounded like a real tip on its rail before any arithmetic.
  publicTipAmount(amount, "amount", req.rail === PaymentRail.CARD ? "card" : "mpesa");
  const { schedule, walletCurrencies } = await currentScheduleAndWallets(db, amount.currency, req.workerId);
  const q = quoteTip(schedule, amount.amountMinor, req.rail, req.customerCoversFee);
  const target = walletCurrency(walletCurrencies);
  if (target !== amount.currency) {
    q.conversion = await conversion(rates, q.workerReceives!.amountMinor, amount.currency, target);
    q.workerReceives = q.conversion.to;
  }
  return q;
}

/** What every wallet handler shares: the pool, a transaction on it, and the exchange rates. */
interface WalletHandlerContext {
  pool: Pool;
  tx: <T>(fn: (db: Queryable) => Promise<T>) => Promise<T>;
  rates: RateSource;
}

/** Every RPC of the wallet services, one factory per RPC below. */
export function registerWallet(router: ConnectRouter, ctx: ServiceContext, rates: RateSource): void {
  const { pool } = ctx;
  const h: WalletHandlerContext = { pool, tx: (fn) => withTransaction(pool, fn), rates };

  router.service(WalletService, {
    getBalance: getBalanceHandler(h),
    listTransactions: listTransactionsHandler(h),
    getStatement: getStatementHandler(h),
    quoteFees: quoteFeesHandler(h),
    quoteWithdrawalFee: quoteWithdrawalFeeHandler(h),
    getWithdrawalLimits: getWithdrawalLimitsHandler(h),
  });

  router.service(WalletAdminService, {
    getTrialBalance: getTrialBalanceHandler(h),
    getAccount: getAccountHandler(h),
    listAccounts: listAccountsHandler(h),
    getJournalEntry: getJournalEntryHandler(h),
    reverseEntry: reverseEntryHandler(h),
    createFeeSchedule: createFeeScheduleHandler(h),
    listFeeSchedules: listFeeSchedulesHandler(h),
    setTierLimits: setTierLimitsHandler(h),
    setSettlementMode: setSettlementModeHandler(h),
  });

  router.service(WalletInternalService, {
    ensureAccount: ensureAccountHandler(h),
    postEntry: postEntryHandler(h),
    placeHold: placeHoldHandler(h),
    settleHold: settleHoldHandler(h),
    releaseHold: releaseHoldHandler(h),
    quoteTipFees: quoteTipFeesHandler(h),
    convertAmount: convertAmountHandler(h),
    setPoolRules: setPoolRulesHandler(h),
    getPoolRules: getPoolRulesHandler(h),
    distributePool: distributePoolHandler(h),
    getPoolTakings: getPoolTakingsHandler(h),
    postPoolDistribution: postPoolDistributionHandler(h),
    reversePoolDistribution: reversePoolDistributionHandler(h),
    quotePayoutFee: quotePayoutFeeHandler(h),
    getSettlementMode: getSettlementModeHandler(h),
  });
}

function getBalanceHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletService>["getBalance"] {
  const { pool } = h;
  return async function (req, hctx) {
    const caller = requireCaller(hctx);
    return { balances: (await workerWallets(pool, caller.subject, req.currency)).map(toBalance) };
  };
}

function listTransactionsHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletService>["listTransactions"] {
  const { pool } = h;
  return async function (req, hctx) {
    const caller = requireCaller(hctx);
    const wallets = await workerWallets(pool, caller.subject, req.currency);
    const { transactions, next } = await listTransactions(pool, {
      accountIds: wallets.map((w) => w.account_id),
      kinds: req.kinds as TransactionKind[],
      from: req.from ? timestampDate(req.from) : undefined,
      to: req.to ? timestampDate(req.to) : undefined,
      pageSize: pageSize(req.page),
      cursor: decodeHistoryToken(req.page?.pageToken),
    });
    return { transactions, page: { nextPageToken: next } };
  };
}

function getStatementHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletService>["getStatement"] {
  const { pool } = h;
  return async function (req, hctx) {
    const caller = requireCaller(hctx);
    const [account] = await workerWallets(pool, caller.subject, req.currency);
    if (!account) throw new NotFoundError(`currency: you have no ${req.currency} wallet`);
    const s = await statement(pool, account, req.year, req.month);
    return {
      openingBalance: money(s.opening, req.currency),
      closingBalance: money(s.closing, req.currency),
      rows: s.rows,
      csv: req.format === StatementFormat.CSV ? new TextEncoder().encode(statementCsv(s, req.currency)) : new Uint8Array(),
    };
  };
}

function quoteFeesHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletService>["quoteFees"] {
  const { pool, rates } = h;
  return async function (req) {
    return { quote: await quote(pool, rates, req) };
  };
}

function quoteWithdrawalFeeHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletService>["quoteWithdrawalFee"] {
  const { pool } = h;
  return async function (req) {
    return payoutFee(pool, req.amount!);
  };
}

function getWithdrawalLimitsHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletService>["getWithdrawalLimits"] {
  const { pool } = h;
  return async function (req, hctx) {
    const caller = requireCaller(hctx);
    // A read: the wallet is looked up, not created.
    const [account] = await workerWallets(pool, caller.subject, req.currency);
    return withdrawalLimits(pool, account ?? { owner_id: caller.subject, currency: req.currency });
  };
}

function getTrialBalanceHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletAdminService>["getTrialBalance"] {
  const { pool } = h;
  return async function (req) {
    return trialBalance(pool, req.asOf ? timestampDate(req.asOf) : undefined);
  };
}

function getAccountHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletAdminService>["getAccount"] {
  const { pool } = h;
  return async function (req) {
    const account = await getAccount(pool, req.accountId);
    if (!account) throw new NotFoundError(`account_id: no account ${req.accountId}`);
    return { account: toAccount(account), balance: toBalance(account) };
  };
}

function listAccountsHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletAdminService>["listAccounts"] {
  const { pool } = h;
  return async function (req) {
    const size = pageSize(req.page);
    const after = decodePageToken(req.page?.pageToken, ([id, ...rest]) => (rest.length ? undefined : positionParts.uuid(id))) ?? "";
    const { rows } = await pool.query<AccountRow>(
      `SELECT * FROM wallet.accounts
        WHERE ($1 = 0 OR kind = $1) AND ($2 = '' OR owner_id = $2) AND ($3 = '' OR account_id > $3::uuid)
        ORDER BY account_id LIMIT $4`,
      [req.kind, req.ownerId, after, size + 1],
    );
    const { items, nextPageToken } = keysetPage(rows, size, (r) => [r.account_id]);
    return {
      accounts: items.map(toAccount),
      page: { nextPageToken },
    };
  };
}

function getJournalEntryHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletAdminService>["getJournalEntry"] {
  const { pool } = h;
  return async function (req) {
    const entry = await loadEntry(pool, req.entryId);
    if (!entry) throw new NotFoundError(`entry_id: no entry ${req.entryId}`);
    return { entry };
  };
}

function reverseEntryHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletAdminService>["reverseEntry"] {
  const { tx } = h;
  return async function (req, hctx) {
    const { entry } = await tx(async (db) => {
      const r = await reverseEntry(db, req.entryId, req.idempotencyKey, req.reason);
      if (r.created) {
        await auditAdminAction(db, "wallet", hctx, { action: AuditAction.LEDGER_ENTRY_REVERSED, target: `entry:${req.entryId}`, detail: `by ${r.entry.entryId}: ${req.reason}` });
      }
      return r;
    });
    return { reversal: entry };
  };
}

function createFeeScheduleHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletAdminService>["createFeeSchedule"] {
  const { tx } = h;
  return async function (req, hctx) {
    const schedule = await tx((db) =>
      createSchedule(db, req.schedule!, req.idempotencyKey, (db, s) =>
        auditAdminAction(db, "wallet", hctx, {
          action: AuditAction.FEE_SCHEDULE_CREATED,
          target: `fee_schedule:${s.currency}:v${s.version}`,
          detail: feeScheduleSummary(s),
        }),
      ),
    );
    return { schedule };
  };
}

function listFeeSchedulesHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletAdminService>["listFeeSchedules"] {
  const { pool } = h;
  return async function (req) {
    return { schedules: await listSchedules(pool, req.currency) };
  };
}

function setTierLimitsHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletAdminService>["setTierLimits"] {
  const { tx } = h;
  return async function (req, hctx) {
    const currency = req.perTransaction!.currency;
    assertCurrency(currency, "per_transaction.currency");
    if (req.perTransaction!.amountMinor <= 0n) throw fieldError("per_transaction", "must be greater than zero");
    await tx(async (db) => {
      await db.query(
        `INSERT INTO wallet.tier_limits (tier, currency, per_transaction_minor, daily_minor, monthly_minor) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (tier, currency) DO UPDATE SET per_transaction_minor = $3, daily_minor = $4, monthly_minor = $5, updated_at = now()`,
        [req.tier, currency, req.perTransaction!.amountMinor, req.daily!.amountMinor, req.monthly!.amountMinor],
      );
      await auditAdminAction(db, "wallet", hctx, {
        action: AuditAction.TIER_LIMITS_SET,
        target: `tier:${req.tier}`,
        detail: `${currency}: per transaction ${req.perTransaction!.amountMinor}, daily ${req.daily!.amountMinor}, monthly ${req.monthly!.amountMinor} (minor units)`,
      });
    });
    const limit = (kind: LimitKind, amountMinor: bigint) =>
      create(WithdrawalLimitSchema, { kind, limit: money(amountMinor, currency), used: money(0n, currency), remaining: money(amountMinor, currency) });
    return {
      limits: [
        limit(LimitKind.PER_TRANSACTION, req.perTransaction!.amountMinor),
        limit(LimitKind.DAILY, req.daily!.amountMinor),
        limit(LimitKind.MONTHLY, req.monthly!.amountMinor),
      ],
    };
  };
}

function setSettlementModeHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletAdminService>["setSettlementMode"] {
  const { tx } = h;
  return async function (req, hctx) {
    await tx(async (db) => {
      await db.query(
        `INSERT INTO wallet.settlement_modes (owner_kind, owner_id, mode) VALUES ($1, $2, $3)
         ON CONFLICT (owner_kind, owner_id) DO UPDATE SET mode = $3, updated_at = now()`,
        [req.ownerKind, req.ownerId, req.mode],
      );
      await auditAdminAction(db, "wallet", hctx, {
        action: AuditAction.SETTLEMENT_MODE_SET,
        target: `${OwnerKind[req.ownerKind].toLowerCase()}:${req.ownerId}`,
        detail: SettlementMode[req.mode].toLowerCase().replace(/_/g, " "),
      });
    });
    return { mode: req.mode };
  };
}

function ensureAccountHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletInternalService>["ensureAccount"] {
  const { pool } = h;
  return async function (req) {
    return { account: toAccount(await ensureAccount(pool, req.kind, req.ownerKind, req.ownerId, req.currency)) };
  };
}

function postEntryHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletInternalService>["postEntry"] {
  const { tx } = h;
  return async function (req) {
    return tx((db) =>
      postEntry(db, {
        idempotencyKey: req.idempotencyKey,
        cause: req.cause!,
        postings: req.postings.map((p, i) => {
          if (!p.amount) throw fieldError(`postings[${i}].amount`, `required`);
          return { accountId: p.accountId, amountMinor: p.amount.amountMinor, currency: p.amount.currency, memo: p.memo };
        }),
        conversions: req.conversions,
        description: req.description,
        allowOwnerDebt: req.allowOwnerDebt,
      }),
    );
  };
}

function placeHoldHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletInternalService>["placeHold"] {
  const { tx } = h;
  return async function (req) {
    const { hold, account } = await tx((db) =>
      placeHold(db, {
        accountId: req.accountId,
        amountMinor: req.amount!.amountMinor,
        currency: req.amount!.currency,
        payoutId: req.payoutId,
        idempotencyKey: req.idempotencyKey,
      }),
    );
    return { hold, balance: toBalance(account) };
  };
}

function settleHoldHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletInternalService>["settleHold"] {
  const { tx } = h;
  return async function (req) {
    return tx((db) => settleHold(db, req.holdId, req.externalReference, req.transferFee?.amountMinor));
  };
}

function releaseHoldHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletInternalService>["releaseHold"] {
  const { tx } = h;
  return async function (req) {
    return { hold: await tx((db) => releaseHold(db, req.holdId, req.reason)) };
  };
}

function quoteTipFeesHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletInternalService>["quoteTipFees"] {
  const { pool, rates } = h;
  return async function (req) {
    return { quote: await quote(pool, rates, req) };
  };
}

function convertAmountHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletInternalService>["convertAmount"] {
  const { rates } = h;
  return async function (req) {
    return { conversion: await conversion(rates, req.amount!.amountMinor, req.amount!.currency, req.toCurrency) };
  };
}

function setPoolRulesHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletInternalService>["setPoolRules"] {
  return async function () {
    throw new InvalidStateError(VENUE_OWNS_SPLITS);
  };
}

function getPoolRulesHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletInternalService>["getPoolRules"] {
  const { pool } = h;
  return async function (req) {
    return { rules: await getPoolRules(pool, req.venueId) };
  };
}

function distributePoolHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletInternalService>["distributePool"] {
  return async function () {
    throw new InvalidStateError(VENUE_OWNS_SPLITS);
  };
}

function getPoolTakingsHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletInternalService>["getPoolTakings"] {
  const { pool } = h;
  return async function (req) {
    const t = await getPoolTakings(pool, req.venueId, req.currency, timestampDate(req.start!), timestampDate(req.end!));
    return { collected: money(t.collectedMinor, req.currency), credits: t.credits, overlappingDistributionId: t.overlappingDistributionId };
  };
}

function postPoolDistributionHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletInternalService>["postPoolDistribution"] {
  const { tx } = h;
  return async function (req) {
    return tx((db) =>
      postPoolDistribution(db, {
        venueId: req.venueId,
        currency: req.currency,
        start: timestampDate(req.start!),
        end: timestampDate(req.end!),
        distributionId: req.distributionId,
        shares: req.shares.map((s, i) => {
          if (s.amount!.currency !== req.currency) throw fieldError(`shares[${i}].amount.currency`, `must be ${req.currency}`);
          return { workerId: s.workerId, amountMinor: s.amount!.amountMinor, memo: s.memo };
        }),
        idempotencyKey: req.idempotencyKey,
        description: req.description,
      }),
    );
  };
}

function reversePoolDistributionHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletInternalService>["reversePoolDistribution"] {
  const { tx } = h;
  return async function (req) {
    return { reversal: await tx((db) => reversePoolDistribution(db, req.entryId, req.idempotencyKey, req.reason)) };
  };
}

function quotePayoutFeeHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletInternalService>["quotePayoutFee"] {
  const { pool } = h;
  return async function (req) {
    return payoutFee(pool, req.amount!);
  };
}

function getSettlementModeHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletInternalService>["getSettlementMode"] {
  const { pool } = h;
  return async function (req) {
    const { rows } = await pool.query<{ mode: number }>(
      `SELECT mode FROM wallet.settlement_modes WHERE owner_kind = $1 AND owner_id = $2`,
      [req.ownerKind, req.ownerId],
    );
    // Pass-through is the default: storing money for later needs a licence.
    return { mode: rows[0]?.mode ?? SettlementMode.PASS_THROUGH };
  };
}

