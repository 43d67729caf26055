import { fileURLToPath } from "node:url";
import { z } from "zod";
import { VenueService } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { clockOf, env, loadConfig, repeating, type ModuleOptions, type ServiceContext, type ServiceModule } from "@ttip/runtime";
import { Access } from "./access.js";
import { Distributions } from "./distributions.js";
import { registerHandlers, type VenueDeps } from "./handlers/index.js";
import { InvitationBudgets } from "./invitation-link.js";
import { Managers } from "./managers.js";
import { Members } from "./members.js";

export const venueConfigShape = {
  // The web page an invitation links to; the token is its last path segment (a manager's: after /manage).
  VENUE_JOIN_URL: env.url(["http", "https"]).default("http://127.0.0.1:8080/join"),
  // How often distributions left half-posted (a crash, a wallet outage) are finished; 0 turns it off.
  VENUE_RESUME_INTERVAL_MS: z.coerce.number().int().min(0).default(10_000),
  // Invitation SMS a day (staff's and managers', first and sent again): to one number, from one venue, from one
  // inviting account. A venue hiring its whole staff in a day sends dozens; a spammer with free accounts, thousands.
  VENUE_INVITES_PER_NUMBER_PER_DAY: z.coerce.number().int().min(1).default(5),
  VENUE_INVITES_PER_VENUE_PER_DAY: z.coerce.number().int().min(1).default(200),
  VENUE_INVITES_PER_INVITER_PER_DAY: z.coerce.number().int().min(1).default(300),
};

export { cutByWeights, REMAINDER_RULE } from "./split.js";
export { planSplit } from "./plan.js";

/** The venue service; `env` lets tests and benchmarks pass their own configuration. */
export function createVenueModule(options: ModuleOptions = {}): ServiceModule {
  const deps = new WeakMap<ServiceContext, VenueDeps>();
  let config: ReturnType<typeof loadConfig<typeof venueConfigShape>> | undefined;
  return {
    name: "venue",
    migrations: fileURLToPath(new URL("../migrations", import.meta.url)),
    calls: ["qr", "wallet", "notification", "auth"],
    services: [VenueService],
    async start(ctx) {
      const cfg = (config ??= loadConfig(venueConfigShape, options.env));
      const access = new Access(ctx);
      const distributions = new Distributions(ctx, async (venueId) => (await access.venue(venueId)).name);
      const links = () => ({ joinUrl: cfg.VENUE_JOIN_URL });
      const budgets = new InvitationBudgets(ctx.cache, {
        perNumber: cfg.VENUE_INVITES_PER_NUMBER_PER_DAY,
        perVenue: cfg.VENUE_INVITES_PER_VENUE_PER_DAY,
        perInviter: cfg.VENUE_INVITES_PER_INVITER_PER_DAY,
      });
      const managers = new Managers(ctx, links, access, budgets);
      deps.set(ctx, { pool: ctx.pool, clock: clockOf(ctx), access, members: new Members(ctx, links, managers, access, budgets), managers, distributions });
      if (!cfg.VENUE_RESUME_INTERVAL_MS) return async () => undefined;
      // One pass at a time: passes started on a clock piled up beside a slow one, each finishing the same distributions.
      return repeating(() => distributions.finishPending(cfg.VENUE_RESUME_INTERVAL_MS), { everyMs: cfg.VENUE_RESUME_INTERVAL_MS, logger: ctx.logger, failed: "finishing pending distributions failed" });
    },
    routes(router, ctx) {
      const d = deps.get(ctx);
      if (!d) throw new Error("venue: routes() called before start()");
      registerHandlers(router, d);
    },
  };
}

/** A venue's staff, shifts, split rules and the distributions of its tip pool. */
export const venue: ServiceModule = createVenueModule();
