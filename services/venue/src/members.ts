// Staff: invitations by phone, acceptance by the signed-in worker, roles,
// joined and left dates. One worker may be on several venues' staff.
import { randomUUID } from "node:crypto";
import { createClient, type Client } from "@connectrpc/connect";
import { VenueMemberChangedSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { TemplateKey } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { NotificationInternalService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { QrInternalService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AlreadyExistsError, type Clock, clockOf, emitEvent, fieldError, IdempotencyConflictError, InvalidStateError, lockForTransaction, type Logger, NotFoundError, optionalTimestamp, PermissionDeniedError, type Pool, type Principal, type Queryable, requireKenyanMobile, type ServiceContext, withTransaction } from "@ttip/runtime";
import type { Access, VenueCaller, VenueInfo } from "./access.js";
import { hashToken, type InvitationBudgets, type InvitationLink, linkExpired, newLink, requireLinkLive, resendMakesLink, textLink } from "./invitation-link.js";
import { type Managers, personAtVenueLock, unavailable } from "./managers.js";
import { audit, currentMemberOf, ensureDefaultRoles, memberById, type MemberRow, OWN_MEMBERSHIP } from "./store.js";

async function memberEvent(tx: Queryable, m: MemberRow, change: "invited" | "joined" | "updated" | "left") {
  await emitEvent(tx, "venue", VenueMemberChangedSchema, {
    venueId: m.venue_id,
    memberId: m.member_id,
    workerId: m.worker_id ?? "",
    change,
    roleId: m.role_id,
    joinedAt: timestampFromDate(m.joined_at),
    leftAt: optionalTimestamp(m.left_at),
    displayName: m.display_name,
  }, m.member_id);
}

async function requireRole(db: Queryable, venueId: string, roleId: string, field: string) {
  const { rowCount } = await db.query(`SELECT 1 FROM venue.roles WHERE venue_id = $1 AND role_id = $2`, [venueId, roleId]);
  if (!rowCount) throw fieldError(`${field}`, `no role ${roleId} at this venue (PutRole adds one)`);
}

/** How far ahead a member may be invited to start: a hire agreed for next month, not a typo'd year. */
export const MAX_START_AHEAD_DAYS = 90;
const DAY_MS = 86_400_000;

/** When an invited member starts counting for splits: now when unset; refused naming joined_at when past the limit ahead. */
function startOf(joinedAt: Date | undefined, now: number): Date {
  if (!joinedAt) return new Date(now);
  if (joinedAt.getTime() > now + MAX_START_AHEAD_DAYS * DAY_MS) {
    throw fieldError("joined_at", `at most ${MAX_START_AHEAD_DAYS} days from today; invite them nearer the day they start`);
  }
  return joinedAt;
}

/** The invitation's new link, under the key that asked for it, not yet texted. */
async function replaceLink(tx: Queryable, m: MemberRow, link: InvitationLink, key: string): Promise<MemberRow> {
  const { rows } = await tx.query<MemberRow>(
    `UPDATE venue.members SET invite_token_hash = $2, invite_sent_at = $3, invite_expires_at = $4, invite_send_key = $5, invite_texted = false
      WHERE member_id = $1 RETURNING *`,
    [m.member_id, link.hash, link.sentAt, link.expiresAt, key]);
  return rows[0];
}

/** When a removal takes effect: as asked, or at their start when that is still ahead (a membership that never begins). */
function endOf(m: MemberRow, asked: Date, now: number): Date {
  if (asked.getTime() >= m.joined_at.getTime()) return asked;
  if (m.joined_at.getTime() > now) return m.joined_at;
  throw fieldError("left_at", `before they joined (${m.joined_at.toISOString()})`);
}

export interface MembersConfig {
  /** The page the invitation links to; the token is appended as a path segment. */
  joinUrl: string;
}

export class Members {
  private readonly pool: Pool;
  private readonly logger: Logger;
  private readonly notification: Client<typeof NotificationInternalService>;
  private readonly qr: Client<typeof QrInternalService>;
  private readonly clock: Clock;

  constructor(ctx: ServiceContext, private readonly config: () => MembersConfig, private readonly managers: Managers, private readonly access: Access,
    private readonly budgets: InvitationBudgets) {
    this.pool = ctx.pool;
    this.logger = ctx.logger;
    this.clock = clockOf(ctx);
    this.notification = createClient(NotificationInternalService, ctx.peers("notification"));
    this.qr = createClient(QrInternalService, ctx.peers("qr"));
  }

  /**
   * Adds an invited member and texts a link; only the link's hash is kept. A repeat of the same key finds them, and
   * texts nothing more once its link was texted (before, each repeat charged the SMS budget and texted a new link,
   * voiding the one the worker held): a new link only if its SMS was not sent, or as ResendInvitation makes one.
   */
  async invite(venue: VenueInfo, caller: VenueCaller, input: { phone: string; displayName: string; roleId: string; joinedAt?: Date; key: string }): Promise<{ member: MemberRow; sent: boolean }> {
    const phone = requireKenyanMobile(input.phone, "phone");
    const joinedAt = startOf(input.joinedAt, this.clock.now());
    if (phone === (await this.managers.account(caller.subject))?.phone) {
      throw fieldError("phone", "this is your own number: a venue's manager is not invited to its staff (their share of the pool would be theirs to set)");
    }
    if (await this.managers.managesByPhone(venue.venueId, phone)) {
      throw new InvalidStateError("phone: this number manages the venue, and a manager is not on its staff (their share of the pool would be theirs to set)");
    }
    const now = this.clock.now();
    const link = newLink(now);
    const { member, made } = await withTransaction(this.pool, async (tx) => {
      await ensureDefaultRoles(tx, venue.venueId);
      await requireRole(tx, venue.venueId, input.roleId, "role_id");
      await lockForTransaction(tx, `venue.members.${venue.venueId}`);
      const { rows: prior } = await tx.query<MemberRow>(`SELECT * FROM venue.members WHERE venue_id = $1 AND invite_key = $2`, [venue.venueId, input.key]);
      if (prior[0]) {
        const m = prior[0];
        if (m.phone !== phone) throw new IdempotencyConflictError(input.key, "invitation");
        if (m.worker_id || m.left_at) return { member: m, made: false };
        // Another start under the key is another request (it weighs in the splits), which before was answered with the
        // first as if it had been taken. Not the role: a manager may have changed it since (UpdateMember).
        if (input.joinedAt && m.joined_at.getTime() !== joinedAt.getTime()) throw new IdempotencyConflictError(input.key, "invitation");
        // Sent again since under another key (ResendInvitation), whose link was texted: that is the link the worker holds.
        if (m.invite_send_key !== input.key && m.invite_texted) return { member: m, made: false };
        if (!resendMakesLink({ sentAt: m.invite_sent_at, sendKey: m.invite_send_key, texted: m.invite_texted }, input.key, now)) return { member: m, made: false };
        await this.budgets.charge(phone, venue.venueId, caller.subject);
        return { member: await replaceLink(tx, m, link, input.key), made: true };
      }
      const { rows: current } = await tx.query<MemberRow>(`SELECT * FROM venue.members WHERE venue_id = $1 AND phone = $2 AND left_at IS NULL`, [venue.venueId, phone]);
      if (current[0]?.worker_id) throw new AlreadyExistsError("phone: this number is already on the venue's staff");
      if (current[0]) throw new AlreadyExistsError("phone: this number is already invited to the venue's staff: send its invitation again from the staff list");
      await this.budgets.charge(phone, venue.venueId, caller.subject);
      const { rows } = await tx.query<MemberRow>(
        `INSERT INTO venue.members (member_id, venue_id, phone, display_name, role_id, invite_token_hash, invite_key, invited_by, joined_at,
                                    invite_sent_at, invite_expires_at, invite_send_key, invite_texted)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $7, false) RETURNING *`,
        [randomUUID(), venue.venueId, phone, input.displayName, input.roleId, link.hash, input.key, caller.subject, joinedAt, link.sentAt, link.expiresAt],
      );
      await memberEvent(tx, rows[0], "invited");
      await audit(tx, venue.venueId, caller, "member.invited", { member_id: rows[0].member_id, role_id: input.roleId, joined_at: joinedAt });
      return { member: rows[0], made: true };
    });
    if (member.worker_id || member.left_at) return { member, sent: false };
    return { member, sent: made ? await this.text(venue, member, link) : true };
  }

  /**
   * Texts an invited member a new link; the one before stops working. A repeat of `key` texts nothing more once
   * its link was texted (and a new link if its SMS was not sent).
   */
  async resend(venue: VenueInfo, caller: VenueCaller, memberId: string, key: string): Promise<{ member: MemberRow; sent: boolean }> {
    const now = this.clock.now();
    const link = newLink(now);
    const { member, made } = await withTransaction(this.pool, async (tx) => {
      const m = await memberById(tx, venue.venueId, memberId, true);
      if (!m) throw new NotFoundError(`member_id: no member ${memberId} at this venue`);
      if (m.left_at) throw new InvalidStateError("member_id: this membership has ended: invite them again");
      if (m.worker_id) throw new InvalidStateError("member_id: they accepted the invitation already");
      if (!resendMakesLink({ sentAt: m.invite_sent_at, sendKey: m.invite_send_key, texted: m.invite_texted }, key, now)) return { member: m, made: false };
      await this.budgets.charge(m.phone, venue.venueId, caller.subject);
      await audit(tx, venue.venueId, caller, "member.invitation_resent", { member_id: m.member_id });
      return { member: await replaceLink(tx, m, link, key), made: true };
    });
    return { member, sent: made ? await this.text(venue, member, link) : true };
  }

  private text(venue: VenueInfo, member: MemberRow, link: InvitationLink): Promise<boolean> {
    const url = `${this.config().joinUrl.replace(/\/$/, "")}/${link.token}`;
    return textLink(this.notification, this.logger, { key: `venue-invite:${member.member_id}:${link.hash.slice(0, 16)}`, phone: member.phone, template: TemplateKey.STAFF_INVITE, venueName: venue.name, url },
      () => this.pool.query(`UPDATE venue.members SET invite_texted = true WHERE member_id = $1 AND invite_token_hash = $2`, [member.member_id, link.hash]));
  }

  /** The venue an invitation is from (its id only: the caller names it) and when its link stops, for anyone holding it. */
  async invitationVenue(token: string): Promise<{ venueId: string; expiresAt: Date | null; expired: boolean }> {
    const { rows } = await this.pool.query<MemberRow>(`SELECT venue_id, left_at, invite_expires_at FROM venue.members WHERE invite_token_hash = $1`, [hashToken(token)]);
    if (!rows[0] || rows[0].left_at) throw new NotFoundError("token: no such invitation (it may have been replaced by a newer one, or the membership has ended)");
    const expiresAt = rows[0].invite_expires_at;
    return { venueId: rows[0].venue_id, expiresAt, expired: linkExpired(expiresAt, this.clock.now()) };
  }

  /** The signed-in worker takes the invitation; the venue's managers may then issue their codes at the venue. */
  async accept(caller: Principal, token: string): Promise<MemberRow> {
    return withTransaction(this.pool, async (tx) => {
      const { rows } = await tx.query<MemberRow>(`SELECT * FROM venue.members WHERE invite_token_hash = $1 FOR UPDATE`, [hashToken(token)]);
      const m = rows[0];
      if (!m) throw new NotFoundError("token: no such invitation (it may have been replaced by a newer one)");
      if (m.left_at) throw new InvalidStateError("token: this membership has ended");
      if (m.worker_id) {
        if (m.worker_id !== caller.subject) throw new InvalidStateError("token: this invitation was accepted by someone else");
        // A repeat asks qr again: a staff list out of step (an answer lost before this was built) is put right.
        await this.setQrStaff(m, true);
        return m;
      }
      requireLinkLive(m.invite_expires_at, this.clock.now());
      await lockForTransaction(tx, personAtVenueLock(m.venue_id, caller.subject));
      if (await this.access.manages(m.venue_id, caller.subject)) {
        throw new InvalidStateError("token: you manage this venue, and a manager is not on its staff (your share of the pool would be yours to set)");
      }
      const other = await tx.query(`SELECT 1 FROM venue.members WHERE venue_id = $1 AND worker_id = $2 AND left_at IS NULL`, [m.venue_id, caller.subject]);
      if (other.rowCount) throw new AlreadyExistsError("token: you are already on this venue's staff");
      const from = (await this.managers.account(caller.subject))?.phone;
      // A worker back at the venue starts no earlier than they left: hours recorded on the old membership in an
      // overlap counted on both (a split adds a worker's memberships), paid twice from the pool. Only memberships that
      // lasted count: one removed before its start (left when it was to begin) held no hours.
      const { rows: done } = await tx.query<MemberRow>(
        `UPDATE venue.members SET worker_id = $2, accepted_at = now(), accepted_phone = NULLIF($3, phone),
           joined_at = GREATEST(joined_at, (SELECT max(left_at) FROM venue.members WHERE venue_id = $4 AND worker_id = $2 AND left_at > joined_at))
         WHERE member_id = $1 RETURNING *`,
        [m.member_id, caller.subject, from ?? null, m.venue_id]);
      await memberEvent(tx, done[0], "joined");
      await audit(tx, m.venue_id, caller, "member.joined", { member_id: m.member_id });
      await this.setQrStaff(done[0], true);
      return done[0];
    });
  }

  /**
   * qr lets a venue's managers issue codes for its staff, and a worker taken off loses their codes there. Asked
   * under the member's row lock, before the change commits: qr's refusal or silence undoes the venue's change
   * (UNAVAILABLE, to retry), so a worker off the staff never keeps a code that tips them, and an accept and a
   * removal reach qr in their order. qr commits first: a venue commit that then fails leaves qr ahead until the
   * retry, which is idempotent both ways and finishes it.
   */
  private async setQrStaff(m: MemberRow, onStaff: boolean) {
    if (!m.worker_id) return;
    await this.qr.setVenueStaff({ venueId: m.venue_id, workerId: m.worker_id, onStaff }, { timeoutMs: 5_000 }).catch(unavailable("the venue's staff"));
  }

  async update(venueId: string, caller: VenueCaller, memberId: string, roleId: string, displayName: string): Promise<MemberRow> {
    return withTransaction(this.pool, async (tx) => {
      const m = await memberById(tx, venueId, memberId, true);
      if (!m) throw new NotFoundError(`member_id: no member ${memberId} at this venue`);
      if (m.worker_id === caller.subject) throw new PermissionDeniedError(`member_id: ${OWN_MEMBERSHIP}`);
      if (roleId) await requireRole(tx, venueId, roleId, "role_id");
      const { rows } = await tx.query<MemberRow>(
        `UPDATE venue.members SET role_id = COALESCE(NULLIF($2, ''), role_id), display_name = COALESCE(NULLIF($3, ''), display_name) WHERE member_id = $1 RETURNING *`,
        [memberId, roleId, displayName],
      );
      await memberEvent(tx, rows[0], "updated");
      await audit(tx, venueId, caller, "member.updated", { member_id: memberId, role_id: rows[0].role_id, from_role_id: m.role_id });
      return rows[0];
    });
  }

  /**
   * From left_at on, nothing is theirs; an open shift is closed at that time. A clock-in open over 24 hours by
   * then is left open (staleOpenShift): a day's hours are not taken on the worker's word, and the manager's
   * RecordShift replaces it with the shift worked. Before their start date, the membership ends at it (it never
   * begins: a hire that fell through); an invitation not yet accepted is withdrawn, its link voided.
   */
  async remove(venueId: string, caller: VenueCaller, memberId: string, leftAt: Date | undefined, reason: string, onlyIfInvited = false): Promise<MemberRow> {
    const now = Date.now();
    const asked = leftAt ?? new Date(now);
    if (asked.getTime() > now + 60_000) throw fieldError("left_at", "must not be in the future");
    return withTransaction(this.pool, async (tx) => {
      const m = await memberById(tx, venueId, memberId, true);
      if (!m) throw new NotFoundError(`member_id: no member ${memberId} at this venue`);
      if (onlyIfInvited && m.worker_id) {
        throw new InvalidStateError(`member_id: ${m.display_name} accepted the invitation already${m.left_at ? " and has left" : ""}; to take them off the staff, remove them`);
      }
      if (m.left_at) {
        // A repeat asks qr again (a staff list out of step from before this was built is put right), unless the
        // worker has joined again since: then this old membership's removal must not take their new codes.
        if (m.worker_id) await lockForTransaction(tx, personAtVenueLock(venueId, m.worker_id));
        if (m.worker_id && !(await currentMemberOf(tx, venueId, m.worker_id))) await this.setQrStaff(m, false);
        return m;
      }
      const at = endOf(m, asked, now);
      const { rows } = await tx.query<MemberRow>(`UPDATE venue.members SET left_at = $2, left_reason = $3, invite_token_hash = NULL WHERE member_id = $1 RETURNING *`, [memberId, at, reason]);
      await tx.query(
        `UPDATE venue.shifts SET ended_at = GREATEST($2, started_at + interval '1 minute')
          WHERE member_id = $1 AND ended_at IS NULL AND started_at >= $2::timestamptz - interval '24 hours'`,
        [memberId, at],
      );
      await memberEvent(tx, rows[0], "left");
      const action = m.worker_id ? "member.left" : "member.invitation_cancelled";
      await audit(tx, venueId, caller, action, { member_id: memberId, left_at: at, reason });
      await this.setQrStaff(rows[0], false);
      return rows[0];
    });
  }
}
