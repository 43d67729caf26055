// Partner keys' calls per day, as the admin console shows them: the gateway
// counts each call of a verified key in the shared cache (Redis), one hash per
// key and day, so a call costs one round trip and no SQL write; auth reads
// them back for admins. Days older than the TTL drop out by themselves.
// The days are Nairobi's, as the console's other daily figures are: a UTC day
// would roll "today" over at 03:00 in Kenya.
import { Code } from "@connectrpc/connect";
import type { Cache } from "./cache.js";
import { nairobiDay } from "./nairobi-time.js";

/** How long a day's counts are kept (the console shows at most 35 days). */
export const PARTNER_USAGE_TTL_SECONDS = 36 * 86_400;
export const PARTNER_USAGE_MAX_DAYS = 35;

export type PartnerCallOutcome = "ok" | "client_error" | "server_error";

export interface PartnerUsageDay {
  /** YYYY-MM-DD, Nairobi's day. */
  day: string;
  ok: number;
  clientErrors: number;
  serverErrors: number;
}

// The caller's mistake; everything else that is not OK is the platform's.
const CLIENT_CODES = new Set([
  Code.Canceled,
  Code.InvalidArgument,
  Code.NotFound,
  Code.AlreadyExists,
  Code.PermissionDenied,
  Code.ResourceExhausted,
  Code.FailedPrecondition,
  Code.OutOfRange,
  Code.Unauthenticated,
]);

/** A call's outcome by the Connect code it ended with (undefined: OK). */
export function partnerCallOutcome(code: Code | undefined): PartnerCallOutcome {
  if (code === undefined) return "ok";
  return CLIENT_CODES.has(code) ? "client_error" : "server_error";
}

const usageKey = (keyId: string, day: string) => `partner-usage:${keyId}:${day}`;

export async function recordPartnerCall(cache: Cache, keyId: string, outcome: PartnerCallOutcome, nowMs = Date.now()): Promise<void> {
  await cache.incrementField(usageKey(keyId, nairobiDay(nowMs)), outcome, PARTNER_USAGE_TTL_SECONDS);
}

/** The key's counts for the last `days` Nairobi days, oldest first, today last; days without calls are zeros. */
export async function readPartnerUsage(cache: Cache, keyId: string, days: number, nowMs = Date.now()): Promise<PartnerUsageDay[]> {
  if (!Number.isInteger(days) || days < 1 || days > PARTNER_USAGE_MAX_DAYS) throw new RangeError(`days must be 1 to ${PARTNER_USAGE_MAX_DAYS}`);
  const wanted = Array.from({ length: days }, (_, i) => nairobiDay(nowMs - (days - 1 - i) * 86_400_000));
  return Promise.all(
    wanted.map(async (day) => {
      const f = await cache.getFields(usageKey(keyId, day));
      return { day, ok: Number(f.ok ?? 0), clientErrors: Number(f.client_error ?? 0), serverErrors: Number(f.server_error ?? 0) };
    }),
  );
}
