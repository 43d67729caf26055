import { fileURLToPath } from "node:url";
import { PaymentAdminService, PaymentInternalService, PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { clockOf, perContext, repeating, type Env, type HttpFilter, type ModuleOptions, type ServiceContext, type ServiceModule } from "@ttip/runtime";
import { startBlockedUserHolds } from "./blocked-users.js";
import { registerInBackground } from "./c2b.js";
import { callbackFilter } from "./callbacks.js";
import { ChangeFeed } from "./changes.js";
import { createCardHub } from "./cards/hub.js";
import { cardWebhookFilter } from "./cards/webhooks.js";
import { loadPaymentConfig, type PaymentConfig } from "./config.js";
import { currentDarajaClient } from "./daraja/current-client.js";
import { registerHandlers } from "./handlers/index.js";
import { offlineFilter } from "./offline-http.js";
import { ENSURE_ACCOUNT_TIMEOUT_MS, Ledger, POST_ENTRY_TIMEOUT_MS } from "./ledger.js";
import { autoPayout } from "./payouts.js";
import { watchUncredited } from "./metrics.js";
import { reconcileAll } from "./reconciliation.js";
import { type Deps } from "./tips.js";

export { loadPaymentConfig, type PaymentConfig } from "./config.js";
export type { CardsConfig } from "./cards/config.js";

export interface PaymentModuleOptions extends ModuleOptions {
  /** The configuration itself, instead of parsing `env` (tests); read at each use. */
  config?: () => PaymentConfig;
  /**
   * This service's own public base URL for Daraja's callbacks, when it is known
   * only after start (the embedded run's port); PAYMENT_CALLBACK_BASE_URL wins.
   */
  callbackBaseUrl?: () => string | undefined;
}

/**
 * Tip attempts by M-Pesa STK push, Daraja callbacks, reconciliation of lost
 * callbacks, B2C payouts, saved M-Pesa numbers and fraud checks before money
 * moves; card tips by Stripe and PayPal (cards/); tips to a venue's pool by either.
 */
export function createPaymentModule(options: PaymentModuleOptions = {}): ServiceModule {
  const config = options.config ?? envConfig(options.env ?? process.env, options.callbackBaseUrl);
  const depsFor = perContext((ctx) => paymentDeps(ctx, config));
  return {
    name: "payment",
    migrations: fileURLToPath(new URL("../migrations", import.meta.url)),
    calls: ["wallet", "auth", "qr", "notification"],
    services: [PaymentService, PaymentAdminService, PaymentInternalService],
    routes(router, ctx) {
      registerHandlers(router, depsFor(ctx));
    },
    http(ctx) {
      return paymentHttp(depsFor(ctx));
    },
    start(ctx) {
      return startPayment(depsFor(ctx));
    },
  };
}

/** What payment's handlers, webhooks and background work share in one service context. */
function paymentDeps(ctx: ServiceContext, config: () => PaymentConfig): Deps {
  const deps: Deps = {
    ctx,
    config,
    ledger: new Ledger(ctx, () => config().walletEnsureAccountTimeoutMs ?? ENSURE_ACCOUNT_TIMEOUT_MS, () => config().walletPostEntryTimeoutMs ?? POST_ENTRY_TIMEOUT_MS),
    changes: new ChangeFeed(ctx.bus),
    background: new Set(),
    daraja: currentDarajaClient(() => config().daraja, () => clockOf(ctx)),
  };
  deps.cards = createCardHub(deps.ledger, () => config().cards);
  deps.afterCredit = (tip, settings, checkAt) => autoPayout(deps, tip, settings, checkAt);
  return deps;
}

/** Plain HTTP payment answers: Daraja's callbacks, the offline tip pages, the card providers' webhooks. */
function paymentHttp(deps: Deps): HttpFilter {
  const callbacks = callbackFilter(deps);
  const offline = offlineFilter(deps);
  const cards = cardWebhookFilter(deps);
  return (req, res) => callbacks(req, res) || offline(req, res) || cards(req, res);
}

/**
 * Starts the background work: other replicas' wake-ups for this one's watchers,
 * wallet's new fee schedules (reloading the copy tips are quoted from), auth's
 * blocks (holding the user's payouts), C2B URL
 * registration (when configured) and the reconciliation loop. The stop ends
 * them and waits for work still in flight.
 */
async function startPayment(deps: Deps): Promise<() => Promise<void>> {
  watchUncredited(deps.ctx.metrics, deps.ctx.pool);
  const stopWatchWakes = await deps.changes.listen();
  const stopFollowingFees = await deps.ledger.feeSchedules.follow(deps.ctx.bus, deps.ctx.logger);
  const stopHoldingBlocked = await startBlockedUserHolds(deps.ctx);
  const stopListening = async () => {
    await stopWatchWakes();
    await stopFollowingFees();
    await stopHoldingBlocked();
  };
  const config = deps.config;
  const registering = new AbortController();
  const registration = config().c2b?.registerOnStart ? registerInBackground(deps, registering.signal) : Promise.resolve();
  const interval = config().reconcileIntervalMs;
  const drainBackground = async () => {
    await stopListening();
    registering.abort();
    await registration;
    while (deps.background.size) await Promise.allSettled([...deps.background]);
  };
  if (!interval) return drainBackground;
  const stopReconciling = startReconciling(deps, interval);
  return async () => {
    await stopReconciling();
    await drainBackground();
  };
}

/** Every `interval` ms after the last pass ended, reconciles tips, payouts and card tips; the stop waits for a pass running. */
function startReconciling(deps: Deps, interval: number): () => Promise<void> {
  return repeating(() => reconcileAll(deps, 100), { everyMs: interval, logger: deps.ctx.logger, failed: "reconciliation pass failed; will retry" });
}


/**
 * Configuration from the environment, parsed once at first use; the late
 * callback base URL is asked for until it is known, then kept.
 */
function envConfig(env: Env, callbackBaseUrl?: () => string | undefined): () => PaymentConfig {
  let parsed: PaymentConfig | undefined;
  return () => {
    parsed ??= loadPaymentConfig(env);
    if (parsed.callbackBaseUrl || !callbackBaseUrl) return parsed;
    const url = callbackBaseUrl();
    return url ? (parsed = { ...parsed, callbackBaseUrl: url }) : parsed;
  };
}

export const payment: ServiceModule = createPaymentModule();
