// The platform as `make run` serves it (all six services and the gateway in
// this process, the web app on the gateway's one port), on the real
// PostgreSQL, Redis and JetStream that `make test` starts, with the outside
// world simulated (M-Pesa, SMS, notification providers); and Debian's
// chromium driven by playwright-core (never a browser download).
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { randomUUID } from "node:crypto";
import { after } from "node:test";
import { fileURLToPath } from "node:url";
import type { DescService } from "@bufbuild/protobuf";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { Browser, BrowserContextOptions, Locator, Page } from "playwright-core";
import { launchChromium } from "./browser.js";
import { PagePool } from "./page-pool.js";
import { analytics } from "@ttip/analytics";
import { createAuth } from "@ttip/auth";
import { startSmsSimulator, type SmsSimulator } from "@ttip/auth/testing";
import { createNotificationModule, DEFAULT_RETRY } from "@ttip/notification";
import { ProviderSimulator } from "@ttip/notification/testing";
import { createPaymentModule, type PaymentConfig } from "@ttip/payment";
import { registerC2bUrls, simulatedPaymentConfig, startDarajaSimulator, startStripeSimulator, type DarajaSimulator, type StripeSimulator } from "@ttip/payment/testing";
import { startPlatform, type Platform } from "@ttip/platform/src/platform.js";
import { Role } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { OwnerKind, type DynamicParameters, type QrCode } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { DynamicParametersSchema } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { createQrModule } from "@ttip/qr";
import { AdjustableClock, type BusMessage, JetStreamBus, Metrics, normalisePhone, RedisCache, systemClock, type Clock } from "@ttip/runtime";
import { captureLogger, createTestDatabase, eventually as waitUntil, testEnv, uniqueName, type TestDatabase, testPhone } from "@ttip/runtime/testing";
import { createVenueModule } from "@ttip/venue";
import { wallet } from "@ttip/wallet";
import { createWebApp, ensureWebBuild, type WebApp } from "../server.js";

/** A low-end Android phone's screen. */
export const PHONE: BrowserContextOptions = { viewport: { width: 360, height: 740 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };
/** Screenshots of each page at phone size, kept after the run. */
export const ARTIFACTS = path.resolve(fileURLToPath(new URL("../../../test-artifacts/web", import.meta.url)));
/** The secret path segment of the paybill URLs registered with the simulator. */
const C2B_PATH_TOKEN = "web-test-c2b-path-token-0123456789";

/** The runtime's eventually, with the longer default these browser tests need. */
export const eventually = <T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 20_000): Promise<T> =>
  waitUntil(what, check, { timeoutMs, everyMs: 50 });

/** The page's first call of `rpc` ("ttip.venue.v1.VenueService/InviteMember") reaches the platform, and its answer is lost. */
export async function loseFirstAnswer(page: Page, rpc: string): Promise<void> {
  let lose = true;
  await page.route(`**/${rpc}`, async (route) => {
    if (!lose) return route.continue();
    lose = false;
    await route.fetch();
    await route.abort("connectionreset");
  });
}

/**
 * A free port, held until `release` (just before the platform binds it): let go at once, it stood free for the
 * seconds the platform took to migrate and connect, and another test's server took it ("already in use").
 */
async function reservePort(): Promise<{ port: number; release: () => Promise<void> }> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => server.once("error", reject).listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  // Held, it keeps no process alive: a start that fails before the release still ends.
  server.unref();
  return { port, release: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

export interface Worker {
  id: string;
  phone: string;
  token: string;
  pin: string;
}

/**
 * The world every browser file of one process shares: the platform (all services, a fresh database
 * with its migrations, a JetStream stream, a Redis prefix), the simulators, the web app's page server
 * and chromium. Each file paid for it: loading the services' code, starting them and the page server,
 * launching chromium (the smallest browser file cost ~12 s of CPU in all). The files the test runner
 * runs together in one process (browser.group.ts) start it once; a file run alone starts its own. The services' clock is the clock of the file using the stage (each file's starts
 * on the real time), and what a file could leave behind is per file (see WebHarness.start).
 */
class Stage {
  platform!: Platform;
  web!: WebApp;
  sms!: SmsSimulator;
  daraja!: DarajaSimulator;
  stripe!: StripeSimulator;
  readonly providers = new ProviderSimulator();
  readonly logs = captureLogger("warn");
  /** The file using the stage: its clock is the one the services read. */
  user?: WebHarness;
  db?: TestDatabase;
  bus?: JetStreamBus;
  private cache?: RedisCache;
  private readonly cachePrefix = `${uniqueName()}:`;
  /** Chromium, launched for the first page: a file that only calls the platform (the mobile app's gateway test) starts none. */
  private browser?: Promise<Browser>;
  /** Pages reused from test to test, reset in between (a scriptless page of the app's origin: its health check). */
  readonly pages = new PagePool(() => (this.browser ??= launchChromium()), () => `${this.platform.gatewayUrl}/healthz`);

  async start(): Promise<void> {
    await ensureWebBuild();
    this.sms = await startSmsSimulator({ apiKey: "web-sms-key" });
    await this.providers.start();
    this.daraja = await startDarajaSimulator({ callbackDelayMs: 300 });
    const payment: PaymentConfig = simulatedPaymentConfig(this.daraja, {
      fraud: { phonePerWindow: 20, workerPerWindow: 100, windowMs: 600_000, outlierMinor: 20_000_00n, pinFailures: 3 },
    });
    // Paybill payments (the tip page's "no prompt" fallback), registered once the payment port is known.
    payment.c2b = { pathToken: C2B_PATH_TOKEN, shortCodes: [this.daraja.options.shortcode], registerVersion: "v2", responseType: "Completed", registerOnStart: false, validationBudgetMs: 3_000 };
    this.stripe = await startStripeSimulator({ webhookDelayMs: 20 });
    payment.cards = {
      stripe: { secretKey: this.stripe.secretKey, publishableKey: this.stripe.publishableKey, webhookSecret: this.stripe.webhookSecret, apiBase: this.stripe.url, webhookToleranceS: 300, timeoutMs: 5_000 },
      returnUrl: "",
      expireAfterMs: 60_000,
      checkAfterMs: 60_000,
      rules: { maxPerTipKesMinor: 100_000_00n, perCardPerHour: 10, perCardDailyKesMinor: 500_000_00n, countryMismatch: "hold" },
    };
    // The QR codes encode this platform's real address, as in make run.
    const reserved = await reservePort();
    const port = reserved.port;
    const modules = [
      createAuth({ env: { AUTH_SMS_URL: this.sms.url, AUTH_SMS_API_KEY: "web-sms-key", AUTH_OTP_RESEND_SECONDS: "1" } }),
      createPaymentModule({ config: () => payment }),
      createQrModule({ env: { ...process.env, QR_TIP_BASE_URL: `http://127.0.0.1:${port}/t` } }),
      wallet,
      createNotificationModule({ config: { providers: this.providers.config(), retry: { ...DEFAULT_RETRY, baseDelayMs: 30 }, publicUrl: () => "" } }),
      analytics,
      // Invitation links open this platform's /join page, as in make run.
      createVenueModule({ env: { VENUE_JOIN_URL: `http://127.0.0.1:${port}/join`, VENUE_RESUME_INTERVAL_MS: "0" } }),
    ];
    // A copy of a database these schemas were migrated into once per test server: the start's migrate() finds them applied.
    this.db = await createTestDatabase({ migrated: modules });
    this.bus = await JetStreamBus.connect({
      servers: testEnv().natsUrl,
      stream: uniqueName("WEB").toUpperCase(),
      subjectPrefix: uniqueName("ev"),
      logger: this.logs.logger,
      redeliveryDelayMs: 100,
    });
    // A command's 2 s is less than this process stalls while the browser group starts on two busy cores (the web
    // app's server loads meanwhile): the start's first commands timed out, and every test of the file with them.
    this.cache = new RedisCache(testEnv().redisUrl, this.cachePrefix, { commandTimeoutMs: 20_000 });
    let web: WebApp | undefined;
    const clock: Clock = { now: () => (this.user?.clock ?? systemClock).now() };
    await reserved.release();
    this.platform = await startPlatform({
      ctx: { logger: this.logs.logger, pool: this.db.pool, bus: this.bus, cache: this.cache, metrics: new Metrics(), clock },
      modules,
      gateway: {
        rateLimit: { points: 10_000, durationSeconds: 60 },
        // The web app's server calls from loopback on behalf of its customers, as a web pod does from the pods' network.
        trustedProxies: ["127.0.0.1/32", "::1/128"],
        corsOrigins: ["*"],
        host: "127.0.0.1",
        port,
        web: (req, res) => (web ? web.handle(req, res) : (res.writeHead(503), res.end())),
      },
    });
    payment.callbackBaseUrl = this.platform.urls.get("payment")!;
    await registerC2bUrls(this.daraja, `${payment.callbackBaseUrl}/c2b/${C2B_PATH_TOKEN}`);
    this.stripe.setWebhookUrl(`${this.platform.urls.get("payment")}/stripe/webhook`);
    // The card form loads Stripe.js from the simulator, never from the internet.
    this.web = web = await createWebApp({ apiUrl: this.platform.gatewayUrl, stripeJsUrl: `${this.stripe.url}/v3/` });
    mkdirSync(ARTIFACTS, { recursive: true });
  }

  /** Whether the gateway has charged a call to `address`'s budget (an anonymous caller's). */
  async budgetCharged(address: string): Promise<boolean> {
    return (await this.cache!.redis.exists(`${this.cachePrefix}rl:gateway:ip:${address}`)) === 1;
  }

  /**
   * Deletes the services' Redis keys (rate limits such as auth's codes per network, cool-downs, OTP
   * and PIN sessions, cached reads): a file starts with none, as on a platform of its own.
   */
  async clearCache(): Promise<void> {
    for await (const keys of this.cache!.redis.scanStream({ match: `${this.cachePrefix}*`, count: 1_000 }) as AsyncIterable<string[]>) {
      if (keys.length) await this.cache!.redis.del(...keys);
    }
  }

  async stop(): Promise<void> {
    await this.pages.close();
    await (await this.browser?.catch(() => undefined))?.close();
    await this.platform?.close();
    await this.web?.close();
    await this.bus?.close();
    await this.cache?.close();
    await this.db?.drop();
    await this.daraja?.close();
    await this.stripe?.close();
    await this.providers.close();
    await this.sms?.close();
  }
}

/** This process's stage, started by the first WebHarness and stopped when the process's tests end. */
let stage: Promise<Stage> | undefined;

function sharedStage(): Promise<Stage> {
  stage ??= (async () => {
    const s = new Stage();
    try {
      await s.start();
      return s;
    } catch (err) {
      stage = undefined;
      await s.stop().catch(() => undefined);
      throw err;
    }
  })();
  return stage;
}

// After every test of this process (a file's, or the browser group's): the stage's servers and chromium end.
after(async () => {
  const s = await stage?.catch(() => undefined);
  stage = undefined;
  await s?.stop();
});

/** One test file's view of the shared stage: its own clock, captured logs and pages. */
export class WebHarness {
  platform!: Platform;
  web!: WebApp;
  sms!: SmsSimulator;
  daraja!: DarajaSimulator;
  /** Card tips: Stripe's simulator, whose Stripe.js double the page loads. */
  stripe!: StripeSimulator;
  /** SMS, e-mail and push providers: what the notification service sent (tests read it by their own phones). */
  providers!: ProviderSimulator;
  /** The services' warnings and errors while this file runs. */
  logs!: ReturnType<typeof captureLogger>;
  /** The services' clock while this file runs (from the real time): moved past the OTP resend cool-down rather than slept through. */
  readonly clock = new AdjustableClock();
  private stage?: Stage;

  get url(): string {
    return this.platform.gatewayUrl;
  }

  /**
   * Takes the process's stage (started here the first time). What an earlier file could have left
   * is not seen: the services read this file's clock, their Redis keys (rate limits, cool-downs) and
   * the captured logs start empty, every page was reset to a new profile; the simulators' records are
   * keyed by phone and id, unique per test.
   */
  async start(): Promise<this> {
    const s = await sharedStage();
    // Files take the stage one after another; one whose after hook never ran gives it up here.
    await s.user?.stop();
    s.user = this;
    this.stage = s;
    s.logs.lines.length = 0;
    await s.clearCache();
    ({ platform: this.platform, web: this.web, sms: this.sms, daraja: this.daraja, stripe: this.stripe, providers: this.providers, logs: this.logs } = s);
    return this;
  }

  /** Gives the stage back (pages reset for the next file); the stage itself ends with the process's tests. */
  async stop(): Promise<void> {
    const s = this.stage;
    if (!s) return;
    if (process.env.TEST_LOGS) for (const l of s.logs.lines) console.error(l);
    await s.pages.giveBack();
    s.user = undefined;
    this.stage = undefined;
  }

  /** Whether the gateway has charged a call to `address`'s budget (an anonymous caller's). */
  budgetCharged(address: string): Promise<boolean> {
    return this.stage!.budgetCharged(address);
  }

  /** A statement on the platform's database: a row as an older version left it (tests' setup only). */
  sql(text: string, values: unknown[] = []) {
    return this.stage!.db!.pool.query(text, values);
  }

  /** An event on the platform's bus as its producer would publish it: one no flow of these tests makes (tests' setup only). */
  publish(message: BusMessage) {
    return this.stage!.bus!.publish(message);
  }

  /** A fresh browser profile at phone size (scripts on unless told): a new context's, or one reset since a test before. */
  phone(options: BrowserContextOptions = {}): Promise<Page> {
    return this.stage!.pages.page({ ...PHONE, locale: "en-KE", ...options });
  }

  /**
   * Ends every page opened so far (a test's, in an afterEach): a page left open keeps its renderer
   * and its live streams (the home's dashboard, a tip's status) busy through the tests after it.
   * Each is reset for the next test (or closed when it cannot be).
   */
  closePages(): Promise<void> {
    return this.stage!.pages.giveBack();
  }

  async screenshot(page: Page, name: string): Promise<string> {
    const file = path.join(ARTIFACTS, `${name}.png`);
    await page.screenshot({ path: file, fullPage: true });
    return file;
  }

  api<S extends DescService>(service: S, token?: string): Client<S> {
    const headers: Interceptor = (next) => (req) => {
      if (token) req.header.set("authorization", `Bearer ${token}`);
      return next(req);
    };
    return createClient(service, createConnectTransport({ baseUrl: this.url, httpVersion: "1.1", interceptors: [headers] }));
  }

  /** The 6-digit code the SMS simulator delivered last to `phone`. */
  otpFor(phone: string): string {
    const sms = this.sms.lastTo(phone.replace(/^0/, "254"));
    const otp = /\b(\d{6})\b/.exec(sms?.message ?? "")?.[1];
    assert.ok(otp, `an OTP SMS to ${phone}`);
    return otp;
  }

  /** A worker signed up over the API (OTP, PIN) with a tip-page profile. */
  async worker(displayName: string): Promise<Worker> {
    const phone = testPhone({ format: "07" });
    const auth = this.api(AuthService);
    const { challengeId } = await auth.startPhoneVerification({ phone });
    const { tokens } = await auth.verifyPhoneOtp({ challengeId, otp: this.otpFor(phone), role: Role.WORKER });
    const token = tokens!.accessToken;
    const id = JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString()).sub as string;
    const pin = "4826";
    await this.api(AuthService, token).setPin({ pin });
    await this.api(QrService, token).putProfile({ ownerKind: OwnerKind.WORKER, ownerId: id, displayName, currency: "KES", city: "Nairobi" });
    return { id, phone, token, pin };
  }

  /** Fresh tokens for a worker (OTP, then their PIN), as the sign-in screen gets them. */
  async tokens(worker: { phone: string; pin: string }): Promise<{ accessToken: string; refreshToken: string }> {
    const auth = this.api(AuthService);
    for (let i = 0; ; i++) {
      try {
        const before = this.sms.lastTo(worker.phone.replace(/^0/, "254"))?.message;
        const { challengeId } = await auth.startPhoneVerification({ phone: worker.phone });
        await eventually("a new OTP", () => this.sms.lastTo(worker.phone.replace(/^0/, "254"))?.message !== before);
        const res = await auth.verifyPhoneOtp({ challengeId, otp: this.otpFor(worker.phone), role: Role.WORKER });
        if (res.tokens) return res.tokens;
        const { tokens } = await auth.verifyPin({ pinSessionId: res.pinSessionId, pin: worker.pin });
        return tokens!;
      } catch (err) {
        // The OTP resend wait (1 s here) after the sign-up's own code: the clock moves past it.
        if (i >= 5) throw err;
        this.clock.advance(1_100);
      }
    }
  }

  /** A page at phone size already signed in as `worker` (the session the sign-in screen keeps). */
  async signedInPhone(worker: { phone: string; pin: string }, options: BrowserContextOptions = {}): Promise<Page> {
    return this.signedInAs(await this.tokens(worker), options);
  }

  /**
   * A page at phone size (unless told) whose browser already keeps `tokens` as its session, as the
   * sign-in screen leaves it (`ttip_session` in local storage): set with the context, so no page is
   * loaded to write it. A manager's session from `venue()` has no refresh token.
   */
  async signedInAs(tokens: { accessToken: string; refreshToken?: string }, options: BrowserContextOptions = {}): Promise<Page> {
    const userId = JSON.parse(Buffer.from(tokens.accessToken.split(".")[1], "base64url").toString()).sub as string;
    const session = { accessToken: tokens.accessToken, refreshToken: tokens.refreshToken ?? "", userId };
    const storageState = { cookies: [], origins: [{ origin: new URL(this.url).origin, localStorage: [{ name: "ttip_session", value: JSON.stringify(session) }] }] };
    return this.phone({ storageState, ...options });
  }

  /**
   * The PIN typed where the browser asks for it to add its device key (auth adds a key only with the PIN), when it
   * asks before `next` shows: a browser holding a key asks nothing.
   */
  async pinIfAsked(page: Page, pin: string, next: Locator): Promise<void> {
    const field = page.getByLabel("Your PIN", { exact: true });
    await field.or(next).first().waitFor({ timeout: 20_000 });
    if (!(await field.isVisible())) return;
    await field.fill(pin);
    await page.getByRole("button", { name: "Set up this device" }).click();
  }

  /** A venue manager signed up over the API, and the venue they created (qr's profile). */
  /** A venue in qr, managed by a new venue manager signed up by OTP from `managerPhone` (07…). */
  async venue(displayName: string): Promise<{ id: string; managerToken: string; managerPhone: string }> {
    const phone = testPhone({ format: "07" });
    const auth = this.api(AuthService);
    const { challengeId } = await auth.startPhoneVerification({ phone });
    const { tokens } = await auth.verifyPhoneOtp({ challengeId, otp: this.otpFor(phone), role: Role.VENUE_MANAGER });
    const id = randomUUID();
    await this.api(QrService, tokens!.accessToken).putProfile({ ownerKind: OwnerKind.VENUE, ownerId: id, displayName, currency: "KES", city: "Nairobi" });
    return { id, managerToken: tokens!.accessToken, managerPhone: phone };
  }

  /** A code of the venue itself (a table's, with parameters.table): tips to it go to the venue's pool. */
  async venueCode(venue: { id: string; managerToken: string }, parameters?: MessageInitShape<typeof DynamicParametersSchema>): Promise<QrCode> {
    const { qrCode } = await this.api(QrService, venue.managerToken).createQrCode({
      ownerKind: OwnerKind.VENUE,
      ownerId: venue.id,
      idempotencyKey: randomUUID(),
      parameters: parameters as DynamicParameters | undefined,
    });
    return qrCode!;
  }

  async qrCode(worker: Worker, parameters?: MessageInitShape<typeof DynamicParametersSchema>): Promise<QrCode> {
    const { qrCode } = await this.api(QrService, worker.token).createQrCode({
      ownerKind: OwnerKind.WORKER,
      ownerId: worker.id,
      idempotencyKey: randomUUID(),
      parameters: parameters as DynamicParameters | undefined,
    });
    return qrCode!;
  }

  /** STK pushes the simulator took for `phone` (national or 254 form). */
  pushesTo(phone: string) {
    return this.transactionsOf("stk", phone);
  }

  /** B2C payouts the simulator took to `phone`: the stage's simulator also holds the other files' payouts. */
  payoutsTo(phone: string) {
    return this.transactionsOf("b2c", phone);
  }

  private transactionsOf(kind: "stk" | "b2c", phone: string) {
    const msisdn = normalisePhone(phone);
    return this.daraja.transactions().filter((t) => t.kind === kind && normalisePhone(t.phone) === msisdn);
  }
}
