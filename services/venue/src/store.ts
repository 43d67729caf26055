// Rows of the venue schema and how they read as messages.
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AuditAction } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { auditAdminActionOf, keysetTime, lockForTransaction, maskPhone, optionalTimestamp, type Queryable } from "@ttip/runtime";
import {
  DistributionSchema,
  DistributionStatus,
  MemberSchema,
  MemberStatus,
  RoleSchema,
  ShareLineSchema,
  ShiftSchema,
  SplitMethod,
  SplitRuleSchema,
  type Distribution,
  type Member,
  type Role,
  type Shift,
  type SplitRule,
} from "@ttip/proto/ttip/venue/v1/venue_pb.js";
import { METHOD_WORDS, type RosterMember, type RuleSpec, type ShiftSpan } from "./plan.js";
import { REMAINDER_RULE } from "./split.js";

export const money = (amountMinor: bigint, currency: string) => ({ amountMinor, currency });

export interface RoleRow {
  venue_id: string;
  role_id: string;
  name: string;
  points: number;
  is_manager: boolean;
}

export const toRole = (r: RoleRow): Role => create(RoleSchema, { roleId: r.role_id, name: r.name, points: r.points, isManager: r.is_manager });

/** Every venue has these from its first use; managers can rename or re-point them and add others. */
export const DEFAULT_ROLES: Omit<RoleRow, "venue_id">[] = [
  { role_id: "manager", name: "Manager", points: 0, is_manager: true },
  { role_id: "front_of_house", name: "Front of house", points: 10, is_manager: false },
  { role_id: "kitchen", name: "Kitchen", points: 8, is_manager: false },
  { role_id: "bar", name: "Bar", points: 8, is_manager: false },
];

export async function ensureDefaultRoles(db: Queryable, venueId: string): Promise<void> {
  await db.query(
    `INSERT INTO venue.roles (venue_id, role_id, name, points, is_manager)
     SELECT $1, r.role_id, r.name, r.points, r.is_manager FROM jsonb_to_recordset($2::jsonb) AS r(role_id text, name text, points int, is_manager boolean)
     ON CONFLICT DO NOTHING`,
    [venueId, JSON.stringify(DEFAULT_ROLES)],
  );
}

/** Adds or changes a role; call after ensureDefaultRoles so the defaults are there to change. */
export async function putRole(db: Queryable, r: RoleRow): Promise<RoleRow> {
  const { rows } = await db.query<RoleRow>(
    `INSERT INTO venue.roles (venue_id, role_id, name, points, is_manager) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (venue_id, role_id) DO UPDATE SET name = $3, points = $4, is_manager = $5, updated_at = now() RETURNING *`,
    [r.venue_id, r.role_id, r.name, r.points, r.is_manager],
  );
  return rows[0];
}

/** The venue's roles, the manager role first. */
export async function rolesOf(db: Queryable, venueId: string): Promise<RoleRow[]> {
  const { rows } = await db.query<RoleRow>(`SELECT * FROM venue.roles WHERE venue_id = $1 ORDER BY is_manager DESC, role_id`, [venueId]);
  return rows;
}

export interface MemberRow {
  member_id: string;
  venue_id: string;
  worker_id: string | null;
  phone: string;
  display_name: string;
  role_id: string;
  invited_at: Date;
  accepted_at: Date | null;
  /** Set only when it differs from `phone`. */
  accepted_phone: string | null;
  joined_at: Date;
  left_at: Date | null;
  /** The current link's (see invitation-link.ts); NULL once accepted or ended before links expired. */
  invite_sent_at: Date | null;
  invite_expires_at: Date | null;
  invite_send_key: string | null;
  invite_texted: boolean;
}

/**
 * A membership is current until it ends: at left_at, or at once when it ends at or before its start (removed
 * before their first day: it never began). The SQL twin of memberEnded.
 */
const CURRENT_MEMBERSHIP = "(left_at IS NULL OR (left_at > now() AND left_at > joined_at))";

function memberEnded(m: MemberRow, now: number): boolean {
  return !!m.left_at && (m.left_at.getTime() <= now || m.left_at.getTime() <= m.joined_at.getTime());
}

export function memberStatus(m: MemberRow, now = Date.now()): MemberStatus {
  if (memberEnded(m, now)) return m.worker_id ? MemberStatus.LEFT : MemberStatus.CANCELLED;
  return m.worker_id ? MemberStatus.ACTIVE : MemberStatus.INVITED;
}

export function toMember(m: MemberRow, venueName = ""): Member {
  return create(MemberSchema, {
    memberId: m.member_id,
    venueId: m.venue_id,
    workerId: m.worker_id ?? "",
    displayName: m.display_name,
    phoneMasked: maskPhone(m.phone),
    roleId: m.role_id,
    status: memberStatus(m),
    joinedAt: timestampFromDate(m.joined_at),
    leftAt: optionalTimestamp(m.left_at),
    invitedAt: timestampFromDate(m.invited_at),
    venueName,
    acceptedPhoneMasked: m.accepted_phone ? maskPhone(m.accepted_phone) : "",
    invitationExpiresAt: !m.worker_id && !m.left_at ? optionalTimestamp(m.invite_expires_at) : undefined,
  });
}

/** The caller's current (not left) membership of the venue, if any; `share`: locked against a removal until the transaction ends. */
export async function currentMemberOf(db: Queryable, venueId: string, workerId: string, lock?: "share"): Promise<MemberRow | undefined> {
  const { rows } = await db.query<MemberRow>(
    `SELECT * FROM venue.members WHERE venue_id = $1 AND worker_id::text = $2 AND ${CURRENT_MEMBERSHIP}${lock ? " FOR SHARE" : ""}`,
    [venueId, workerId],
  );
  return rows[0];
}

export async function memberById(db: Queryable, venueId: string, memberId: string, lock = false): Promise<MemberRow | undefined> {
  const { rows } = await db.query<MemberRow>(`SELECT * FROM venue.members WHERE venue_id = $1 AND member_id = $2${lock ? " FOR UPDATE" : ""}`, [venueId, memberId]);
  return rows[0];
}

/** The venue's staff in joining order; those who left only when asked. */
export async function membersOf(db: Queryable, venueId: string, includeLeft: boolean): Promise<MemberRow[]> {
  const { rows } = await db.query<MemberRow>(
    `SELECT * FROM venue.members WHERE venue_id = $1 AND ($2 OR ${CURRENT_MEMBERSHIP}) ORDER BY joined_at, member_id`,
    [venueId, includeLeft],
  );
  return rows;
}

/** Every membership of a worker, at any venue, newest first. */
export async function membershipsOf(db: Queryable, workerId: string): Promise<MemberRow[]> {
  const { rows } = await db.query<MemberRow>(`SELECT * FROM venue.members WHERE worker_id::text = $1 ORDER BY joined_at DESC`, [workerId]);
  return rows;
}

/** Which of the given member ids belong to the venue (left or not). */
export async function venueMemberIds(db: Queryable, venueId: string, memberIds: string[]): Promise<Set<string>> {
  const { rows } = await db.query<{ member_id: string }>(`SELECT member_id FROM venue.members WHERE venue_id = $1 AND member_id = ANY($2::uuid[])`, [
    venueId, memberIds,
  ]);
  return new Set(rows.map((r) => r.member_id));
}

/** The caller's own memberships at the venue (a manager's from their days on the staff): their ids and roles. */
export async function ownMemberships(db: Queryable, venueId: string, workerId: string): Promise<Pick<MemberRow, "member_id" | "role_id">[]> {
  const { rows } = await db.query<Pick<MemberRow, "member_id" | "role_id">>(
    `SELECT member_id, role_id FROM venue.members WHERE venue_id = $1 AND worker_id::text = $2`, [venueId, workerId]);
  return rows;
}

/**
 * A manager's own membership (from before they managed the venue: a waiter promoted) is paid by the splits of the
 * periods they worked. Its hours, its role and its fixed share are set by another manager or an admin, never by
 * them: else they set their own pay.
 */
export const OWN_MEMBERSHIP = "is your own membership (from your days on the staff): its hours, role and share, which set your pay, are set by another manager of the venue or an admin";

export interface ShiftRow {
  shift_id: string;
  venue_id: string;
  member_id: string;
  started_at: Date;
  ended_at: Date | null;
  source: number;
  recorded_by: string;
}

export function toShift(s: ShiftRow): Shift {
  return create(ShiftSchema, {
    shiftId: s.shift_id,
    venueId: s.venue_id,
    memberId: s.member_id,
    startedAt: timestampFromDate(s.started_at),
    endedAt: optionalTimestamp(s.ended_at),
    source: s.source,
    minutes: s.ended_at ? BigInt(Math.floor((s.ended_at.getTime() - s.started_at.getTime()) / 60_000)) : 0n,
    recordedBy: s.recorded_by,
  });
}

/** Shifts touching the period (open ones too), of one member or all (null), by start; at most 5000. */
export async function shiftsTouching(db: Queryable, venueId: string, memberId: string | null, start: Date, end: Date): Promise<ShiftRow[]> {
  const { rows } = await db.query<ShiftRow>(
    `SELECT * FROM venue.shifts WHERE venue_id = $1 AND ($2::uuid IS NULL OR member_id = $2) AND started_at < $4 AND COALESCE(ended_at, 'infinity') > $3
      ORDER BY started_at LIMIT 5000`,
    [venueId, memberId, start, end],
  );
  return rows;
}

/**
 * Everyone who was ever on the staff before the period ended, in joining order (the last tie-break of a split);
 * not a membership that ended before it began (no time on the staff: nothing to say of it in a split).
 */
export async function rosterFor(db: Queryable, venueId: string, periodEnd: Date): Promise<RosterMember[]> {
  const { rows } = await db.query<MemberRow & { points: number; is_manager: boolean }>(
    `SELECT m.*, r.points, r.is_manager FROM venue.members m JOIN venue.roles r USING (venue_id, role_id)
      WHERE m.venue_id = $1 AND m.joined_at < $2 AND (m.left_at IS NULL OR m.left_at > m.joined_at) ORDER BY m.joined_at, m.member_id`,
    [venueId, periodEnd],
  );
  return rows.map((m) => ({
    memberId: m.member_id,
    workerId: m.worker_id,
    displayName: m.display_name,
    roleId: m.role_id,
    isManager: m.is_manager,
    points: m.points,
    joinedAt: m.joined_at,
    leftAt: m.left_at,
  }));
}

/**
 * The lock a confirm holds alone while it reads a period's shifts and saves its plan. A manager's recorded or
 * imported shift holds it shared: one checked against the splits made (paidSplitOver) while a confirm read the
 * period, and committed after, counted in no split.
 */
export const distributeLock = (venueId: string) => `venue.distribute.${venueId}`;

/**
 * A split already made (or being posted) of a period the span [start, end) falls in, by hours or points: a shift
 * recorded in it now would count in no split, and its hours would never be paid. Fixed-percentage splits read no shifts.
 */
export async function paidSplitOver(db: Queryable, venueId: string, start: Date, end: Date): Promise<{ distribution_id: string; period_start: Date; period_end: Date } | undefined> {
  const { rows } = await db.query<{ distribution_id: string; period_start: Date; period_end: Date }>(
    `SELECT distribution_id, period_start, period_end FROM venue.distributions
      WHERE venue_id = $1 AND status IN ('posting', 'confirmed') AND method <> $4 AND period_start < $3 AND period_end > $2
      ORDER BY period_start LIMIT 1`,
    [venueId, start, end, SplitMethod.FIXED_PERCENTAGES],
  );
  return rows[0];
}

/**
 * A period's finished shifts and those still open in it, read in one statement: read apart, a clock-out (or a
 * removal closing a shift) committing between the two reads counted as neither, and its hours were never paid.
 */
export async function shiftsOfPeriod(db: Queryable, venueId: string, start: Date, end: Date): Promise<{ finished: ShiftSpan[]; open: Array<{ displayName: string; startedAt: Date }> }> {
  const { rows } = await db.query<ShiftRow & { display_name: string }>(
    `SELECT s.*, m.display_name FROM venue.shifts s JOIN venue.members m USING (member_id)
      WHERE s.venue_id = $1 AND s.started_at < $3
        AND (s.ended_at > $2 OR (s.ended_at IS NULL AND s.started_at > $2::timestamptz - interval '1 day'))
      ORDER BY s.started_at`,
    [venueId, start, end],
  );
  const open = rows.filter((s) => !s.ended_at);
  return {
    finished: rows.filter((s) => s.ended_at).map((s) => ({ memberId: s.member_id, start: s.started_at, end: s.ended_at! })),
    // As many as a note can name.
    open: open.slice(0, 20).map((s) => ({ displayName: s.display_name, startedAt: s.started_at })),
  };
}

/** Finished shifts touching the period. */
export async function shiftsIn(db: Queryable, venueId: string, start: Date, end: Date): Promise<ShiftSpan[]> {
  const { rows } = await db.query<ShiftRow>(
    `SELECT * FROM venue.shifts WHERE venue_id = $1 AND ended_at IS NOT NULL AND started_at < $3 AND ended_at > $2`,
    [venueId, start, end],
  );
  return rows.map((s) => ({ memberId: s.member_id, start: s.started_at, end: s.ended_at! }));
}

export interface RuleRow {
  venue_id: string;
  version: number;
  method: number;
  include_managers: boolean;
  fixed_shares: { member_id: string; basis_points: number }[];
  note: string;
  created_by: string;
  created_at: Date;
}

export function ruleSpec(r: RuleRow): RuleSpec {
  return {
    version: r.version,
    method: r.method,
    includeManagers: r.include_managers,
    fixedShares: r.fixed_shares.map((f) => ({ memberId: f.member_id, basisPoints: f.basis_points })),
  };
}

export function ruleSummary(r: RuleRow): string {
  const base = `Version ${r.version}: ${METHOD_WORDS[r.method] ?? "unknown"}`;
  const fixed = r.method === 4 ? ` (${r.fixed_shares.map((f) => `${(f.basis_points / 100).toFixed(2)}%`).join(", ")})` : "";
  return `${base}${fixed}; managers ${r.include_managers ? "included" : "not included"}; individual tips kept by their worker.`;
}

export function toRule(r: RuleRow): SplitRule {
  return create(SplitRuleSchema, {
    venueId: r.venue_id,
    version: r.version,
    method: r.method,
    includeManagers: r.include_managers,
    fixedShares: r.fixed_shares.map((f) => ({ memberId: f.member_id, basisPoints: f.basis_points })),
    poolIndividualTips: false,
    note: r.note,
    createdBy: r.created_by,
    createdAt: timestampFromDate(r.created_at),
    summary: ruleSummary(r),
  });
}

export async function ruleInForce(db: Queryable, venueId: string, version = 0): Promise<RuleRow | undefined> {
  const { rows } = await db.query<RuleRow>(
    version
      ? `SELECT * FROM venue.split_rules WHERE venue_id = $1 AND version = $2`
      : `SELECT * FROM venue.split_rules WHERE venue_id = $1 AND $2::int = 0 ORDER BY version DESC LIMIT 1`,
    [venueId, version],
  );
  return rows[0];
}

/** Every version of the venue's rule, newest first. */
export async function ruleVersions(db: Queryable, venueId: string): Promise<RuleRow[]> {
  const { rows } = await db.query<RuleRow>(`SELECT * FROM venue.split_rules WHERE venue_id = $1 ORDER BY version DESC`, [venueId]);
  return rows;
}

/** Serialises rule changes at a venue until the caller's transaction ends, so versions stay gapless. */
export async function lockRules(tx: Queryable, venueId: string): Promise<void> {
  await lockForTransaction(tx, `venue.rules.${venueId}`);
}

/** The version an earlier request under this idempotency key made, with that request's hash. */
export async function ruleByIdempotencyKey(tx: Queryable, venueId: string, key: string): Promise<(RuleRow & { request_hash: string }) | undefined> {
  const { rows } = await tx.query<RuleRow & { request_hash: string }>(
    `SELECT * FROM venue.split_rules WHERE venue_id = $1 AND idempotency_key = $2`,
    [venueId, key],
  );
  return rows[0];
}

export interface NewRule {
  venueId: string;
  method: number;
  includeManagers: boolean;
  fixedShares: RuleRow["fixed_shares"];
  note: string;
  createdBy: string;
  idempotencyKey: string;
  requestHash: string;
}

/** Adds the next version; call under lockRules. */
export async function insertRule(tx: Queryable, r: NewRule): Promise<RuleRow> {
  const { rows } = await tx.query<RuleRow>(
    `INSERT INTO venue.split_rules (venue_id, version, method, include_managers, fixed_shares, note, created_by, idempotency_key, request_hash)
     SELECT $1, COALESCE(max(version), 0) + 1, $2, $3, $4, $5, $6, $7, $8 FROM venue.split_rules WHERE venue_id = $1 RETURNING *`,
    [r.venueId, r.method, r.includeManagers, JSON.stringify(r.fixedShares), r.note, r.createdBy, r.idempotencyKey, r.requestHash],
  );
  return rows[0];
}

export interface DistributionRow {
  distribution_id: string;
  venue_id: string;
  period_start: Date;
  period_end: Date;
  revision: number;
  currency: string;
  rule_version: number;
  method: number;
  collected_minor: bigint;
  tip_count: bigint;
  status: "posting" | "confirmed" | "reversed" | "abandoned";
  /** Why the ledger refused an abandoned plan. */
  abandon_reason: string;
  entry_id: string | null;
  reversal_entry_id: string | null;
  reversal_reason: string;
  confirmed_by: string;
  confirmed_at: Date | null;
  reversed_at: Date | null;
}

export interface ShareRow {
  distribution_id: string;
  line: number;
  member_id: string;
  worker_id: string;
  display_name: string;
  role_id: string;
  weight: bigint;
  total_weight: bigint;
  minutes: bigint;
  amount_minor: bigint;
  remainder_minor: bigint;
  explanation: string;
}

const STATUS: Record<DistributionRow["status"], DistributionStatus> = {
  posting: DistributionStatus.POSTING,
  confirmed: DistributionStatus.CONFIRMED,
  reversed: DistributionStatus.REVERSED,
  abandoned: DistributionStatus.UNSPECIFIED,
};

export function toShareLine(s: ShareRow, currency: string) {
  return create(ShareLineSchema, {
    memberId: s.member_id,
    workerId: s.worker_id,
    displayName: s.display_name,
    roleId: s.role_id,
    weight: s.weight,
    totalWeight: s.total_weight,
    amount: money(s.amount_minor, currency),
    minutes: s.minutes,
    explanation: s.explanation,
    remainderMinor: s.remainder_minor,
  });
}

/** `shown`: the lines the reader may see (a member, their own); the totals are always the whole split's. */
export function toDistribution(d: DistributionRow, shares: ShareRow[], shown: ShareRow[] = shares): Distribution {
  const distributed = shares.reduce((s, x) => s + x.amount_minor, 0n);
  // As the wallet paid them: a line rounded to nothing is kept (the split shows it) and paid nothing.
  const paid = shares.filter((x) => x.amount_minor > 0n).length;
  return create(DistributionSchema, {
    distributionId: d.distribution_id,
    venueId: d.venue_id,
    period: { start: timestampFromDate(d.period_start), end: timestampFromDate(d.period_end) },
    ruleVersion: d.rule_version,
    method: d.method,
    collected: money(d.collected_minor, d.currency),
    distributed: money(distributed, d.currency),
    tipCount: d.tip_count,
    shares: shown.map((s) => toShareLine(s, d.currency)),
    remainderRule: REMAINDER_RULE,
    status: STATUS[d.status],
    entryId: d.entry_id ?? "",
    reversalEntryId: d.reversal_entry_id ?? "",
    reversalReason: d.reversal_reason,
    confirmedBy: d.confirmed_by,
    confirmedAt: optionalTimestamp(d.confirmed_at),
    reversedAt: optionalTimestamp(d.reversed_at),
    revision: d.revision,
    summary: `${METHOD_WORDS[d.method] ?? ""} (rule v${d.rule_version}); ${paid} members paid`,
    memberCount: paid,
    roundingRemainderMinor: shares.reduce((s, x) => s + x.remainder_minor, 0n),
  });
}

export async function loadDistribution(db: Queryable, distributionId: string): Promise<{ d: DistributionRow; shares: ShareRow[] } | undefined> {
  const { rows } = await db.query<DistributionRow>(`SELECT * FROM venue.distributions WHERE distribution_id = $1`, [distributionId]);
  if (!rows[0]) return undefined;
  const shares = await db.query<ShareRow>(`SELECT * FROM venue.shares WHERE distribution_id = $1 ORDER BY line`, [distributionId]);
  return { d: rows[0], shares: shares.rows };
}

/** What each member was paid by the venue's confirmed distributions within the period, and by how many. */
export async function paidInPeriod(db: Queryable, venueId: string, start: Date, end: Date): Promise<{ member_id: string; total: bigint; n: number }[]> {
  const { rows } = await db.query<{ member_id: string; total: bigint; n: number }>(
    `SELECT s.member_id, sum(s.amount_minor)::bigint AS total, count(*)::int AS n FROM venue.shares s JOIN venue.distributions d USING (distribution_id)
      WHERE d.venue_id = $1 AND d.status = 'confirmed' AND d.period_start >= $2 AND d.period_end <= $3 GROUP BY s.member_id`,
    [venueId, start, end],
  );
  return rows;
}

/** Up to `limit` of the venue's distributions (not abandoned) before the cursor, latest period first. */
export async function distributionsPage(db: Queryable, venueId: string, cursor: { at: string; id: string } | undefined, limit: number): Promise<PagedRow<DistributionRow>[]> {
  const { rows } = await db.query<PagedRow<DistributionRow>>(
    `SELECT *, ${keysetTime("period_start")} AS page_at FROM venue.distributions WHERE venue_id = $1 AND status <> 'abandoned'
       AND ($2::timestamptz IS NULL OR (period_start, distribution_id) < ($2::timestamptz, $3::uuid))
     ORDER BY period_start DESC, distribution_id DESC LIMIT $4`,
    [venueId, cursor?.at ?? null, cursor?.id ?? null, limit],
  );
  return rows;
}

export async function sharesOf(db: Queryable, distributionId: string): Promise<ShareRow[]> {
  return (await db.query<ShareRow>(`SELECT * FROM venue.shares WHERE distribution_id = $1 ORDER BY line`, [distributionId])).rows;
}

/** A page's row with its position to the microsecond (keysetTime): a Date's milliseconds would skip rows between pages. */
export type PagedRow<T> = T & { page_at: string };

/** A worker's share of one distribution, with the distribution's facts and how many were paid from its pool. */
export type WorkerShareRow = PagedRow<ShareRow & DistributionRow & { members_paid: number; pool_total: bigint }>;

/**
 * Up to `limit` of a worker's shares of confirmed or reversed distributions before the cursor, latest confirmed first.
 * A share is (distribution, member): a worker who left and came back may hold two in one distribution.
 */
export async function sharesOfWorker(db: Queryable, workerId: string, cursor: { at: string; id: string; member: string } | undefined, limit: number): Promise<WorkerShareRow[]> {
  const { rows } = await db.query<WorkerShareRow>(
    `SELECT s.*, d.venue_id, d.period_start, d.period_end, d.method, d.rule_version, d.currency, d.status, d.confirmed_at,
            ${keysetTime("d.confirmed_at")} AS page_at,
            (SELECT count(*)::int FROM venue.shares x WHERE x.distribution_id = d.distribution_id AND x.amount_minor > 0) AS members_paid,
            (SELECT sum(x.amount_minor)::bigint FROM venue.shares x WHERE x.distribution_id = d.distribution_id) AS pool_total
       FROM venue.shares s JOIN venue.distributions d USING (distribution_id)
      WHERE s.worker_id::text = $1 AND d.status IN ('confirmed', 'reversed') AND s.amount_minor > 0
        AND ($2::timestamptz IS NULL OR (d.confirmed_at, d.distribution_id, s.member_id) < ($2::timestamptz, $3::uuid, $5::uuid))
      ORDER BY d.confirmed_at DESC, d.distribution_id DESC, s.member_id DESC LIMIT $4`,
    [workerId, cursor?.at ?? null, cursor?.id ?? null, limit, cursor?.member ?? null],
  );
  return rows;
}

/**
 * Who did a venue action: a user, and when they acted by the admin role at a venue they do not manage, the
 * address they called from (access.ts sets it): the console's audit log records that action too.
 */
export interface VenueActor {
  subject: string;
  asAdmin?: { ip: string };
}

/**
 * The console's audit action for each action of a venue's own trail that an admin may take there
 * (undefined: only the venue's own people take it, or the service does).
 */
const CONSOLE_ACTIONS = {
  "role.changed": AuditAction.VENUE_STAFF_CHANGED,
  "rule.changed": AuditAction.VENUE_SPLIT_RULE_SET,
  "member.invited": AuditAction.VENUE_STAFF_CHANGED,
  "member.invitation_resent": AuditAction.VENUE_STAFF_CHANGED,
  "member.updated": AuditAction.VENUE_STAFF_CHANGED,
  "member.left": AuditAction.VENUE_STAFF_CHANGED,
  "member.invitation_cancelled": AuditAction.VENUE_STAFF_CHANGED,
  "member.joined": undefined,
  "manager.invited": AuditAction.VENUE_MANAGERS_CHANGED,
  "manager.invitation_resent": AuditAction.VENUE_MANAGERS_CHANGED,
  "manager.invitation_cancelled": AuditAction.VENUE_MANAGERS_CHANGED,
  "manager.removed": AuditAction.VENUE_MANAGERS_CHANGED,
  "manager.joined": undefined,
  "shift.recorded": AuditAction.VENUE_SHIFTS_CHANGED,
  "shifts.imported": AuditAction.VENUE_SHIFTS_CHANGED,
  "distribution.confirmed": AuditAction.VENUE_DISTRIBUTION_CONFIRMED,
  "distribution.reversed": AuditAction.VENUE_DISTRIBUTION_REVERSED,
  "distribution.abandoned": undefined,
} as const satisfies Record<string, AuditAction | undefined>;

export type VenueAuditAction = keyof typeof CONSOLE_ACTIONS;

const auditJson = (detail: unknown) => JSON.stringify(detail, (_k, v) => (typeof v === "bigint" ? v.toString() : v));

/** Appends to the venue's audit trail, and to the console's when an admin acted at a venue they do not manage. */
export async function audit(db: Queryable, venueId: string, actor: VenueActor | string, action: VenueAuditAction, detail: unknown): Promise<void> {
  const who: VenueActor = typeof actor === "string" ? { subject: actor } : actor;
  await db.query(`INSERT INTO venue.audit_records (venue_id, actor, action, detail) VALUES ($1, $2, $3, $4)`, [venueId, who.subject, action, auditJson(detail)]);
  await auditInConsole(db, venueId, who, action, detail);
}

/** The console's record of an admin's action at a venue they do not manage (nothing for anyone else), in `db`'s transaction. */
export async function auditInConsole(db: Queryable, venueId: string, actor: VenueActor, action: VenueAuditAction, detail: unknown): Promise<void> {
  if (!actor.asAdmin) return;
  const consoleAction = CONSOLE_ACTIONS[action];
  if (consoleAction === undefined) throw new Error(`${action} is not an admin's action: it has no console audit action`);
  await auditAdminActionOf(db, "venue", { userId: actor.subject, ip: actor.asAdmin.ip }, { action: consoleAction, target: `venue:${venueId}`, detail: `${action} ${auditJson(detail)}` });
}

export interface AuditRecordRow {
  sequence: string;
  venue_id: string;
  at: Date;
  actor: string;
  action: string;
  detail: unknown;
}

/** Up to `limit` of the venue's audit records before the sequence number (null = the latest), newest first. */
export async function auditRecords(db: Queryable, venueId: string, before: bigint | undefined, limit: number): Promise<AuditRecordRow[]> {
  const { rows } = await db.query<AuditRecordRow>(
    `SELECT * FROM venue.audit_records WHERE venue_id = $1 AND ($2::bigint IS NULL OR sequence < $2) ORDER BY sequence DESC LIMIT $3`,
    [venueId, before?.toString() ?? null, limit],
  );
  return rows;
}
