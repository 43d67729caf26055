// Co-managers: invited by phone, made managers when the holder of that number accepts, signed in.
// qr keeps who manages a venue (every access check reads it); this keeps the invitations, the
// names they gave and the audit trail. A venue always keeps one manager (qr refuses its last's removal).
import { randomUUID } from "node:crypto";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { AuthInternalService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { VenueManagerChangedSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { TemplateKey } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { NotificationInternalService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { QrInternalService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { ManagerInvitationSchema, ManagerSchema, type Manager, type ManagerInvitation } from "@ttip/proto/ttip/venue/v1/venue_pb.js";
import { AlreadyExistsError, type Clock, clockOf, DependencyUnavailableError, emitEvent, IdempotencyConflictError, InvalidStateError, lockForTransaction, type Logger, maskPhone, NotFoundError, optionalTimestamp, parseKenyanMobile, PermissionDeniedError, type Pool, type Principal, type Queryable, requireKenyanMobile, type ServiceContext, withTransaction } from "@ttip/runtime";
import type { Access, VenueCaller, VenueInfo } from "./access.js";
import { hashToken, type InvitationBudgets, type InvitationLink, linkExpired, newLink, requireLinkLive, resendMakesLink, textLink } from "./invitation-link.js";
import type { MembersConfig } from "./members.js";
import { audit, currentMemberOf } from "./store.js";

interface InvitationRow {
  invitation_id: string;
  venue_id: string;
  phone: string;
  display_name: string;
  token_hash: string | null;
  invite_key: string;
  invited_by: string;
  invited_at: Date;
  accepted_by: string | null;
  accepted_at: Date | null;
  cancelled_at: Date | null;
  /** The current link's (see invitation-link.ts). */
  sent_at: Date | null;
  expires_at: Date | null;
  send_key: string | null;
  texted: boolean;
}

const CALL = { timeoutMs: 5_000 };
/** A venue's pending manager invitations listed at most (qr lists at most as many managers). */
const MAX_PENDING = 100;

export const toInvitation = (r: InvitationRow): ManagerInvitation => create(ManagerInvitationSchema, {
  invitationId: r.invitation_id,
  venueId: r.venue_id,
  displayName: r.display_name,
  phoneMasked: maskPhone(r.phone),
  invitedAt: timestampFromDate(r.invited_at),
  expiresAt: optionalTimestamp(r.expires_at),
  acceptedAt: optionalTimestamp(r.accepted_at),
  cancelledAt: optionalTimestamp(r.cancelled_at),
});

/** The invitation's new link, under the key that asked for it, not yet texted. */
async function replaceLink(tx: Queryable, inv: InvitationRow, link: InvitationLink, key: string, displayName = inv.display_name): Promise<InvitationRow> {
  const { rows: [row] } = await tx.query<InvitationRow>(
    `UPDATE venue.manager_invitations SET token_hash = $2, sent_at = $3, expires_at = $4, send_key = $5, texted = false, display_name = $6
      WHERE invitation_id = $1 RETURNING *`,
    [inv.invitation_id, link.hash, link.sentAt, link.expiresAt, key, displayName]);
  return row;
}

/**
 * The lock both acceptances (the staff's and a manager's) take for one person at one venue before checking the
 * other: two accepted at once would each find the other not yet done, and make a manager a member of the staff.
 */
export const personAtVenueLock = (venueId: string, userId: string) => `venue.person.${venueId}.${userId}`;

/** A peer's refusal passes on as it is (it names the field); its absence is UNAVAILABLE, to retry. */
export function unavailable(what: string) {
  return (err: unknown): never => {
    const e = ConnectError.from(err);
    if ([Code.NotFound, Code.FailedPrecondition, Code.InvalidArgument, Code.PermissionDenied].includes(e.code)) throw e;
    throw new DependencyUnavailableError(`${what} cannot be done now (${e.rawMessage}); retry`);
  };
}

/** Thrown to undo a removal's records: the user's removal was recorded before (Managers.remove). */
const REMOVED_BEFORE = new Error("removed before");

/** The user's last joining or removal as a manager of the venue, as its audit records say; undefined: neither. */
async function lastManagerChange(db: Queryable, venueId: string, userId: string): Promise<"manager.joined" | "manager.removed" | undefined> {
  const { rows: [row] } = await db.query<{ action: "manager.joined" | "manager.removed" }>(
    `SELECT action FROM venue.audit_records
      WHERE venue_id = $1 AND ((action = 'manager.removed' AND detail->>'user_id' = $2) OR (action = 'manager.joined' AND actor = $2))
      ORDER BY sequence DESC LIMIT 1`, [venueId, userId]);
  return row?.action;
}

/** Told to the venue's managers (notification), in the transaction that made the change. */
async function managerEvent(tx: Queryable, e: { venueId: string; userId: string; displayName: string; change: "joined" | "removed"; actorId: string }) {
  await emitEvent(tx, "venue", VenueManagerChangedSchema, e, e.venueId);
}

export class Managers {
  private readonly pool: Pool;
  private readonly logger: Logger;
  private readonly auth: Client<typeof AuthInternalService>;
  private readonly qr: Client<typeof QrInternalService>;
  private readonly notification: Client<typeof NotificationInternalService>;
  private readonly clock: Clock;

  constructor(ctx: ServiceContext, private readonly config: () => MembersConfig, private readonly access: Access, private readonly budgets: InvitationBudgets) {
    this.pool = ctx.pool;
    this.clock = clockOf(ctx);
    this.logger = ctx.logger;
    this.auth = createClient(AuthInternalService, ctx.peers("auth"));
    this.qr = createClient(QrInternalService, ctx.peers("qr"));
    this.notification = createClient(NotificationInternalService, ctx.peers("notification"));
  }

  /** A user's number as auth holds it (2547…) and their account's name; undefined for a user auth does not know. */
  async account(userId: string): Promise<{ phone: string; name: string } | undefined> {
    try {
      const { user, phone } = await this.auth.getUserById({ userId }, CALL);
      return { phone: parseKenyanMobile(phone) ?? phone.replace(/^\+/, ""), name: user?.displayName ?? "" };
    } catch (err) {
      if (ConnectError.from(err).code === Code.NotFound) return undefined;
      throw new DependencyUnavailableError(`accounts cannot be read now (${ConnectError.from(err).rawMessage}); retry`);
    }
  }

  /** Whether the number belongs to one of the venue's managers (whose accounts auth knows). */
  async managesByPhone(venueId: string, phone: string): Promise<boolean> {
    const accounts = await Promise.all((await this.access.managerIds(venueId)).map((id) => this.account(id)));
    return accounts.some((a) => a?.phone === phone);
  }

  /**
   * Records an invitation (or, for a repeat of its key or another to the same number, finds it) and texts a
   * fresh link: the one sent before stops working. Only the link's hash is kept. A repeat of the key texts nothing
   * more once its link was texted (before, each repeat texted a new link, voiding the one the manager held).
   */
  async invite(venue: VenueInfo, caller: VenueCaller, input: { phone: string; displayName: string; key: string }): Promise<{ invitation: InvitationRow; sent: boolean }> {
    const phone = requireKenyanMobile(input.phone, "phone");
    if (await this.managesByPhone(venue.venueId, phone)) throw new AlreadyExistsError("phone: this number already manages the venue");
    const now = this.clock.now();
    const link = newLink(now);
    const { invitation, made } = await withTransaction(this.pool, async (tx) => {
      await lockForTransaction(tx, `venue.manager_invitations.${venue.venueId}`);
      const { rowCount: staff } = await tx.query(`SELECT 1 FROM venue.members WHERE venue_id = $1 AND phone = $2 AND left_at IS NULL`, [venue.venueId, phone]);
      if (staff) throw new InvalidStateError("phone: this number is on the venue's staff, and a manager is not (their share of the pool would be theirs to set): end their membership first");
      const { rows: [prior] } = await tx.query<InvitationRow>(`SELECT * FROM venue.manager_invitations WHERE venue_id = $1 AND invite_key = $2`, [venue.venueId, input.key]);
      if (prior && prior.phone !== phone) throw new IdempotencyConflictError(input.key, "manager invitation");
      if (prior && (prior.accepted_at || prior.cancelled_at)) return { invitation: prior, made: false };
      const pending = prior ?? (await tx.query<InvitationRow>(
        `SELECT * FROM venue.manager_invitations WHERE venue_id = $1 AND phone = $2 AND accepted_at IS NULL AND cancelled_at IS NULL`, [venue.venueId, phone])).rows[0];
      // Sent again since under another key (ResendManagerInvitation), whose link was texted: the one the invitee holds.
      if (prior && prior.send_key !== input.key && prior.texted) return { invitation: prior, made: false };
      if (prior && !resendMakesLink({ sentAt: prior.sent_at, sendKey: prior.send_key, texted: prior.texted }, input.key, now)) return { invitation: prior, made: false };
      // Found by the number: a repeat of the key that last texted it texts nothing more either.
      if (pending && pending.send_key === input.key && pending.texted) return { invitation: pending, made: false };
      await this.budgets.charge(phone, venue.venueId, caller.subject);
      if (pending) return { invitation: await replaceLink(tx, pending, link, input.key, input.displayName), made: true };
      const { rows } = await tx.query<InvitationRow>(
        `INSERT INTO venue.manager_invitations (invitation_id, venue_id, phone, display_name, token_hash, invite_key, invited_by, sent_at, expires_at, send_key, texted)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $6, false) RETURNING *`,
        [randomUUID(), venue.venueId, phone, input.displayName, link.hash, input.key, caller.subject, link.sentAt, link.expiresAt]);
      await audit(tx, venue.venueId, caller, "manager.invited", { invitation_id: rows[0].invitation_id, display_name: input.displayName });
      return { invitation: rows[0], made: true };
    });
    if (invitation.accepted_at || invitation.cancelled_at) return { invitation, sent: false };
    return { invitation, sent: made ? await this.text(venue, invitation, link) : true };
  }

  /**
   * Texts a pending invitation a new link; the one before stops working. A repeat of `key` texts nothing more
   * once its link was texted (and a new link if its SMS was not sent).
   */
  async resend(venue: VenueInfo, caller: VenueCaller, invitationId: string, key: string): Promise<{ invitation: InvitationRow; sent: boolean }> {
    const now = this.clock.now();
    const link = newLink(now);
    const { invitation, made } = await withTransaction(this.pool, async (tx) => {
      const { rows: [inv] } = await tx.query<InvitationRow>(
        `SELECT * FROM venue.manager_invitations WHERE venue_id = $1 AND invitation_id = $2 FOR UPDATE`, [venue.venueId, invitationId]);
      if (!inv) throw new NotFoundError(`invitation_id: no invitation ${invitationId} at this venue`);
      if (inv.accepted_at) throw new InvalidStateError("invitation_id: this invitation was accepted already");
      if (inv.cancelled_at) throw new InvalidStateError("invitation_id: this invitation was cancelled: invite them again");
      if (!resendMakesLink({ sentAt: inv.sent_at, sendKey: inv.send_key, texted: inv.texted }, key, now)) return { invitation: inv, made: false };
      await this.budgets.charge(inv.phone, venue.venueId, caller.subject);
      await audit(tx, venue.venueId, caller, "manager.invitation_resent", { invitation_id: inv.invitation_id, display_name: inv.display_name });
      return { invitation: await replaceLink(tx, inv, link, key), made: true };
    });
    return { invitation, sent: made ? await this.text(venue, invitation, link) : true };
  }

  private text(venue: VenueInfo, invitation: InvitationRow, link: InvitationLink): Promise<boolean> {
    const url = `${this.config().joinUrl.replace(/\/$/, "")}/manage/${link.token}`;
    return textLink(this.notification, this.logger, { key: `venue-manager-invite:${invitation.invitation_id}:${link.hash.slice(0, 16)}`, phone: invitation.phone, template: TemplateKey.MANAGER_INVITE, venueName: venue.name, url },
      () => this.pool.query(`UPDATE venue.manager_invitations SET texted = true WHERE invitation_id = $1 AND token_hash = $2`, [invitation.invitation_id, link.hash]));
  }

  /** The venue a pending invitation is from (its id only: the caller names it) and when its link stops, for anyone holding it. */
  async invitationVenue(token: string): Promise<{ venueId: string; expiresAt: Date | null; expired: boolean }> {
    const { rows: [row] } = await this.pool.query<InvitationRow>(
      `SELECT venue_id, expires_at FROM venue.manager_invitations WHERE token_hash = $1 AND accepted_at IS NULL AND cancelled_at IS NULL`, [hashToken(token)]);
    if (!row) throw new NotFoundError("token: no such invitation (it may have been replaced, cancelled or accepted)");
    return { venueId: row.venue_id, expiresAt: row.expires_at, expired: linkExpired(row.expires_at, this.clock.now()) };
  }

  /**
   * The signed-in holder of the invited number becomes a manager: auth's role, then qr's list, then the
   * invitation marked, under its row lock (a cancel waits). Both calls are idempotent, so a retry after any
   * failure finishes what was begun; a repeat by the same user answers the same.
   */
  async accept(caller: Principal, token: string): Promise<{ venueId: string }> {
    return withTransaction(this.pool, async (tx) => {
      const { rows: [inv] } = await tx.query<InvitationRow>(`SELECT * FROM venue.manager_invitations WHERE token_hash = $1 FOR UPDATE`, [hashToken(token)]);
      if (!inv) throw new NotFoundError("token: no such invitation (it may have been replaced or cancelled)");
      if (inv.accepted_by) {
        if (inv.accepted_by !== caller.subject) throw new InvalidStateError("token: this invitation was accepted by someone else");
        return { venueId: inv.venue_id };
      }
      requireLinkLive(inv.expires_at, this.clock.now());
      await lockForTransaction(tx, personAtVenueLock(inv.venue_id, caller.subject));
      if ((await this.account(caller.subject))?.phone !== inv.phone) {
        throw new PermissionDeniedError("this invitation was sent to another number: sign in with that number to accept it");
      }
      if (await currentMemberOf(tx, inv.venue_id, caller.subject)) {
        throw new InvalidStateError("token: you are on this venue's staff, and a manager is not (your share of the pool would be yours to set): ask a manager to end your membership first");
      }
      await this.auth.grantVenueManagerRole({ userId: caller.subject }, CALL).catch(unavailable("the manager's role"));
      await this.qr.addVenueManager({ venueId: inv.venue_id, userId: caller.subject }, CALL).catch(unavailable("the venue's managers"));
      await tx.query(`UPDATE venue.manager_invitations SET accepted_by = $2, accepted_at = now() WHERE invitation_id = $1`, [inv.invitation_id, caller.subject]);
      await audit(tx, inv.venue_id, caller, "manager.joined", { invitation_id: inv.invitation_id, display_name: inv.display_name });
      await managerEvent(tx, { venueId: inv.venue_id, userId: caller.subject, displayName: inv.display_name, change: "joined", actorId: caller.subject });
      return { venueId: inv.venue_id };
    });
  }

  async cancel(venueId: string, caller: VenueCaller, invitationId: string): Promise<void> {
    await withTransaction(this.pool, async (tx) => {
      const { rows: [cancelled] } = await tx.query<InvitationRow>(
        `UPDATE venue.manager_invitations SET cancelled_at = now(), token_hash = NULL
          WHERE venue_id = $1 AND invitation_id = $2 AND accepted_at IS NULL AND cancelled_at IS NULL RETURNING display_name`, [venueId, invitationId]);
      if (!cancelled) throw new NotFoundError(`invitation_id: no pending invitation ${invitationId} at this venue`);
      await audit(tx, venueId, caller, "manager.invitation_cancelled", { invitation_id: invitationId, display_name: cancelled.display_name });
    });
  }

  /** The venue's managers (named as their invitations did, else as their accounts do) and its pending invitations. */
  async list(venueId: string, caller: Principal): Promise<{ managers: Manager[]; invitations: ManagerInvitation[] }> {
    const ids = await this.access.managerIds(venueId);
    const [accounts, named, pending] = await Promise.all([
      Promise.all(ids.map((id) => this.account(id).catch(() => undefined))),
      this.pool.query<{ accepted_by: string; display_name: string }>(
        `SELECT DISTINCT ON (accepted_by) accepted_by::text, display_name FROM venue.manager_invitations
          WHERE venue_id = $1 AND accepted_by::text = ANY($2::text[]) ORDER BY accepted_by, accepted_at DESC`, [venueId, ids]),
      this.pool.query<InvitationRow>(
        `SELECT * FROM venue.manager_invitations WHERE venue_id = $1 AND accepted_at IS NULL AND cancelled_at IS NULL ORDER BY invited_at LIMIT $2`, [venueId, MAX_PENDING]),
    ]);
    const names = new Map(named.rows.map((r) => [r.accepted_by, r.display_name]));
    const managers = ids.map((userId, i) => create(ManagerSchema, {
      userId,
      displayName: names.get(userId) || accounts[i]?.name || "",
      phoneMasked: accounts[i] ? maskPhone(accounts[i].phone) : "",
      isYou: userId === caller.subject,
    }));
    return { managers, invitations: pending.rows.map(toInvitation) };
  }

  /**
   * How the managers' messages name a manager: as their accepted invitation did, else (the venue's creator) as
   * their account does, else by their masked number; "" when auth cannot say now (the message still goes).
   */
  private async nameOf(db: Queryable, venueId: string, userId: string): Promise<string> {
    const { rows: [row] } = await db.query<{ display_name: string }>(
      `SELECT display_name FROM venue.manager_invitations WHERE venue_id = $1 AND accepted_by::text = $2 ORDER BY accepted_at DESC LIMIT 1`, [venueId, userId]);
    if (row) return row.display_name;
    const account = await this.account(userId).catch(() => undefined);
    return account?.name || (account ? maskPhone(account.phone) : "");
  }

  /**
   * Ends a user's management: recorded, then asked of qr, whose refusal (their last manager) undoes the record. qr
   * removes at once, before this records: a removal asked again (its answer lost) finds no manager there, and was
   * refused NOT_FOUND; one whose record was not committed was lost to the audit and the managers' messages for good.
   */
  async remove(venueId: string, caller: VenueCaller, userId: string): Promise<void> {
    await withTransaction(this.pool, async (tx) => {
      // Two removals at once (a retry while the first runs) read the same last change: one after the other, the second
      // reads the first's record.
      await lockForTransaction(tx, personAtVenueLock(venueId, userId));
      const last = await lastManagerChange(tx, venueId, userId);
      await audit(tx, venueId, caller, "manager.removed", { user_id: userId });
      await managerEvent(tx, { venueId, userId, displayName: await this.nameOf(tx, venueId, userId), change: "removed", actorId: caller.subject });
      await this.qr.removeVenueManager({ venueId, userId }, CALL).catch((err: unknown) => {
        if (ConnectError.from(err).code !== Code.NotFound || last === undefined) return unavailable("the venue's managers")(err);
        // Recorded removed: this removal asked again, answered as done with nothing more recorded.
        if (last === "manager.removed") throw REMOVED_BEFORE;
        // Joined, and gone from qr with no record of it: this removal's earlier try, recorded now.
      });
    }).catch((err: unknown) => {
      if (err !== REMOVED_BEFORE) throw err;
    });
  }
}
