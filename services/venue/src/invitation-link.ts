// An invitation's link (to the staff, to manage a venue): a random token of which only the hash is kept, working
// for a fixed time, texted again at most once a minute. Shared by both kinds of invitation.
import { createHash, randomBytes } from "node:crypto";
import type { Client } from "@connectrpc/connect";
import { Channel, type TemplateKey } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import type { NotificationInternalService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { type Cache, consumeOrRefuse, InvalidStateError, type Logger, RateLimitedError } from "@ttip/runtime";

/** How long a link works: two weeks to read an SMS and sign in, not a link found in an old phone a year on. */
export const LINK_TTL_MS = 14 * 86_400_000;
/** A new link no sooner than this after the last texted: its SMS may still be on its way, and a new one voids it. */
export const RESEND_SPACING_MS = 60_000;

export const hashToken = (token: string) => createHash("sha256").update(token).digest("hex");

export interface InvitationLink {
  /** Goes in the SMS only. */
  token: string;
  hash: string;
  sentAt: Date;
  expiresAt: Date;
}

export function newLink(now: number): InvitationLink {
  const token = randomBytes(24).toString("base64url");
  return { token, hash: hashToken(token), sentAt: new Date(now), expiresAt: new Date(now + LINK_TTL_MS) };
}

/** Whether the link has stopped working (NULL: no link is pending, nothing to expire). */
export const linkExpired = (expiresAt: Date | null, now: number) => expiresAt !== null && expiresAt.getTime() <= now;

/** Refuses accepting an expired link, saying when it stopped and what to do. */
export function requireLinkLive(expiresAt: Date | null, now: number): void {
  if (linkExpired(expiresAt, now)) {
    throw new InvalidStateError(`token: this invitation's link stopped working on ${expiresAt!.toISOString().slice(0, 10)}; ask the venue's manager to send it again`);
  }
}

/**
 * Whether a resend under `key` makes a new link: not for a repeat of the key whose link was texted (a lost answer),
 * a new one for a repeat whose SMS did not go, and for another key only RESEND_SPACING_MS after the last one texted.
 */
export function resendMakesLink(current: { sentAt: Date | null; sendKey: string | null; texted: boolean }, key: string, now: number): boolean {
  if (current.sendKey === key) return !current.texted;
  requireResendDue(current.sentAt, current.texted, now);
  return true;
}

/** Refuses a new link within RESEND_SPACING_MS of the last one texted. */
function requireResendDue(sentAt: Date | null, texted: boolean, now: number): void {
  if (!sentAt || !texted) return;
  const waitMs = sentAt.getTime() + RESEND_SPACING_MS - now;
  if (waitMs > 0) {
    throw new RateLimitedError(`the invitation was texted less than a minute ago (its SMS may still be on its way); send it again in ${Math.ceil(waitMs / 1000)} s`, Math.ceil(waitMs / 1000));
  }
}

export interface LinkSms {
  /** Notification's idempotency key: one SMS per link. */
  key: string;
  phone: string;
  template: TemplateKey;
  venueName: string;
  url: string;
}

/**
 * Texts a link; once notification has taken the SMS, `markTexted` records it (a resend's spacing counts from it).
 * False when it could not be sent now: sending again retries, with a new link.
 */
export async function textLink(notification: Client<typeof NotificationInternalService>, logger: Logger, sms: LinkSms, markTexted: () => Promise<unknown>): Promise<boolean> {
  try {
    await notification.sendNotification({
      idempotencyKey: sms.key,
      recipient: { case: "phone", value: sms.phone },
      templateKey: sms.template,
      variables: { venue: sms.venueName, link: sms.url },
      channels: [Channel.SMS],
    }, { timeoutMs: 5_000 });
  } catch (err) {
    logger.warn({ key: sms.key, err: (err as Error).message }, "invitation SMS not sent; sending it again retries");
    return false;
  }
  await markTexted();
  return true;
}

/** Invitation SMS a day: to one number (no one is pestered by venues), from one venue, from one inviting account. */
export interface InvitationLimits {
  perNumber: number;
  perVenue: number;
  perInviter: number;
}

/**
 * The daily budgets every invitation SMS is charged to, shared by the replicas (Redis): a free account may create
 * venues and invite any number, and each invitation is an SMS the platform pays for and someone receives.
 */
export class InvitationBudgets {
  private readonly perNumber: ReturnType<Cache["rateLimiter"]>;
  private readonly perVenue: ReturnType<Cache["rateLimiter"]>;
  private readonly perInviter: ReturnType<Cache["rateLimiter"]>;

  constructor(cache: Cache, limits: InvitationLimits) {
    const daily = (keyPrefix: string, points: number) => cache.rateLimiter({ keyPrefix, points, durationSeconds: 86_400 });
    this.perNumber = daily("venue-invites-number", limits.perNumber);
    this.perVenue = daily("venue-invites-venue", limits.perVenue);
    this.perInviter = daily("venue-invites-inviter", limits.perInviter);
  }

  /** Charges one SMS about to be texted, or refuses it (RESOURCE_EXHAUSTED) naming the budget spent. */
  async charge(phone: string, venueId: string, inviter: string): Promise<void> {
    await consumeOrRefuse(this.perNumber, phone, "phone: this number has had as many invitations today as a day allows");
    await consumeOrRefuse(this.perVenue, venueId, "the venue has sent as many invitations today as a day allows");
    await consumeOrRefuse(this.perInviter, inviter, "you have sent as many invitations today as a day allows");
  }
}
