import { create } from "@bufbuild/protobuf";
import { type ServiceImpl } from "@connectrpc/connect";
import { assertCurrency, auditAdminAction, fieldError } from "@ttip/runtime";
import { AuditAction } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { WalletAdminService, WalletInternalService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { LimitKind, OwnerKind, SettlementMode, WithdrawalLimitSchema } from "@ttip/proto/ttip/wallet/v1/wallet_pb.js";
import { money } from "../money.js";
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
