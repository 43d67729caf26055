import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { Locale, Role } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { AuthInternalService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { QrInternalService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { normalisePhone, type ServiceContext } from "@ttip/runtime";

export interface Contact {
  /** The whole number, digits with country code. */
  phone: string;
  locale: "en" | "sw" | "";
}

/**
 * Finds where a user is reached. Resolves null when there is nobody to
 * reach (no such user, no number); throws when it cannot tell right now.
 */
export type ContactLookup = (userId: string) => Promise<Contact | null>;

/** How long auth gets to answer a phone lookup; the send lease allows for it (config.ts). */
export const CONTACT_LOOKUP_TIMEOUT_MS = 5_000;

// Errors worth asking again for; anything else means the answer will not change.
const TRANSIENT = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.ResourceExhausted, Code.Aborted, Code.Internal]);

/** Auth owns phone numbers: AuthInternalService.GetUserById returns the whole number for senders like us. */
export function authContacts(ctx: ServiceContext): ContactLookup {
  const client = createClient(AuthInternalService, ctx.peers("auth"));
  return async (userId) => {
    try {
      const r = await client.getUserById({ userId }, { timeoutMs: CONTACT_LOOKUP_TIMEOUT_MS });
      const locale = r.user?.locale === Locale.SW ? "sw" : r.user?.locale === Locale.EN ? "en" : "";
      return r.phone ? { phone: normalisePhone(r.phone), locale } : null;
    } catch (err) {
      const e = ConnectError.from(err);
      if (TRANSIENT.has(e.code)) throw e;
      if (e.code !== Code.NotFound) ctx.logger.warn({ err: e, userId }, "phone lookup in auth refused; not retried");
      return null;
    }
  };
}

/** Those who can act on a held tip: the roles ReviewTip declares. */
export const TIP_REVIEWER_ROLES = [Role.ADMIN, Role.FINANCE];
/** Staff alerted per hold at most; a larger team is logged, not texted. */
const MAX_STAFF = 100;

/** Who is told of a fraud hold, and the worker's name for the message; both throw when auth cannot answer now. */
export interface StaffDirectory {
  reviewers(): Promise<string[]>;
  displayName(userId: string): Promise<string>;
}

export function authStaffDirectory(ctx: ServiceContext): StaffDirectory {
  const client = createClient(AuthInternalService, ctx.peers("auth"));
  return {
    async reviewers() {
      const r = await client.listUsersWithRoles({ roles: TIP_REVIEWER_ROLES, limit: MAX_STAFF }, { timeoutMs: 5_000 });
      if (r.truncated) ctx.logger.warn({ alerted: r.users.length }, "more staff hold the reviewer roles than are alerted");
      return r.users.map((u) => u.userId);
    },
    async displayName(userId) {
      try {
        return (await client.getUserById({ userId }, { timeoutMs: 5_000 })).user?.displayName ?? "";
      } catch (err) {
        const e = ConnectError.from(err);
        if (e.code === Code.NotFound) return "";
        throw e;
      }
    },
  };
}

/** A venue as messages about its pool need it: its name and who manages it. */
export interface VenueManagers {
  name: string;
  managerIds: string[];
}

/** Who is told of a venue's pool; null for a venue qr does not know; throws when qr cannot answer now. */
export interface VenueDirectory {
  managers(venueId: string): Promise<VenueManagers | null>;
}

/** Qr keeps the venues' profiles and their managers (GetVenueAccess). */
export function qrVenueDirectory(ctx: ServiceContext): VenueDirectory {
  const client = createClient(QrInternalService, ctx.peers("qr"));
  return {
    async managers(venueId) {
      const r = await client.getVenueAccess({ venueId, withManagers: true }, { timeoutMs: 5_000 });
      return r.venueExists ? { name: r.displayName, managerIds: r.managerIds } : null;
    },
  };
}
