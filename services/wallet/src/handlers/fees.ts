import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type ServiceImpl } from "@connectrpc/connect";
import { assertCurrency, auditAdminAction, b2cFee, money, type Pool, publicTipAmount, quoteTip, tipWalletCurrency } from "@ttip/runtime";
import { AuditAction } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { WalletAdminService, WalletInternalService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { FxConversionSchema, PaymentRail, type FxConversion } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { createSchedule, currentSchedule, currentScheduleAndWallets, feeScheduleSummary, listSchedules } from "../fees.js";
import type { RateSource } from "../fx.js";
import { convertMinor } from "../money.js";
import { type WalletAreaHandlers, type WalletHandlerContext } from "./context.js";

/** Fees and conversions: quotes for tips and payouts, the fee schedules behind them, and FX. */
export function feeHandlers(h: WalletHandlerContext): WalletAreaHandlers {
  return {
    public: {
      quoteFees: quoteFeesHandler(h),
      quoteWithdrawalFee: payoutFeeHandler(h),
    },
    admin: {
      createFeeSchedule: createFeeScheduleHandler(h),
      listFeeSchedules: listFeeSchedulesHandler(h),
    },
    internal: {
      // The same answers as the public quotes, for payment to charge by.
      quoteTipFees: quoteTipFeesHandler(h),
      quotePayoutFee: payoutFeeHandler(h),
      convertAmount: convertAmountHandler(h),
      loadFeeSchedules: loadFeeSchedulesHandler(h),
    },
  };
}

/** QuoteFees: the fees of a tip, as the payer would be charged. */
function quoteFeesHandler(h: WalletHandlerContext) {
  const { pool, rates } = h;
  return async function (req: QuoteRequest) {
    return { quote: (await quote(pool, rates, req)).quote };
  };
}

/** QuoteTipFees: QuoteFees for payment, with the worker's wallet currencies that chose the target (payment remembers a KES one). */
function quoteTipFeesHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletInternalService>["quoteTipFees"] {
  const { pool, rates } = h;
  return async function (req) {
    const { quote: q, walletCurrencies } = await quote(pool, rates, req);
    return { quote: q, workerWalletCurrencies: walletCurrencies };
  };
}

/** QuoteWithdrawalFee and QuotePayoutFee: the B2C fee of a payout. */
function payoutFeeHandler(h: WalletHandlerContext) {
  const { pool } = h;
  return async function (req: { amount?: { amountMinor: bigint; currency: string } }) {
    return payoutFee(pool, req.amount!);
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

/** Every version of the schedules, future ones included: payment's copy, to quote tips without asking per tip. */
function loadFeeSchedulesHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletInternalService>["loadFeeSchedules"] {
  const { pool } = h;
  return async function (req) {
    return { schedules: await listSchedules(pool, req.currency) };
  };
}

function convertAmountHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletInternalService>["convertAmount"] {
  const { rates } = h;
  return async function (req) {
    return { conversion: await conversion(rates, req.amount!.amountMinor, req.amount!.currency, req.toCurrency) };
  };
}

/** M-Pesa's B2C fee for a payout of `amount` under the current schedule. */
async function payoutFee(db: Pool, amount: { amountMinor: bigint; currency: string }) {
  assertCurrency(amount.currency, "amount.currency");
  const schedule = await currentSchedule(db, amount.currency);
  return { fee: money(b2cFee(schedule, amount.amountMinor), amount.currency), feeScheduleVersion: schedule.version };
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

/** What a tip's fee quote is asked with (QuoteFeesRequest and QuoteTipFeesRequest alike). */
type QuoteRequest = { amount?: { amountMinor: bigint; currency: string }; rail: number; customerCoversFee: boolean; workerId: string };

async function quote(db: Pool, rates: RateSource, req: QuoteRequest) {
  const amount = req.amount!;
  // A public RPC: the amount is bounded like a real tip on its rail before any arithmetic.
  publicTipAmount(amount, "amount", req.rail === PaymentRail.CARD ? "card" : "mpesa");
  const { schedule, walletCurrencies } = await currentScheduleAndWallets(db, amount.currency, req.workerId);
  const q = quoteTip(schedule, amount.amountMinor, req.rail, req.customerCoversFee);
  const target = tipWalletCurrency(walletCurrencies);
  if (target !== amount.currency) {
    q.conversion = await conversion(rates, q.workerReceives!.amountMinor, amount.currency, target);
    q.workerReceives = q.conversion.to;
  }
  return { quote: q, walletCurrencies };
}
