import { createHash } from "node:crypto";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { type ConnectRouter, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { VenueSplitRuleChangedSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { create } from "@bufbuild/protobuf";
import { MyShareSchema, SplitMethod } from "@ttip/proto/ttip/venue/v1/venue_pb.js";
import { ReportFormat, VenueService } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { AlreadyExistsError, decodePageToken, emitEvent, fieldError, keysetPage, NotFoundError, pageSize, PermissionDeniedError, type Pool, positionParts, requireCaller, UnimplementedError, withTransaction } from "@ttip/runtime";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Access } from "./access.js";
import { csvLine } from "./csv.js";
import type { Distributions } from "./distributions.js";
import type { Members } from "./members.js";
import { hoursLine, type Period } from "./plan.js";
import { clockIn, clockOut, importShifts, recordShift } from "./shifts.js";
import {
  audit,
  ensureDefaultRoles,
  loadDistribution,
  money,
  rosterFor,
  ruleInForce,
  ruleSummary,
  shiftsIn,
  toDistribution,
  toMember,
  toRole,
  toRule,
  toShareLine,
  toShift,
  type DistributionRow,
  type MemberRow,
  type RoleRow,
  type RuleRow,
  type ShareRow,
  type ShiftRow,
} from "./store.js";

/** Longest period a read or split covers. */
const MAX_PERIOD_MS = 32 * 24 * 3600_000;

export function periodOf(p: { start?: Timestamp; end?: Timestamp } | undefined, field = "period"): Period {
  if (!p?.start) throw fieldError(`${field}.start`, "required");
  if (!p.end) throw fieldError(`${field}.end`, "required");
  const start = timestampDate(p.start);
  const end = timestampDate(p.end);
  if (end.getTime() <= start.getTime()) throw fieldError(`${field}.end`, `must be after ${field}.start`);
  if (end.getTime() - start.getTime() > MAX_PERIOD_MS) throw fieldError(`${field}.end`, "a period covers at most 32 days");
  return { start, end };
}


/** A (time, id) page position. */
function atAndId([at, id]: string[]): { at: string; id: string } | undefined {
  const t = positionParts.timestamp(at);
  const u = positionParts.uuid(id);
  return t && u ? { at: t, id: u } : undefined;
}

export interface VenueDeps {
  pool: Pool;
  access: Access;
  members: Members;
  distributions: Distributions;
}

/** What every venue handler shares: the service's dependencies and the manager check. */
interface VenueHandlerContext extends VenueDeps {
  manager: (ctx: HandlerContext, venueId: string) => ReturnType<Access["requireManager"]>;
}

/** Every RPC of the venue service, one factory per RPC below. */
export function registerHandlers(router: ConnectRouter, deps: VenueDeps) {
  const h: VenueHandlerContext = { ...deps, manager: (ctx, venueId) => deps.access.requireManager(ctx, venueId) };

  router.service(VenueService, {
    putRole: putRoleHandler(h),
    listRoles: listRolesHandler(h),
    inviteMember: inviteMemberHandler(h),
    acceptInvitation: acceptInvitationHandler(h),
    updateMember: updateMemberHandler(h),
    removeMember: removeMemberHandler(h),
    listMembers: listMembersHandler(h),
    listMyVenues: listMyVenuesHandler(h),
    clockIn: clockInHandler(h),
    clockOut: clockOutHandler(h),
    recordShift: recordShiftHandler(h),
    importShifts: importShiftsHandler(h),
    listShifts: listShiftsHandler(h),
    getHours: getHoursHandler(h),
    setSplitRule: setSplitRuleHandler(h),
    getSplitRule: getSplitRuleHandler(h),
    listSplitRules: listSplitRulesHandler(h),
    previewDistribution: previewDistributionHandler(h),
    confirmDistribution: confirmDistributionHandler(h),
    reverseDistribution: reverseDistributionHandler(h),
    getDistribution: getDistributionHandler(h),
    listDistributions: listDistributionsHandler(h),
    listMyShares: listMySharesHandler(h),
    getPeriodReport: getPeriodReportHandler(h),
    listAuditRecords: listAuditRecordsHandler(h),
  });
}

function putRoleHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["putRole"] {
  const { pool, manager } = h;
  return async function (req, ctx) {
    const { caller } = await manager(ctx, req.venueId);
    const role = await withTransaction(pool, async (tx) => {
      await ensureDefaultRoles(tx, req.venueId);
      if (req.roleId === "manager" && !req.isManager) throw fieldError("is_manager", "the manager role stays a manager role");
      const { rows } = await tx.query<RoleRow>(
        `INSERT INTO venue.roles (venue_id, role_id, name, points, is_manager) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (venue_id, role_id) DO UPDATE SET name = $3, points = $4, is_manager = $5, updated_at = now() RETURNING *`,
        [req.venueId, req.roleId, req.name, req.points, req.isManager],
      );
      await audit(tx, req.venueId, caller.subject, "role.changed", { role_id: req.roleId, name: req.name, points: req.points, is_manager: req.isManager });
      return rows[0];
    });
    return { role: toRole(role) };
  };
}

function listRolesHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["listRoles"] {
  const { pool, access } = h;
  return async function (req, ctx) {
    await access.requireMemberOrManager(pool, ctx, req.venueId);
    await ensureDefaultRoles(pool, req.venueId);
    const { rows } = await pool.query<RoleRow>(`SELECT * FROM venue.roles WHERE venue_id = $1 ORDER BY is_manager DESC, role_id`, [req.venueId]);
    return { roles: rows.map(toRole) };
  };
}

function inviteMemberHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["inviteMember"] {
  const { members, manager } = h;
  return async function (req, ctx) {
    const { caller, venue } = await manager(ctx, req.venueId);
    const { member, sent } = await members.invite(venue, caller, {
      phone: req.phone,
      displayName: req.displayName,
      roleId: req.roleId,
      joinedAt: req.joinedAt ? timestampDate(req.joinedAt) : undefined,
      key: req.idempotencyKey,
    });
    return { member: toMember(member, venue.name), invitationSent: sent };
  };
}

function acceptInvitationHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["acceptInvitation"] {
  const { access, members } = h;
  return async function (req, ctx) {
    const caller = requireCaller(ctx);
    const m = await members.accept(caller, req.token);
    const venue = await access.venue(m.venue_id).catch(() => undefined);
    return { member: toMember(m, venue?.name ?? "") };
  };
}

function updateMemberHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["updateMember"] {
  const { members, manager } = h;
  return async function (req, ctx) {
    const { caller, venue } = await manager(ctx, req.venueId);
    return { member: toMember(await members.update(req.venueId, caller, req.memberId, req.roleId, req.displayName), venue.name) };
  };
}

function removeMemberHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["removeMember"] {
  const { members, manager } = h;
  return async function (req, ctx) {
    const { caller, venue } = await manager(ctx, req.venueId);
    const m = await members.remove(req.venueId, caller, req.memberId, req.leftAt ? timestampDate(req.leftAt) : undefined, req.reason);
    return { member: toMember(m, venue.name) };
  };
}

function listMembersHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["listMembers"] {
  const { pool, manager } = h;
  return async function (req, ctx) {
    const { venue } = await manager(ctx, req.venueId);
    const { rows } = await pool.query<MemberRow>(
      `SELECT * FROM venue.members WHERE venue_id = $1 AND ($2 OR left_at IS NULL OR left_at > now()) ORDER BY joined_at, member_id`,
      [req.venueId, req.includeLeft],
    );
    return { members: rows.map((m) => toMember(m, venue.name)) };
  };
}

function listMyVenuesHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["listMyVenues"] {
  const { pool, access } = h;
  return async function (_req, ctx) {
    const caller = requireCaller(ctx);
    const { rows } = await pool.query<MemberRow>(`SELECT * FROM venue.members WHERE worker_id::text = $1 ORDER BY joined_at DESC`, [caller.subject]);
    const names = new Map<string, string>();
    for (const v of new Set(rows.map((r) => r.venue_id))) names.set(v, (await access.venue(v).catch(() => undefined))?.name ?? "");
    return { memberships: rows.map((m) => toMember(m, names.get(m.venue_id))) };
  };
}

function clockInHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["clockIn"] {
  const { pool } = h;
  return async function (req, ctx) {
    const caller = requireCaller(ctx);
    return { shift: toShift(await clockIn(pool, req.venueId, caller.subject)) };
  };
}

function clockOutHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["clockOut"] {
  const { pool } = h;
  return async function (req, ctx) {
    const caller = requireCaller(ctx);
    return { shift: toShift(await clockOut(pool, req.venueId, caller.subject)) };
  };
}

function recordShiftHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["recordShift"] {
  const { pool, manager } = h;
  return async function (req, ctx) {
    const { caller } = await manager(ctx, req.venueId);
    const s = await recordShift(pool, req.venueId, caller.subject, req.memberId, timestampDate(req.startedAt!), timestampDate(req.endedAt!), req.idempotencyKey);
    return { shift: toShift(s) };
  };
}

function importShiftsHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["importShifts"] {
  const { pool, manager } = h;
  return async function (req, ctx) {
    const { caller } = await manager(ctx, req.venueId);
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(req.csv);
    } catch {
      throw fieldError("csv", "not UTF-8 text");
    }
    const r = await importShifts(pool, req.venueId, caller.subject, text, req.dryRun);
    return { imported: r.imported, rejected: r.rejected };
  };
}

function listShiftsHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["listShifts"] {
  const { pool, access } = h;
  return async function (req, ctx) {
    const p = periodOf(req.period);
    const who = await access.requireMemberOrManager(pool, ctx, req.venueId);
    // A worker sees only their own shifts.
    const memberId = who.manager ? req.memberId || null : who.member!.member_id;
    if (!who.manager && req.memberId && req.memberId !== memberId) throw new PermissionDeniedError("member_id: you may only see your own shifts");
    const { rows } = await pool.query<ShiftRow>(
      `SELECT * FROM venue.shifts WHERE venue_id = $1 AND ($2::uuid IS NULL OR member_id = $2) AND started_at < $4 AND COALESCE(ended_at, 'infinity') > $3
        ORDER BY started_at LIMIT 5000`,
      [req.venueId, memberId, p.start, p.end],
    );
    return { shifts: rows.map(toShift) };
  };
}

function getHoursHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["getHours"] {
  const { pool, access } = h;
  return async function (req, ctx) {
    const p = periodOf(req.period);
    const who = await access.requireMemberOrManager(pool, ctx, req.venueId);
    const roster = await rosterFor(pool, req.venueId, p.end);
    const shifts = await shiftsIn(pool, req.venueId, p.start, p.end);
    const hours = roster
      .filter((m) => who.manager || m.memberId === who.member?.member_id)
      .map((m) => hoursLine(m, shifts, p))
      .filter((h) => h.minutes > 0n || h.shifts > 0);
    return { hours };
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
        if (!/^[0-9a-f-]{36}$/i.test(f.member_id)) throw fieldError(`fixed_shares[${i}].member_id`, "must be a member id");
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
      await tx.query(`SELECT pg_advisory_xact_lock(hashtext($1))`, [`venue.rules.${req.venueId}`]);
      const { rows: prior } = await tx.query<RuleRow & { request_hash: string }>(
        `SELECT * FROM venue.split_rules WHERE venue_id = $1 AND idempotency_key = $2`,
        [req.venueId, req.idempotencyKey],
      );
      if (prior[0]) {
        if (prior[0].request_hash !== hash) throw new AlreadyExistsError("idempotency_key: already used for another rule");
        return prior[0];
      }
      if (fixed.length) {
        const { rows } = await tx.query<{ member_id: string }>(`SELECT member_id FROM venue.members WHERE venue_id = $1 AND member_id = ANY($2::uuid[])`, [
          req.venueId, fixed.map((f) => f.member_id),
        ]);
        const known = new Set(rows.map((r) => r.member_id));
        const i = fixed.findIndex((f) => !known.has(f.member_id));
        if (i >= 0) throw fieldError(`fixed_shares[${i}].member_id`, `no member ${fixed[i].member_id} at this venue`);
      }
      const { rows } = await tx.query<RuleRow>(
        `INSERT INTO venue.split_rules (venue_id, version, method, include_managers, fixed_shares, note, created_by, idempotency_key, request_hash)
         SELECT $1, COALESCE(max(version), 0) + 1, $2, $3, $4, $5, $6, $7, $8 FROM venue.split_rules WHERE venue_id = $1 RETURNING *`,
        [req.venueId, req.method, req.includeManagers, JSON.stringify(fixed), req.note, caller.subject, req.idempotencyKey, hash],
      );
      const r = rows[0];
      await emitEvent(tx, "venue", VenueSplitRuleChangedSchema, {
        venueId: r.venue_id, version: r.version, method: r.method, includeManagers: r.include_managers, changedBy: caller.subject, summary: ruleSummary(r),
      }, `${r.venue_id}:${r.version}`);
      await audit(tx, req.venueId, caller.subject, "rule.changed", { version: r.version, method: r.method, include_managers: r.include_managers, fixed_shares: fixed, note: req.note });
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
    const { rows } = await pool.query<RuleRow>(`SELECT * FROM venue.split_rules WHERE venue_id = $1 ORDER BY version DESC`, [req.venueId]);
    return { rules: rows.map(toRule) };
  };
}

function previewDistributionHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["previewDistribution"] {
  const { distributions, manager } = h;
  return async function (req, ctx) {
    const p = periodOf(req.period);
    const { venue } = await manager(ctx, req.venueId);
    return { distribution: await distributions.preview(venue, p) };
  };
}

function confirmDistributionHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["confirmDistribution"] {
  const { distributions, manager } = h;
  return async function (req, ctx) {
    const p = periodOf(req.period);
    const { caller, venue } = await manager(ctx, req.venueId);
    if (req.expectedCollected && req.expectedCollected.currency && req.expectedCollected.currency !== venue.currency) {
      throw fieldError("expected_collected.currency", `the venue's pool is in ${venue.currency}`);
    }
    return distributions.confirm(venue, p, caller.subject, req.expectedCollected?.amountMinor);
  };
}

function reverseDistributionHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["reverseDistribution"] {
  const { distributions, manager } = h;
  return async function (req, ctx) {
    const { caller } = await manager(ctx, req.venueId);
    return { distribution: await distributions.reverse(req.venueId, req.distributionId, req.reason, caller.subject) };
  };
}

function getDistributionHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["getDistribution"] {
  const { pool, access } = h;
  return async function (req, ctx) {
    const who = await access.requireMemberOrManager(pool, ctx, req.venueId);
    const loaded = await loadDistribution(pool, req.distributionId);
    if (!loaded || loaded.d.venue_id !== req.venueId || loaded.d.status === "abandoned") {
      throw new NotFoundError(`distribution_id: no distribution ${req.distributionId} at this venue`);
    }
    // A member sees the totals and their own line; the manager sees every line.
    const shares = who.manager ? loaded.shares : loaded.shares.filter((s) => s.member_id === who.member?.member_id);
    return { distribution: toDistribution(loaded.d, shares) };
  };
}

function listDistributionsHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["listDistributions"] {
  const { pool, manager } = h;
  return async function (req, ctx) {
    await manager(ctx, req.venueId);
    const size = pageSize(req.page);
    const cursor = decodePageToken(req.page?.pageToken, atAndId);
    const { rows } = await pool.query<DistributionRow>(
      `SELECT * FROM venue.distributions WHERE venue_id = $1 AND status <> 'abandoned'
         AND ($2::timestamptz IS NULL OR (period_start, distribution_id) < ($2::timestamptz, $3::uuid))
       ORDER BY period_start DESC, distribution_id DESC LIMIT $4`,
      [req.venueId, cursor?.at ?? null, cursor?.id ?? null, size + 1],
    );
    const { items, nextPageToken } = keysetPage(rows, size, (d) => [d.period_start.toISOString(), d.distribution_id]);
    const out = [];
    for (const d of items) out.push(toDistribution(d, (await pool.query<ShareRow>(`SELECT * FROM venue.shares WHERE distribution_id = $1 ORDER BY line`, [d.distribution_id])).rows));
    return { distributions: out, page: { nextPageToken } };
  };
}

function listMySharesHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["listMyShares"] {
  const { pool, access } = h;
  return async function (req, ctx) {
    const caller = requireCaller(ctx);
    const size = pageSize(req.page);
    const cursor = decodePageToken(req.page?.pageToken, atAndId);
    const { rows } = await pool.query<ShareRow & DistributionRow & { members_paid: number; pool_total: bigint }>(
      `SELECT s.*, d.venue_id, d.period_start, d.period_end, d.method, d.rule_version, d.currency, d.status, d.confirmed_at,
              (SELECT count(*)::int FROM venue.shares x WHERE x.distribution_id = d.distribution_id AND x.amount_minor > 0) AS members_paid,
              (SELECT sum(x.amount_minor)::bigint FROM venue.shares x WHERE x.distribution_id = d.distribution_id) AS pool_total
         FROM venue.shares s JOIN venue.distributions d USING (distribution_id)
        WHERE s.worker_id::text = $1 AND d.status IN ('confirmed', 'reversed')
          AND ($2::timestamptz IS NULL OR (d.confirmed_at, d.distribution_id) < ($2::timestamptz, $3::uuid))
        ORDER BY d.confirmed_at DESC, d.distribution_id DESC LIMIT $4`,
      [caller.subject, cursor?.at ?? null, cursor?.id ?? null, size + 1],
    );
    const { items: page, nextPageToken } = keysetPage(rows, size, (r) => [r.confirmed_at!.toISOString(), r.distribution_id]);
    const names = new Map<string, string>();
    for (const v of new Set(page.map((r) => r.venue_id))) names.set(v, (await access.venue(v).catch(() => undefined))?.name ?? "");
    const shares = page.map((r) => create(MyShareSchema, {
      venueId: r.venue_id,
      venueName: names.get(r.venue_id),
      distributionId: r.distribution_id,
      period: { start: timestampFromDate(r.period_start), end: timestampFromDate(r.period_end) },
      method: r.method,
      ruleVersion: r.rule_version,
      poolTotal: money(r.pool_total, r.currency),
      membersPaid: r.members_paid,
      line: toShareLine(r, r.currency),
      status: r.status === "confirmed" ? 3 : 4,
      confirmedAt: r.confirmed_at ? timestampFromDate(r.confirmed_at) : undefined,
    }));
    return { shares, page: { nextPageToken } };
  };
}

function getPeriodReportHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["getPeriodReport"] {
  const { pool, distributions, manager } = h;
  return async function (req, ctx) {
    const p = periodOf(req.period);
    const { venue } = await manager(ctx, req.venueId);
    const roster = await rosterFor(pool, req.venueId, p.end);
    const shifts = await shiftsIn(pool, req.venueId, p.start, p.end);
    const { rows: paid } = await pool.query<{ member_id: string; total: bigint; n: number }>(
      `SELECT s.member_id, sum(s.amount_minor)::bigint AS total, count(*)::int AS n FROM venue.shares s JOIN venue.distributions d USING (distribution_id)
        WHERE d.venue_id = $1 AND d.status = 'confirmed' AND d.period_start >= $2 AND d.period_end <= $3 GROUP BY s.member_id`,
      [req.venueId, p.start, p.end],
    );
    const byMember = new Map(paid.map((r) => [r.member_id, r]));
    const lines = roster
      .map((m) => ({
        ...hoursLine(m, shifts, p),
        shares: money(byMember.get(m.memberId)?.total ?? 0n, venue.currency),
        distributions: byMember.get(m.memberId)?.n ?? 0,
      }))
      .filter((l) => l.minutes > 0n || l.distributions > 0 || l.shifts > 0);
    const distributed = paid.reduce((s, r) => s + r.total, 0n);
    const takings = await distributions.takingsFor(venue, p);
    let csv = new Uint8Array();
    if (req.format === ReportFormat.CSV) {
      let text = csvLine(["member_id", "name", "role", "minutes", "shifts", `shares_${venue.currency.toLowerCase()}_minor`, "distributions"]);
      for (const l of lines) text += csvLine([l.memberId, l.displayName, l.roleId, l.minutes, l.shifts, l.shares.amountMinor, l.distributions]);
      text += csvLine(["total", "", "", lines.reduce((s, l) => s + l.minutes, 0n), lines.reduce((s, l) => s + l.shifts, 0), distributed, ""]);
      csv = new TextEncoder().encode(text);
    }
    return { lines: req.format === ReportFormat.ROWS ? lines : [], collected: money(takings, venue.currency), distributed: money(distributed, venue.currency), csv };
  };
}

function listAuditRecordsHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["listAuditRecords"] {
  const { pool, manager } = h;
  return async function (req, ctx) {
    await manager(ctx, req.venueId);
    const size = pageSize(req.page);
    const cursor = decodePageToken(req.page?.pageToken, ([n]) => positionParts.integer(n));
    const { rows } = await pool.query<{ sequence: string; venue_id: string; at: Date; actor: string; action: string; detail: unknown }>(
      `SELECT * FROM venue.audit_records WHERE venue_id = $1 AND ($2::bigint IS NULL OR sequence < $2) ORDER BY sequence DESC LIMIT $3`,
      [req.venueId, cursor?.toString() ?? null, size + 1],
    );
    const { items, nextPageToken } = keysetPage(rows, size, (r) => [r.sequence]);
    return {
      records: items.map((r) => ({ sequence: BigInt(r.sequence), venueId: r.venue_id, at: timestampFromDate(r.at), actor: r.actor, action: r.action, detail: JSON.stringify(r.detail) })),
      page: { nextPageToken },
    };
  };
}
