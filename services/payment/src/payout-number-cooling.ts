// The cooling-off of a payout number that replaced another, or of a first one that is not the account's sign-in
// phone: automatic payouts to it wait, a withdrawal does not.
import type { PayoutSettings } from "./stores/payout-settings.js";

/**
 * 24 hours, unless PAYOUT_NUMBER_COOLING_OFF_MS says otherwise. Changing the payout number needs only a session,
 * not the device's step-up, so a stolen session could send every later automatic payout to another number.
 * The change is told by SMS at the account's own number (PayoutNumberChanged); a day lets a worker who is off
 * shift or asleep when it comes read it and call support, who can hold payouts, before the first payout goes.
 * Shorter (an hour or two) misses a night; longer holds an honest worker's money back more than a day.
 */
export const PAYOUT_NUMBER_COOLING_OFF_MS = 24 * 3600_000;

/**
 * Until when automatic payouts to the worker's payout number wait (it was stamped less than `coolingOffMs` before
 * `now`: it replaced another, or was a first number other than the sign-in phone), or undefined when they may go.
 * A first number that is the sign-in phone waits for nothing: auth verified it by OTP at sign-up, and most workers'
 * first payouts would otherwise wait a day. Any other first number waits: a stolen session setting one for a
 * worker who had none would otherwise receive every later automatic payout at once (the takeover the cooling-off
 * is for, with no earlier number to replace).
 */
export function automaticPayoutsFrom(s: Pick<PayoutSettings, "payout_phone_changed_at"> | undefined | null, coolingOffMs: number, now: number): Date | undefined {
  const changed = s?.payout_phone_changed_at;
  if (!changed) return undefined;
  const end = changed.getTime() + coolingOffMs;
  return end > now ? new Date(end) : undefined;
}
