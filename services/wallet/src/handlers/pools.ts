import { timestampDate } from "@bufbuild/protobuf/wkt";
import { type ServiceImpl } from "@connectrpc/connect";
import { fieldError, InvalidStateError, money } from "@ttip/runtime";
import { WalletInternalService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { getPoolRules } from "../pools.js";
import { getPoolTakings, postPoolDistribution, reversePoolDistribution } from "../pool-periods.js";
import type { WalletAreaHandlers, WalletHandlerContext } from "./context.js";

/** Venue pools: the takings of a period and their distribution (the split itself is the venue service's). */
export function poolHandlers(h: WalletHandlerContext): WalletAreaHandlers {
  return {
    internal: {
      setPoolRules: venueOwnsSplits,
      getPoolRules: getPoolRulesHandler(h),
      distributePool: venueOwnsSplits,
      getPoolTakings: getPoolTakingsHandler(h),
      postPoolDistribution: postPoolDistributionHandler(h),
      reversePoolDistribution: reversePoolDistributionHandler(h),
    },
  };
}

/** SetPoolRules and DistributePool: refused, the venue service owns split rules and distributions now. */
async function venueOwnsSplits(): Promise<never> {
  throw new InvalidStateError(VENUE_OWNS_SPLITS);
}

function getPoolRulesHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletInternalService>["getPoolRules"] {
  const { pool } = h;
  return async function (req) {
    return { rules: await getPoolRules(pool, req.venueId) };
  };
}

function getPoolTakingsHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletInternalService>["getPoolTakings"] {
  const { pool } = h;
  return async function (req) {
    const t = await getPoolTakings(pool, req.venueId, req.currency, timestampDate(req.start!), timestampDate(req.end!));
    return {
      collected: money(t.collectedMinor, req.currency),
      credits: t.credits,
      overlappingDistributionId: t.overlappingDistributionId,
      available: money(t.availableMinor, req.currency),
    };
  };
}

function postPoolDistributionHandler(h: WalletHandlerContext): ServiceImpl<typeof WalletInternalService>["postPoolDistribution"] {
  const { tx } = h;
  return async function (req, ctx) {
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
        signal: ctx.signal,
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

/** Why the old pool RPCs refuse: splits belong to the venue service now. */
const VENUE_OWNS_SPLITS =
  "pool splits are made by the venue service: use ttip.venue.v1.VenueService (SetSplitRule, PreviewDistribution, ConfirmDistribution); SetPoolRules and DistributePool are deprecated";
