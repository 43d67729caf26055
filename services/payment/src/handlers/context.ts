import type { HandlerContext } from "@connectrpc/connect";
import type { Pool } from "@ttip/runtime";
import { tipMessage } from "../convert.js";
import type { Tip } from "../stores/tips.js";
import type { Deps, TipRow } from "../tips.js";

/** What every payment handler shares: the service's dependencies, and a tip as this deployment shows it. */
export interface PaymentHandlerContext {
  deps: Deps;
  pool: Pool;
  /** The tip as its page shows it, with the paybill customers pay to. */
  tipOut: (t: Tip, locale?: string) => ReturnType<typeof tipMessage>;
}

export function paymentHandlerContext(deps: Deps): PaymentHandlerContext {
  return { deps, pool: deps.ctx.pool, tipOut: (t, l) => tipMessage(t, l, deps.config().c2b?.shortCodes[0]) };
}

export const locale = (ctx: HandlerContext) => ctx.requestHeader.get("accept-language") ?? "en";

const WATCH_POLL_MS = 1_000;

/**
 * Resolves on the next change of a tip (keyed by its id) or a payout (by
 * payoutChangeKey) on any replica, after the poll interval (the net under a
 * lost wake-up), or when the client leaves. Armed before the row is read, so a
 * change in between is not missed.
 */
export function nextChange(deps: Deps, key: string, signal: AbortSignal): { wait: Promise<TipRow | undefined>; cancel: () => void } {
  // A tip's change may carry the row as its transaction committed it (saves reading it again); a payout's carries none.
  return deps.changes.next(key, signal, deps.config().watchPollMs ?? WATCH_POLL_MS) as { wait: Promise<TipRow | undefined>; cancel: () => void };
}
