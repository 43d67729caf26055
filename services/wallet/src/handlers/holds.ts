import { type ServiceImpl } from "@connectrpc/connect";
import { WalletInternalService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { placeHold, releaseHold, settleHold } from "../holds.js";
import { toBalance } from "../queries.js";
import type { WalletAreaHandlers, WalletHandlerContext } from "./context.js";

/** Holds: money reserved for a withdrawal, then settled or released. */
export function holdHandlers(h: WalletHandlerContext): WalletAreaHandlers {
  return {
    internal: {
      placeHold: placeHoldHandler(h),
      settleHold: settleHoldHandler(h),
      releaseHold: releaseHoldHandler(h),
    },
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
    return tx((db) => settleHold(db, req.holdId, req.externalReference, req.transferFee?.amountMinor, req.transferFee?.currency));
  };
}

function releaseHoldHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletInternalService>["releaseHold"] {
  const { tx } = h;
  return async function (req) {
    return { hold: await tx((db) => releaseHold(db, req.holdId, req.reason)) };
  };
}
