import { fileURLToPath } from "node:url";
import { NotificationAdminService, NotificationInternalService, NotificationService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { clockOf, repeating, type ModuleOptions, type ServiceModule } from "@ttip/runtime";
import { checkRetryConfig, configFromEnv, DEFAULT_STOP_SENDS_MS, loadEnvConfig, type NotificationConfig } from "./config.js";
import { authContacts, authStaffDirectory, type ContactLookup, qrVenueDirectory, type StaffDirectory, type VenueDirectory } from "./contacts.js";
import { applyStrandedReports, Dispatcher, eraseOldDeliveries, expireUnmatchedReports, redispatchStranded, strandedLookWindow, unparkDue } from "./delivery.js";
import { registerHandlers } from "./handlers/index.js";
import { createProviders } from "./providers.js";
import type { ProviderSimulator } from "./simulator.js";
import { seedTemplates } from "./stores/templates.js";
import { startTriggers } from "./triggers.js";
import { webhooks } from "./webhooks.js";

export { DEFAULT_RETRY, type NotificationConfig, type ProviderConfig, type RetryConfig } from "./config.js";
export type { Contact, ContactLookup, StaffDirectory } from "./contacts.js";

export interface NotificationOptions extends ModuleOptions {
  /** Fixed configuration (tests); otherwise read from NOTIFICATION_* variables. */
  config?: NotificationConfig;
  /** How often parked (quiet-hours) deliveries are looked at. */
  sweepIntervalMs?: number;
  /** When deliveries without a dispatch message are looked for again after the one look at start (default 10 minutes). */
  redispatchAgainMs?: number;
  /** How often a running replica looks for recent ones (default 5 minutes): see strandedLookWindow. */
  strandedLookMs?: number;
  /** How often old deliveries' addresses and texts are erased (default hourly): see eraseOldDeliveries. */
  eraseIntervalMs?: number;
  /** Deferrals longer than this wait in the table instead of on the bus. */
  parkAfterMs?: number;
  /** Where a user's phone comes from when we have none; auth's GetUserById by default. */
  contacts?: ContactLookup;
  /** Who is alerted of a held tip; auth's ListUsersWithRoles by default. */
  staff?: StaffDirectory;
  /** Who manages a venue, told of its pool; qr's GetVenueAccess by default. */
  venues?: VenueDirectory;
}

/**
 * Templates in English and Swahili, SMS (Africa's Talking and Twilio, one the
 * fallback of the other), e-mail (SendGrid), push (FCM HTTP v1) and in-app,
 * preferences and delivery tracking with retries.
 */
export function createNotificationModule(options: NotificationOptions = {}): ServiceModule {
  let config: NotificationConfig | undefined;
  let dispatcher: Dispatcher | undefined;
  const current = () => {
    if (!config) throw new Error("notification service used before start()");
    return config;
  };
  return {
    name: "notification",
    // Auth owns phone numbers (events carry masked ones only); qr, who manages a venue.
    calls: ["auth", "qr"],
    migrations: fileURLToPath(new URL("../migrations", import.meta.url)),
    services: [NotificationService, NotificationAdminService, NotificationInternalService],
    async start(ctx) {
      let simulator: ProviderSimulator | undefined;
      const vars = options.config ? undefined : loadEnvConfig(options.env);
      config = options.config ?? configFromEnv(vars!);
      // Before anything starts: a lease a send can outlive is a configuration error.
      checkRetryConfig(config.retry);
      if (vars?.NOTIFICATION_PROVIDERS === "simulator") {
        // Loaded only here: the production build leaves the simulators out.
        const { ProviderSimulator } = await import("./simulator.js");
        simulator = new ProviderSimulator();
        await simulator.start();
        config.providers = simulator.config(vars.NOTIFICATION_SMS_PRIMARY, vars.NOTIFICATION_AT_CALLBACK_TOKEN || "sim-callback-token");
        ctx.logger.warn({ url: simulator.url }, "notification providers are the in-repo simulators (NOTIFICATION_PROVIDERS=simulator)");
      }
      await seedTemplates(ctx.pool);
      const cfg = config;
      dispatcher = new Dispatcher({
        pool: ctx.pool,
        providers: createProviders(cfg.providers, cfg.retry.httpTimeoutMs),
        retry: cfg.retry,
        logger: ctx.logger,
        publicUrl: cfg.publicUrl,
        parkAfterMs: options.parkAfterMs,
        contacts: options.contacts ?? authContacts(ctx),
        metrics: ctx.metrics,
        clock: clockOf(ctx),
      });
      const sends = dispatcher;
      const stopTriggers = await startTriggers(ctx, sends, { staff: options.staff ?? authStaffDirectory(ctx), venues: options.venues ?? qrVenueDirectory(ctx), consoleUrl: cfg.consoleUrl || "/admin", clock: clockOf(ctx) });
      // Deliveries left without a dispatcher's message (see redispatchStranded): at start, and
      // again once the rollout that started this replica is over (a replica of the former
      // version stopping meanwhile may have left some).
      let lookDoneAt = Date.now();
      const redispatch = (windowMs?: number) =>
        redispatchStranded(ctx.pool, clockOf(ctx), undefined, windowMs)
          .then((n) => {
            lookDoneAt = Date.now();
            if (n) ctx.logger.warn({ deliveries: n }, "open deliveries without a dispatch message given one");
          })
          .catch((err) => ctx.logger.warn({ err }, "redispatching stranded deliveries failed"));
      // Every look and sweep still running, for the stop to wait for (each ends by itself: their errors are logged).
      const running = new Set<Promise<unknown>>();
      const track = (work: Promise<unknown>) => {
        running.add(work);
        void work.finally(() => running.delete(work));
        return work;
      };
      track(redispatch());
      const afterRollout = setTimeout(() => track(redispatch()), options.redispatchAgainMs ?? 10 * 60_000);
      // And while it runs: a send claimed by a statement whose answer was lost (its call's retry answers the
      // delivery, sendClaimed never ran), or handed over while PostgreSQL was out of reach, has no other way out.
      const strandedLook = repeating(() => redispatch(strandedLookWindow(lookDoneAt, Date.now())), {
        everyMs: options.strandedLookMs ?? 5 * 60_000, logger: ctx.logger, failed: "redispatching stranded deliveries failed",
      });
      // One sweep at a time: with PostgreSQL slow or out of reach, sweeps piling up would hold the pool's connections the sends need.
      const sweeps = repeating(() => Promise.all([
        unparkDue(ctx.pool, clockOf(ctx)).catch((err) => ctx.logger.warn({ err }, "unparking deliveries failed")),
        applyStrandedReports(ctx.pool).catch((err) => ctx.logger.warn({ err }, "applying pending delivery reports failed")),
        expireUnmatchedReports(ctx.pool)
          .then((expired) => expired && ctx.logger.info({ expired }, "expired delivery reports no delivery matched"))
          .catch((err) => ctx.logger.warn({ err }, "expiring unmatched delivery reports failed")),
      ]), { everyMs: options.sweepIntervalMs ?? 15_000, logger: ctx.logger, failed: "a delivery sweep failed" });
      const erasure = repeating(async () => {
        const erased = await eraseOldDeliveries(ctx.pool, clockOf(ctx).now());
        if (erased) ctx.logger.info({ erased }, "erased old deliveries' addresses and texts");
      }, { everyMs: options.eraseIntervalMs ?? 3_600_000, logger: ctx.logger, failed: "erasing old deliveries failed; the next sweep tries again" });
      return async () => {
        // One budget for the whole stop: sends still out by then stay 'sending' for a look after their lease (Dispatcher.stopBy).
        const deadline = Date.now() + (cfg.stopSendsMs ?? DEFAULT_STOP_SENDS_MS);
        sends.stopBy(deadline);
        clearTimeout(afterRollout);
        const passesStopped = [strandedLook(), sweeps(), erasure()];
        // A sweep and a trigger's batch wait on PostgreSQL: with it out of reach, on its own timeouts, past the
        // process's deadline. Waited for until the budget's end at most: a batch cut off is not acknowledged
        // and comes again; one that still commits sends what it claimed as it would, recorded or left to the look.
        const triggersStopped = stopTriggers();
        if (await settledBy(deadline, [...running, ...passesStopped, triggersStopped])) await triggersStopped;
        else {
          triggersStopped.catch(() => undefined);
          ctx.logger.warn("stopped with a sweep or a trigger's batch still waiting on the database");
        }
        // No call claims a send from now on; those claimed (Dispatcher.sendClaimed) finish and are recorded.
        dispatcher = undefined;
        await sends.drain();
        await simulator?.close();
      };
    },
    routes(router, ctx) {
      registerHandlers(router, ctx, () => dispatcher);
    },
    http(ctx) {
      return webhooks({
        pool: ctx.pool,
        logger: ctx.logger,
        providers: () => current().providers,
        publicUrl: () => current().publicUrl(),
      });
    },
  };
}

export const notification: ServiceModule = createNotificationModule();

/** Waits for `work` until `deadline` (this process's clock) at most: true when it all settled first. */
async function settledBy(deadline: number, work: Promise<unknown>[]): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const over = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), Math.max(0, deadline - Date.now()))));
  try {
    return await Promise.race([Promise.allSettled(work).then(() => true as const), over]);
  } finally {
    clearTimeout(timer);
  }
}
