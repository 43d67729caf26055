import { type HandlerContext } from "@connectrpc/connect";
import { type Clock, type Pool } from "@ttip/runtime";
import type { Access } from "../access.js";
import type { Distributions } from "../distributions.js";
import type { Managers } from "../managers.js";
import type { Members } from "../members.js";

export interface VenueDeps {
  pool: Pool;
  /** The service's clock: the one members' start dates are set by. */
  clock: Clock;
  access: Access;
  members: Members;
  managers: Managers;
  distributions: Distributions;
}

/** What every venue handler shares: the service's dependencies and the manager check. */
export interface VenueHandlerContext extends VenueDeps {
  manager: (ctx: HandlerContext, venueId: string) => ReturnType<Access["requireManager"]>;
}

/** The context every venue handler is given. */
export function venueHandlerContext(deps: VenueDeps): VenueHandlerContext {
  return { ...deps, manager: (ctx, venueId) => deps.access.requireManager(ctx, venueId) };
}
