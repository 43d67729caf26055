import { randomBytes } from "node:crypto";
import type http from "node:http";
import path from "node:path";
import { z } from "zod";
import {
  createLogger,
  createPool,
  env,
  freePort,
  InProcessBus,
  loadConfig,
  MemoryCache,
  Metrics,
  onShutdown,
  tracingFromEnv,
  type Logger,
  type RunningService,
} from "@ttip/runtime";
import { startEmbeddedPostgres } from "@ttip/runtime/embedded";
import { issueSetupToken } from "@ttip/auth";
import { startSmsSimulator, type SmsSimulator } from "@ttip/auth/testing";
import {
  startDarajaSimulator,
  startPayPalSimulator,
  startStripeSimulator,
  type DarajaSimulator,
  type PayPalSimulator,
  type StripeSimulator,
} from "@ttip/payment/testing";
import { createWebApp, ensureWebBuild, type WebApp } from "@ttip/web";
import { createAdminHandler, ensureAdminBuild, isAdminPath } from "@ttip/admin";
import { createModules } from "./modules.js";
import { issueSandboxKey, revokeSandboxKeys, type SandboxKey } from "./partner-sandbox.js";
import { startPlatform } from "./platform.js";

export interface EmbeddedPlatform {
  gatewayUrl: string;
  /** What each simulator is, and where a person reads what it did. */
  simulators: Record<string, string>;
  /** While no admin exists: the one-time token that makes the first admin (shown once, at /admin). */
  setupToken?: string;
  /** The partner sandbox's key (every partner scope), the same on every start with the same data directory. */
  partnerSandbox?: SandboxKey;
  /** With the M-Pesa simulator: where the simulated customer pays the paybill (POST), and the USSD callback URL. */
  offline?: { paybillPayUrl: string; ussdUrl: string };
  services: RunningService[];
  /** The configuration the services were given: the environment plus the simulators' addresses and keys. */
  config: Readonly<Record<string, string | undefined>>;
  close(): Promise<void>;
}

/**
 * The whole platform in one process with nothing to install: PGlite behind
 * its socket server, the in-process bus and cache, each service on its own
 * loopback port and the gateway in front, exactly as in a cluster.
 */
export async function startEmbedded(envVars: Record<string, string | undefined> = process.env): Promise<EmbeddedPlatform> {
  const cfg = loadEmbeddedConfig(envVars);
  const started = new StartedParts();
  try {
    return await startParts(cfg, envVars, started);
  } catch (err) {
    // A later part failed (its port taken, say): what started before it must not keep ports, timers and PGlite.
    await started.stop();
    throw err;
  }
}

async function startParts(cfg: EmbeddedConfig, envVars: Record<string, string | undefined>, started: StartedParts): Promise<EmbeddedPlatform> {
  const shared = await startSharedState(cfg, started);
  const vars = serviceVars(envVars);
  const sims = await startSimulators(vars, started);
  const port = await settlePublicAddress(cfg, vars);
  const admin = await prepareWebBuilds(cfg, shared.ctx.logger);
  let web: WebApp | undefined;

  // Payment's own URL for Daraja's callbacks, asked for (not written anywhere) and known the moment it
  // listens: its C2B registration waits for that URL, so the paybill works as soon as payment serves,
  // not once the services after it, the gateway and the web app have started.
  const urls = new Map<string, string>();
  const modules = createModules({ env: vars, paymentCallbackBaseUrl: sims.daraja ? () => urls.get("payment") : undefined });
  const platform = await startPlatform({
    modules,
    ctx: shared.ctx,
    urls,
    gateway: {
      rateLimit: { points: 600, durationSeconds: 60 },
      corsOrigins: ["*"],
      host: cfg.HOST,
      port,
      web: cfg.WEB === "on" ? webAppsHandler(admin, () => web) : undefined,
    },
  });
  started.add(() => platform.close());
  // Loaded after the services read their configuration: Next sets NODE_ENV=production in this process.
  // Its pages' server code calls the gateway it is served by.
  if (cfg.WEB === "on") {
    const app = (web = await createWebApp({ apiUrl: platform.gatewayUrl, stripeJsUrl: vars.STRIPE_JS_URL }));
    started.add(() => app.close());
  }
  sims.stripe?.setWebhookUrl(`${platform.urls.get("payment")}/stripe/webhook`);
  sims.paypal?.setWebhookUrl(`${platform.urls.get("payment")}/paypal/webhook`);

  // Until someone is admin, each start issues a fresh first-admin token (the previous one dies).
  const setup = await issueSetupToken(shared.ctx.pool, "at start (make run)");
  const partnerSandbox = await startPartnerSandbox(cfg, envVars, platform.urls, shared.ctx.logger);
  const { simulators, offline } = describeSimulators(sims, vars, platform.urls);
  return {
    gatewayUrl: platform.gatewayUrl, services: platform.services, config: vars, simulators, offline, setupToken: setup?.token, partnerSandbox,
    close: () => started.stop(),
  };
}

/**
 * The parts started so far, each with its stop; stopped last first, on close
 * or when a later part fails to start. A stop that fails does not keep the
 * others running: the first failure is thrown once all have been tried.
 */
class StartedParts {
  private readonly stops: Array<() => Promise<void>> = [];

  add(stop: () => Promise<void>): void {
    this.stops.push(stop);
  }

  async stop(): Promise<void> {
    const failures: unknown[] = [];
    for (const stop of this.stops.splice(0).reverse()) await stop().catch((err: unknown) => failures.push(err));
    if (failures.length) throw failures[0];
  }
}

type EmbeddedConfig = ReturnType<typeof loadEmbeddedConfig>;

function loadEmbeddedConfig(envVars: Record<string, string | undefined>) {
  return loadConfig(
    {
      PORT: env.port(8080),
      HOST: z.string().default("127.0.0.1"),
      LOG_LEVEL: env.logLevel(),
      // "memory" keeps nothing between runs.
      DATA_DIR: z.string().default(path.resolve(".data/pglite")),
      // The address people and QR codes use; this process's own by default.
      PUBLIC_URL: env.url(["http", "https"]).optional(),
      // "off" runs the API only (no web app, no build).
      WEB: z.enum(["on", "off"]).default("on"),
      // "on": a partner key with every scope, for trying the partner API against the simulators.
      PARTNER_SANDBOX: z.enum(["on", "off"]).default("on"),
    },
    envVars,
  );
}

/** What every service shares in this process: the logger, PGlite and its pool, the bus, the cache, the metrics. */
async function startSharedState(cfg: EmbeddedConfig, started: StartedParts) {
  const logger = createLogger({ level: cfg.LOG_LEVEL, base: { mode: "embedded" } });
  const postgres = await startEmbeddedPostgres(cfg.DATA_DIR === "memory" ? undefined : cfg.DATA_DIR);
  started.add(() => postgres.close());
  // PGlite is one session: every service shares one connection.
  const pool = createPool(postgres.url, { max: 1, applicationName: "ttip-embedded", logger, preparedStatements: false });
  started.add(() => pool.end());
  const bus = new InProcessBus(logger);
  started.add(() => bus.close());
  const cache = new MemoryCache();
  const metrics = new Metrics({ mode: "embedded" });
  return { postgres, ctx: { logger, pool, bus, cache, metrics } };
}

/**
 * What the services read, parsed once by each: the given environment plus the simulators' addresses.
 * Nothing is written to process.env.
 * The sandbox: a development QR key, and, with every money provider a simulator, partner webhooks to receivers on
 * loopback (with a real one, any partner key could point its webhooks at this process's own service ports).
 */
function serviceVars(envVars: Record<string, string | undefined>): Record<string, string | undefined> {
  const sandbox = envVars.NODE_ENV !== "production" && !realProviderOf(envVars);
  return {
    ...envVars,
    QR_ALLOW_DEV_SIGNING_KEY: envVars.QR_ALLOW_DEV_SIGNING_KEY ?? "true",
    AUTH_WEBHOOK_ALLOW_LOOPBACK: envVars.AUTH_WEBHOOK_ALLOW_LOOPBACK ?? (sandbox ? "true" : undefined),
  };
}

/** The first money provider configured for real (its simulator then does not start), if any. */
function realProviderOf(envVars: Record<string, string | undefined>): string | undefined {
  return ["DARAJA_BASE_URL", "STRIPE_SECRET_KEY", "PAYPAL_CLIENT_ID"].find((name) => envVars[name]);
}

/** Each simulator runs only where no real provider is configured. */
interface Simulators {
  daraja?: DarajaSimulator;
  stripe?: StripeSimulator;
  paypal?: PayPalSimulator;
  sms?: SmsSimulator;
}

/** Starts the simulators in turn, each writing its address and keys into vars. */
async function startSimulators(vars: Record<string, string | undefined>, started: StartedParts): Promise<Simulators> {
  const stopping = <T extends { close(): Promise<void> } | undefined>(sim: T): T => {
    if (sim) started.add(() => sim.close());
    return sim;
  };
  const daraja = stopping(await startDaraja(vars));
  const stripe = stopping(await startStripe(vars));
  const paypal = stopping(await startPayPal(vars));
  const sms = stopping(await startSms(vars));
  return { daraja, stripe, paypal, sms };
}

/**
 * M-Pesa is the Daraja simulator here, unless real credentials are configured;
 * its callbacks come from loopback and go to the payment service's own port.
 */
export async function startDaraja(vars: Record<string, string | undefined>): Promise<DarajaSimulator | undefined> {
  if (vars.DARAJA_BASE_URL) return undefined;
  const daraja = await startDarajaSimulator({ callbackDelayMs: 2000, lateDelayMs: 20_000 });
  Object.assign(vars, {
    DARAJA_BASE_URL: daraja.url,
    DARAJA_CONSUMER_KEY: daraja.options.consumerKey,
    DARAJA_CONSUMER_SECRET: daraja.options.consumerSecret,
    DARAJA_SHORTCODE: daraja.options.shortcode,
    DARAJA_PASSKEY: daraja.options.passkey,
    DARAJA_INITIATOR_NAME: daraja.options.initiatorName,
    DARAJA_INITIATOR_PASSWORD: daraja.options.initiatorPassword,
    DARAJA_CERTIFICATE_FILE: daraja.certificateFile,
  });
  vars.MPESA_CALLBACK_ALLOWED_IPS ??= "127.0.0.1,::1";
  // Paybill payments (C2B) and the USSD menu, on unguessable paths of the payment service's port;
  // the C2B URLs are registered with the simulator at start, as production does once.
  vars.C2B_URL_TOKEN ??= c2bUrlToken();
  vars.C2B_REGISTER_ON_START ??= "true";
  vars.USSD_CALLBACK_TOKEN ??= randomBytes(18).toString("base64url");
  return daraja;
}

/**
 * The secret path segment of the paybill's C2B URLs. Hex: Safaricom refuses a
 * registered URL holding any of a few words (exe, cmd, sql...), which base64url
 * spells by chance about once in 500 starts, and every registration retry is
 * then refused; hex digits spell none of them.
 */
export function c2bUrlToken(): string {
  return randomBytes(18).toString("hex");
}

/** Card tips go to the Stripe simulator (state, 3-D Secure, signed webhooks) unless real keys are configured. */
async function startStripe(vars: Record<string, string | undefined>): Promise<StripeSimulator | undefined> {
  if (vars.STRIPE_SECRET_KEY) return undefined;
  const stripe = await startStripeSimulator({ webhookDelayMs: 300 });
  Object.assign(vars, {
    STRIPE_SECRET_KEY: stripe.secretKey,
    STRIPE_PUBLISHABLE_KEY: stripe.publishableKey,
    STRIPE_WEBHOOK_SECRET: stripe.webhookSecret,
    STRIPE_API_BASE: stripe.url,
    // The tip page loads its Stripe.js test double from here instead of js.stripe.com.
    STRIPE_JS_URL: `${stripe.url}/v3/`,
  });
  return stripe;
}

/** PayPal tips go to the PayPal simulator (Orders v2, approval page, verified webhooks) unless real credentials are configured. */
async function startPayPal(vars: Record<string, string | undefined>): Promise<PayPalSimulator | undefined> {
  if (vars.PAYPAL_CLIENT_ID) return undefined;
  const paypal = await startPayPalSimulator({ webhookDelayMs: 300 });
  Object.assign(vars, {
    PAYPAL_CLIENT_ID: paypal.clientId,
    PAYPAL_CLIENT_SECRET: paypal.clientSecret,
    PAYPAL_WEBHOOK_ID: paypal.webhookId,
    PAYPAL_API_BASE: paypal.url,
  });
  return paypal;
}

/** OTPs go to an SMS simulator a person can read, unless a real provider is configured. */
async function startSms(vars: Record<string, string | undefined>): Promise<SmsSimulator | undefined> {
  if (vars.AUTH_SMS_URL) return undefined;
  const sms = await startSmsSimulator();
  vars.AUTH_SMS_URL = sms.url;
  return sms;
}

/**
 * QR codes open the tip page on this process's real address (or the configured public one),
 * so the port is settled first (PORT=0: a free one). Returns the port to listen on.
 */
async function settlePublicAddress(cfg: EmbeddedConfig, vars: Record<string, string | undefined>): Promise<number> {
  const port = cfg.PORT || (await freePort(cfg.HOST));
  const publicUrl = (cfg.PUBLIC_URL ?? `http://${cfg.HOST === "0.0.0.0" || cfg.HOST === "::" ? "127.0.0.1" : cfg.HOST}:${port}`).replace(/\/+$/, "");
  vars.QR_TIP_BASE_URL ??= `${publicUrl}/t`;
  // Staff invitations link to the web app's /join page on the same address.
  vars.VENUE_JOIN_URL ??= `${publicUrl}/join`;
  // Fraud-hold alerts link admins to the console on the same address.
  vars.NOTIFICATION_CONSOLE_URL ??= `${publicUrl}/admin`;
  return port;
}

type WebHandler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

/** Builds the web apps when WEB=on; returns the admin console's handler. */
async function prepareWebBuilds(cfg: EmbeddedConfig, logger: Logger): Promise<WebHandler | undefined> {
  // The web app is built once (reused until its sources change) and served by the gateway.
  if (cfg.WEB === "on") await ensureWebBuild((line) => logger.info(line));
  // The admin console: a static bundle (about a second to build), at /admin on the same port.
  if (cfg.WEB === "on") await ensureAdminBuild((line) => logger.info(line));
  return cfg.WEB === "on" ? createAdminHandler() : undefined;
}

/** /admin to the console, the rest to the web app once it is loaded (503 until then). */
function webAppsHandler(admin: WebHandler | undefined, web: () => WebApp | undefined): WebHandler {
  return (req, res) => {
    if (admin && isAdminPath(req.url)) return admin(req, res);
    const app = web();
    if (app) return app.handle(req, res);
    res.writeHead(503, { "retry-after": "1" });
    res.end("starting\n");
  };
}

/**
 * The sandbox's key, with every scope: only while every money provider is a simulator. With a real one configured,
 * its tips would be real pushes to real phones, and the key's secret is printed for anyone reading the output: none
 * is issued, and those of earlier starts are revoked.
 */
async function startPartnerSandbox(cfg: EmbeddedConfig, envVars: Record<string, string | undefined>, urls: ReadonlyMap<string, string>, logger: Logger): Promise<SandboxKey | undefined> {
  const authUrl = urls.get("auth");
  const qrUrl = urls.get("qr");
  if (!authUrl || !qrUrl) return undefined;
  // Whatever PARTNER_SANDBOX says: "off" is what a real provider's operator is told to set.
  const real = realProviderOf(envVars);
  if (real) {
    const revoked = await revokeSandboxKeys(authUrl);
    logger.warn({ configured: real, revoked }, "no partner sandbox key: a real money provider is configured (keys of earlier starts revoked)");
    return undefined;
  }
  return cfg.PARTNER_SANDBOX === "on" ? issueSandboxKey(authUrl, qrUrl) : undefined;
}

/** Where a person reads what each simulator did, and where one pays without data. */
function describeSimulators(
  sims: Simulators,
  vars: Record<string, string | undefined>,
  urls: ReadonlyMap<string, string>,
): Pick<EmbeddedPlatform, "simulators" | "offline"> {
  const { daraja, sms, stripe, paypal } = sims;
  const simulators: Record<string, string> = {};
  if (daraja) simulators["M-Pesa (what it really did)"] = `${daraja.url}/__sim/transactions`;
  if (daraja) simulators["M-Pesa paybill URLs (C2B)"] = `${daraja.url}/__sim/c2b/registrations`;
  // Where a person pays without data: the paybill (the simulator pays as a customer would) and the USSD menu.
  const offline = daraja
    ? { paybillPayUrl: `${daraja.url}/__sim/c2b/pay`, ussdUrl: vars.USSD_CALLBACK_TOKEN ? `${urls.get("payment")}/ussd/${vars.USSD_CALLBACK_TOKEN}` : "" }
    : undefined;
  if (sms) simulators["SMS with OTPs"] = `${sms.url}/simulator/messages`;
  if (stripe) simulators["Stripe (webhooks it sent)"] = `${stripe.url}/__sim/events`;
  if (paypal) simulators["PayPal (webhooks it sent)"] = `${paypal.url}/__sim/events`;
  return { simulators, offline };
}

/** `make run`: start, print where to open it, stop cleanly on Ctrl-C. */
export async function runEmbedded(): Promise<void> {
  // Traces too when OTEL_EXPORTER_OTLP_ENDPOINT is set (a local collector or Jaeger on :4318).
  const tracing = await tracingFromEnv("ttip-embedded");
  const platform = await startEmbedded();
  const logger = createLogger({ base: { mode: "embedded" } });
  onShutdown(logger, [() => platform.close(), async () => tracing?.stop()]);
  const lines = [
    "",
    `TTIP is running on ${platform.gatewayUrl}   ← open this (the web app; workers sign in at ${platform.gatewayUrl}/w)`,
    "  Connect, gRPC-web and gRPC on one port; every service behind it:",
    ...platform.services.map((s) => `    ${s.name.padEnd(13)} ${s.server.url}`),
    "  Try:",
    `    curl -s ${platform.gatewayUrl}/grpc.health.v1.Health/Check -H 'content-type: application/json' -d '{"service":"ttip.wallet.v1.WalletService"}'`,
    `    npx buf curl --http2-prior-knowledge --protocol grpc ${platform.gatewayUrl}/grpc.health.v1.Health/List`,
    "  Simulators:",
    ...Object.entries(platform.simulators).map(([what, url]) => `    ${what.padEnd(28)} ${url}`),
    "  Tip a worker end to end (sign-up by OTP, QR code, M-Pesa tip, wallet), in another terminal:",
    `    npm run demo -- ${platform.gatewayUrl}${platform.simulators["SMS with OTPs"] ? ` ${platform.simulators["SMS with OTPs"]}` : ""}`,
    ...(platform.offline?.ussdUrl
      ? [
          "  Tip without data: dial the USSD menu (English or Swahili) from a simulated phone, or pay the paybill with a worker's code:",
          `    npm run ussd -- ${platform.offline.ussdUrl} 0712345678`,
          `    curl -s ${platform.offline.paybillPayUrl} -d '{"billRefNumber":"<worker short code>","amount":100}'`,
        ]
      : []),
    ...(platform.partnerSandbox
      ? [
          "  Partner sandbox (README, \"Partners\"): a key with every scope; tips it creates settle on the M-Pesa simulator and come back as signed webhooks:",
          `    npm run partner-sandbox -- ${platform.gatewayUrl} ${platform.partnerSandbox.keyId} ${platform.partnerSandbox.secret}`,
        ]
      : []),
    ...(platform.setupToken
      ? [
          "  No admin yet. The first admin: open the admin console, sign up with your phone and a PIN, and enter this one-time setup token",
          `  (it works once, for 24 hours; a restart prints a new one):   ${platform.gatewayUrl}/admin   ${platform.setupToken}`,
        ]
      : [`  Admin console: ${platform.gatewayUrl}/admin`]),
    `  Metrics: ${platform.gatewayUrl}/metrics   Stop: Ctrl-C`,
    "",
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
}
