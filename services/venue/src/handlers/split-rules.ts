import { createHash } from "node:crypto";
import { type ServiceImpl } from "@connectrpc/connect";
import { VenueSplitRuleChangedSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { SplitMethod } from "@ttip/proto/ttip/venue/v1/venue_pb.js";
import { VenueService } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { emitEvent, fieldError, IdempotencyConflictError, isUuid, NotFoundError, PermissionDeniedError, UnimplementedError, withTransaction } from "@ttip/runtime";
import { audit, insertRule, lockRules, OWN_MEMBERSHIP, ownMemberships, ruleByIdempotencyKey, ruleInForce, ruleSummary, ruleVersions, toRule, venueMemberIds } from "../store.js";
import type { VenueHandlerContext } from "./context.js";

/** Split rules: immutable versions, the one in force, and their history. */
export function splitRuleHandlers(h: VenueHandlerContext): Partial<ServiceImpl<typeof VenueService>> {
  return {
    setSplitRule: setSplitRuleHandler(h),
    getSplitRule: getSplitRuleHandler(h),
    listSplitRules: listSplitRulesHandler(h),
  };
}

function setSplitRuleHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["setSplitRule"] {
  const { pool, manager } = h;
  return async function (req, ctx) {
    const { caller } = await manager(ctx, req.venueId);
    if (req.poolIndividualTips) {
      throw new UnimplementedError("pool_individual_tips: pooling tips made to a worker's own code is not built; individual tips stay with their worker");
    }
    const fixed = req.fixedShares.map((f) => ({ member_id: f.memberId, basis_points: f.basisPoints }));
    if (req.method === SplitMethod.FIXED_PERCENTAGES) {
      const seen = new Set<string>();
      fixed.forEach((f, i) => {
        if (!isUuid(f.member_id)) throw fieldError(`fixed_shares[${i}].member_id`, "must be a member id");
        if (f.basis_points <= 0 || f.basis_points > 10_000) throw fieldError(`fixed_shares[${i}].basis_points`, "must be 1 to 10000");
        if (seen.has(f.member_id)) throw fieldError(`fixed_shares[${i}].member_id`, "listed twice");
        seen.add(f.member_id);
      });
      const total = fixed.reduce((s, f) => s + f.basis_points, 0);
      if (total !== 10_000) throw fieldError("fixed_shares", `add up to ${total} basis points, not 10000 (100%)`);
    } else if (fixed.length) {
      throw fieldError("fixed_shares", "only for SPLIT_METHOD_FIXED_PERCENTAGES");
    }
    const hash = createHash("sha256").update(JSON.stringify([req.method, req.includeManagers, fixed, req.note])).digest("hex");
    const rule = await withTransaction(pool, async (tx) => {
      await lockRules(tx, req.venueId);
      const prior = await ruleByIdempotencyKey(tx, req.venueId, req.idempotencyKey);
      if (prior) {
        if (prior.request_hash !== hash) throw new IdempotencyConflictError(req.idempotencyKey, "split rule");
        return prior;
      }
      if (fixed.length) {
        const known = await venueMemberIds(tx, req.venueId, fixed.map((f) => f.member_id));
        const i = fixed.findIndex((f) => !known.has(f.member_id));
        if (i >= 0) throw fieldError(`fixed_shares[${i}].member_id`, `no member ${fixed[i].member_id} at this venue`);
        const own = await ownMemberships(tx, req.venueId, caller.subject);
        const mine = fixed.findIndex((f) => own.some((m) => m.member_id === f.member_id));
        if (mine >= 0) throw new PermissionDeniedError(`fixed_shares[${mine}].member_id: ${OWN_MEMBERSHIP}`);
      }
      const r = await insertRule(tx, {
        venueId: req.venueId, method: req.method, includeManagers: req.includeManagers, fixedShares: fixed, note: req.note,
        createdBy: caller.subject, idempotencyKey: req.idempotencyKey, requestHash: hash,
      });
      await emitEvent(tx, "venue", VenueSplitRuleChangedSchema, {
        venueId: r.venue_id, version: r.version, method: r.method, includeManagers: r.include_managers, changedBy: caller.subject, summary: ruleSummary(r),
      }, `${r.venue_id}:${r.version}`);
      await audit(tx, req.venueId, caller, "rule.changed", { version: r.version, method: r.method, include_managers: r.include_managers, fixed_shares: fixed, note: req.note });
      return r;
    });
    return { rule: toRule(rule) };
  };
}

function getSplitRuleHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["getSplitRule"] {
  const { pool, access } = h;
  return async function (req, ctx) {
    await access.requireMemberOrManager(pool, ctx, req.venueId);
    const r = await ruleInForce(pool, req.venueId, req.version);
    if (!r) throw new NotFoundError(req.version ? `version: no version ${req.version}` : "venue_id: the venue has no split rule yet");
    return { rule: toRule(r) };
  };
}

function listSplitRulesHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["listSplitRules"] {
  const { pool, access } = h;
  return async function (req, ctx) {
    await access.requireMemberOrManager(pool, ctx, req.venueId);
    return { rules: (await ruleVersions(pool, req.venueId)).map(toRule) };
  };
}
