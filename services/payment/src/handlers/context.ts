import type { HandlerContext } from "@connectrpc/connect";
import type { Pool } from "@ttip/runtime";
import { tipMessage } from "../convert.js";
import type { Deps, TipRow } from "../tips.js";

/** What every payment handler shares: the service's dependencies, and a tip as this deployment shows it. */
export interface PaymentHandlerContext {
  deps: Deps;
  pool: Pool;
  /** The tip as its page shows it, with the paybill customers pay to. */
  tipOut: (t: TipRow, locale?: string) => ReturnType<typeof tipMessage>;
}

export function paymentHandlerContext(deps: Deps): PaymentHandlerContext {
  return { deps, pool: deps.ctx.pool, tipOut: (t, l) => tipMessage(t, l, deps.config().c2b?.shortCodes[0]) };
}

export const locale = (ctx: HandlerContext) => ctx.requestHeader.get("accept-language") ?? "en";
