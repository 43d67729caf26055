import { create } from "@bufbuild/protobuf";
import { type ServiceImpl } from "@connectrpc/connect";
import { assertCurrency, auditAdminAction, fieldError, money } from "@ttip/runtime";
import { AuditAction } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { WalletAdminService, WalletInternalService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { LimitKind, OwnerKind, SettlementMode, WithdrawalLimitSchema } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { putSettlementMode, settlementModeOf } from "../stores/settlement-modes.js";
import { putTierLimits } from "../stores/tier-limits.js";
import type { WalletAreaHandlers, WalletHandlerContext } from "./context.js";

/** Per tier withdrawal limits and each owner's settlement mode. */
export function policyHandlers(h: WalletHandlerContext): WalletAreaHandlers {
  return {
    admin: {
      setTierLimits: setTierLimitsHandler(h),
      setSettlementMode: setSettlementModeHandler(h),
    },
    internal: {
      getSettlementMode: getSettlementModeHandler(h),
    },
  };
}

function setTierLimitsHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletAdminService>["setTierLimits"] {
  const { tx } = h;
  return async function (req, hctx) {
    const currency = req.perTransaction!.currency;
    assertCurrency(currency, "per_transaction.currency");
    if (req.perTransaction!.amountMinor <= 0n) throw fieldError("per_transaction", "must be greater than zero");
    await tx(async (db) => {
      await putTierLimits(db, {
        tier: req.tier,
        currency,
        perTransactionMinor: req.perTransaction!.amountMinor,
        dailyMinor: req.daily!.amountMinor,
        monthlyMinor: req.monthly!.amountMinor,
      });
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
      await putSettlementMode(db, req.ownerKind, req.ownerId, req.mode);
      await auditAdminAction(db, "wallet", hctx, {
        action: AuditAction.SETTLEMENT_MODE_SET,
        target: `${OwnerKind[req.ownerKind].toLowerCase()}:${req.ownerId}`,
        detail: SettlementMode[req.mode].toLowerCase().replace(/_/g, " "),
      });
    });
    return { mode: req.mode };
  };
}

function getSettlementModeHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletInternalService>["getSettlementMode"] {
  const { pool } = h;
  return async function (req) {
    // Pass-through is the default: storing money for later needs a licence.
    return { mode: (await settlementModeOf(pool, req.ownerKind, req.ownerId)) ?? SettlementMode.PASS_THROUGH };
  };
}
