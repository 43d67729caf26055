// The admin console as make run serves it (the bundle at /admin on the
// gateway's one port) in front of auth, payment and wallet on the real
// PostgreSQL, Redis and JetStream the test runner starts, M-Pesa and SMS
// simulated; Debian's chromium driven by playwright-core.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { after } from "node:test";
import type { DescService } from "@bufbuild/protobuf";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import type { Browser, BrowserContext, BrowserContextOptions, Page } from "playwright-core";
import { analytics } from "@ttip/analytics";
import { createAuth, issueSetupToken } from "@ttip/auth";
import { startSmsSimulator, type SmsSimulator } from "@ttip/auth/testing";
import { createNotificationModule, DEFAULT_RETRY } from "@ttip/notification";
import { ProviderSimulator } from "@ttip/notification/testing";
import { createPaymentModule, type PaymentConfig } from "@ttip/payment";
import { registerC2bUrls, simulatedPaymentConfig, startDarajaSimulator, startStripeSimulator, type DarajaSimulator, type StripeSimulator } from "@ttip/payment/testing";
import { startPlatform, type Platform } from "@ttip/platform/src/platform.js";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { TipStatus, type Tip } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { AdjustableClock, JetStreamBus, Metrics, RedisCache } from "@ttip/runtime";
import { captureLogger, createTestDatabase, deviceStepUp, eventually as waitUntil, testEnv, testPhone, uniqueName, type TestDatabase } from "@ttip/runtime/testing";
import { createVenueModule } from "@ttip/venue";
import { wallet } from "@ttip/wallet";
import { createQrModule } from "@ttip/qr";
import { launchChromium, newBrowserContext } from "../../web/test/browser.js";
import { createAdminHandler, ensureAdminBuild, isAdminPath } from "../server.js";

const C2B_PATH_TOKEN = "admin-test-c2b-path-token-0123456789";

/** The runtime's eventually, polling as often as these browser tests did. */
export const eventually = <T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 15_000): Promise<T> =>
  waitUntil(what, check, { timeoutMs, everyMs: 50 });

/** A partner's webhook endpoint on loopback: answers 200 and records every request. */
export async function startWebhookReceiver() {
  const received: Array<{ headers: IncomingHttpHeaders; body: string }> = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => (received.push({ headers: req.headers, body: Buffer.concat(chunks).toString("utf8") }), res.end("ok")));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/ttip`,
    received,
    close: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))),
  };
}

/**
 * Chromium, launched by the first file of this process that starts a harness and shared by the files
 * after it (console.group.ts runs the console's browser files in one process): its launch and the
 * services' code, loaded once, are most of what a small file costs. Nothing else is shared: each file
 * starts its own platform on a new database, bus, Redis prefix and simulators, so it makes its own
 * first admin; every page is a new context, closed with its file.
 */
let chromium: Promise<Browser> | undefined;

function sharedChromium(): Promise<Browser> {
  const launched = (chromium ??= launchChromium().then(
    // One that crashed is not handed to the next file: it launches another.
    (browser) => (browser.once("disconnected", () => chromium === launched && (chromium = undefined)), browser),
    (err) => {
      chromium = undefined;
      throw err;
    },
  ));
  return launched;
}

// After every test of this process (a file's, or the group's): chromium ends.
after(async () => {
  const browser = await chromium?.catch(() => undefined);
  chromium = undefined;
  await browser?.close();
});

export class AdminHarness {
  platform!: Platform;
  browser!: Browser;
  sms!: SmsSimulator;
  daraja!: DarajaSimulator;
  /** Card tips: Stripe's simulator, confirmed as Stripe.js would from the customer's page. */
  stripe!: StripeSimulator;
  db!: TestDatabase;
  readonly logs = captureLogger("warn");
  /** The services' clock: moved past the OTP resend cool-down rather than slept through. */
  readonly clock = new AdjustableClock();
  /** SMS, e-mail and push providers: what the notification service really sent. */
  readonly providers = new ProviderSimulator();
  /** Each RPC the console's clients sent the gateway from its pages: its path and content type (binary protobuf or JSON). */
  readonly rpcs: Array<{ path: string; contentType: string }> = [];
  private bus?: JetStreamBus;
  private cache?: RedisCache;
  private contexts: BrowserContext[] = [];

  get url(): string {
    return this.platform.gatewayUrl;
  }

  async start(): Promise<this> {
    await ensureAdminBuild();
    this.sms = await startSmsSimulator({ apiKey: "admin-sms-key" });
    await this.providers.start();
    this.daraja = await startDarajaSimulator({ callbackDelayMs: 100 });
    const payment: PaymentConfig = simulatedPaymentConfig(this.daraja, {
      fraud: { phonePerWindow: 20, workerPerWindow: 100, windowMs: 600_000, outlierMinor: 20_000_00n, pinFailures: 3 },
    });
    // Paybill payments, so the suspense screen has something to resolve.
    payment.c2b = { pathToken: C2B_PATH_TOKEN, shortCodes: [this.daraja.options.shortcode], registerVersion: "v2", responseType: "Completed", registerOnStart: false, validationBudgetMs: 3_000 };
    this.stripe = await startStripeSimulator({ webhookDelayMs: 20 });
    payment.cards = {
      stripe: { secretKey: this.stripe.secretKey, publishableKey: this.stripe.publishableKey, webhookSecret: this.stripe.webhookSecret, apiBase: this.stripe.url, webhookToleranceS: 300, timeoutMs: 5_000 },
      returnUrl: "",
      expireAfterMs: 60_000,
      checkAfterMs: 60_000,
      rules: { maxPerTipKesMinor: 100_000_00n, perCardPerHour: 50, perCardDailyKesMinor: 5_000_000_00n, countryMismatch: "hold" },
    };
    const modules = [
      createAuth({ env: { AUTH_SMS_URL: this.sms.url, AUTH_SMS_API_KEY: "admin-sms-key", AUTH_OTP_RESEND_SECONDS: "1", AUTH_WEBHOOK_ALLOW_LOOPBACK: "true", AUTH_WEBHOOK_POLL_MS: "50" } }),
      createPaymentModule({ config: () => payment }),
      createQrModule({ env: { ...process.env, QR_TIP_BASE_URL: "http://127.0.0.1:1/t" } }),
      wallet,
      analytics,
      createNotificationModule({ config: { providers: this.providers.config(), retry: { ...DEFAULT_RETRY, baseDelayMs: 30 }, publicUrl: () => "" } }),
      // The Venues screen acts through it (a venue's managers).
      createVenueModule({ env: { VENUE_RESUME_INTERVAL_MS: "0" } }),
    ];
    // A copy of a database these schemas were migrated into once per test server: each start's migrate() finds them applied.
    this.db = await createTestDatabase({ migrated: modules });
    this.bus = await JetStreamBus.connect({ servers: testEnv().natsUrl, stream: uniqueName("ADM").toUpperCase(), subjectPrefix: uniqueName("ev"), logger: this.logs.logger, redeliveryDelayMs: 100 });
    this.cache = new RedisCache(testEnv().redisUrl, `${uniqueName()}:`);
    const admin = createAdminHandler();
    this.platform = await startPlatform({
      ctx: { logger: this.logs.logger, pool: this.db.pool, bus: this.bus, cache: this.cache, metrics: new Metrics(), clock: this.clock },
      modules,
      gateway: {
        rateLimit: { points: 10_000, durationSeconds: 60 },
        corsOrigins: [],
        host: "127.0.0.1",
        port: 0,
        web: (req, res) => (isAdminPath(req.url) ? admin(req, res) : (res.writeHead(404), res.end())),
      },
    });
    payment.callbackBaseUrl = this.platform.urls.get("payment")!;
    await registerC2bUrls(this.daraja, `${payment.callbackBaseUrl}/c2b/${C2B_PATH_TOKEN}`);
    this.stripe.setWebhookUrl(`${payment.callbackBaseUrl}/stripe/webhook`);
    this.browser = await sharedChromium();
    return this;
  }

  async stop(): Promise<void> {
    if (process.env.TEST_LOGS) for (const l of this.logs.lines) console.error(l);
    for (const c of this.contexts) await c.close().catch(() => undefined);
    await this.platform?.close();
    await this.bus?.close();
    await this.cache?.close();
    await this.db?.drop();
    await this.daraja?.close();
    await this.stripe?.close();
    await this.sms?.close();
    await this.providers.close();
  }

  /** A new page signed in as a new person who becomes the first admin by the setup token; answers the page and the admin's access token. */
  async firstAdmin(phone: string, pin = "7391"): Promise<{ page: Page; token: string }> {
    const page = await this.page();
    await this.signIn(page, phone, pin);
    await page.getByLabel(/Setup token/).fill(await this.setupToken());
    await page.getByRole("button", { name: "Become the first admin" }).click();
    await page.getByRole("heading", { name: "Users" }).waitFor();
    return { page, token: await this.tokenOf(page) };
  }

  setupToken(): Promise<string> {
    return issueSetupToken(this.db.pool, "by test").then((s) => s!.token);
  }

  /**
   * A new browser's page, on a laptop far from Nairobi by default (Los Angeles, 11 h behind):
   * the console must read and show Nairobi's times whatever the admin's zone.
   */
  async page(options: BrowserContextOptions = {}): Promise<Page> {
    const context = await newBrowserContext(this.browser, { viewport: { width: 1280, height: 900 }, locale: "en-KE", timezoneId: "America/Los_Angeles", ...options });
    this.contexts.push(context);
    const page = await context.newPage();
    page.on("request", (r) => {
      const path = new URL(r.url()).pathname;
      const headers = r.headers();
      // Connect's RPC paths (/<package>.<Service>/<Method>), from the console's Connect clients
      // (they send connect-protocol-version; a test's own fetch in the page does not).
      if (r.method() === "POST" && /^\/ttip\.[\w.]+\/\w+$/.test(path) && headers["connect-protocol-version"]) {
        this.rpcs.push({ path, contentType: headers["content-type"] ?? "" });
      }
    });
    return page;
  }

  otpFor(phone: string): string {
    const sms = this.sms.lastTo(phone);
    assert.ok(sms, `an SMS to ${phone}`);
    return /\b(\d{6})\b/.exec(sms.message)![1];
  }

  /** Signs in at /admin as a person would: phone, the SMS code, then the PIN (chosen on first sign-in). */
  async signIn(page: Page, phone: string, pin: string): Promise<void> {
    await page.goto(`${this.url}/admin`);
    await page.getByLabel("Phone number").fill(phone);
    const before = this.sms.lastTo(phone)?.message;
    // A code sent within the last second (sign-up just before) makes auth ask to wait: move the clock on and ask again.
    for (let tries = 0; ; tries++) {
      await page.getByRole("button", { name: "Send code" }).click();
      const sent = await eventually("the OTP SMS or a refusal", async () =>
        (this.sms.lastTo(phone) && this.sms.lastTo(phone)!.message !== before) ? "sent" : (await page.getByRole("alert").count()) ? "refused" : undefined);
      if (sent === "sent") break;
      assert.ok(tries < 3, `the code was refused: ${await page.getByRole("alert").textContent()}`);
      this.clock.advance(1_100); // past the 1 s resend cool-down
    }
    await page.getByLabel("Code sent by SMS").fill(this.otpFor(phone));
    await page.getByRole("button", { name: "Continue" }).click();
    await page.getByLabel(/PIN/).fill(pin);
    await page.getByRole("button", { name: "Continue" }).click();
  }

  /** The signed-in console user's access token, from the page. */
  async tokenOf(page: Page): Promise<string> {
    return page.evaluate(() => JSON.parse(localStorage.getItem("ttip_admin_session")!).accessToken as string);
  }

  api<S extends DescService>(service: S, token?: string): Client<S> {
    const headers: Interceptor = (next) => (req) => {
      if (token) req.header.set("authorization", `Bearer ${token}`);
      return next(req);
    };
    return createClient(service, createConnectTransport({ baseUrl: this.url, httpVersion: "1.1", interceptors: [headers] }));
  }

  /** Call options carrying a device step-up for `token`'s admin (a key registered with `pin`), for API calls a test makes itself. */
  stepUp(token: string, pin: string): Promise<{ headers: Record<string, string> }> {
    return deviceStepUp(this.api(AuthService, token), pin);
  }

  /** The console's payment detail of a worker's payout, found by the Payments screen's filters. */
  payoutDetail(page: Page, workerId: string, payoutId: string) {
    return this.paymentDetail(page, "payouts", workerId, payoutId);
  }

  /** The console's payment detail of a worker's tip, found by the Payments screen's filters. */
  tipDetail(page: Page, workerId: string, tipId: string) {
    return this.paymentDetail(page, "tips", workerId, tipId);
  }

  private async paymentDetail(page: Page, kind: "tips" | "payouts", workerId: string, id: string) {
    await page.getByRole("link", { name: "Payments", exact: true }).click();
    await page.getByLabel("Kind").selectOption(kind);
    await page.getByLabel("Worker id").fill(workerId);
    await page.getByRole("button", { name: "Filter" }).click();
    await page.locator(`tr[data-${kind === "tips" ? "tip" : "payout"}-id="${id}"]`).getByRole("button").first().click();
    return page.getByLabel("Payment detail");
  }

  /** A user signed up by OTP through the gateway (a worker by default), with a PIN. */
  async signUp(phone: string, pin = "2580", name = ""): Promise<{ userId: string; accessToken: string; refreshToken: string }> {
    const auth = this.api(AuthService);
    const { challengeId } = await auth.startPhoneVerification({ phone });
    const r = await auth.verifyPhoneOtp({ challengeId, otp: this.otpFor(phone), role: 2 });
    const tokens = r.tokens!;
    await this.api(AuthService, tokens.accessToken).setPin({ pin });
    if (name) await this.api(AuthService, tokens.accessToken).updateProfile({ displayName: name });
    const userId = JSON.parse(Buffer.from(tokens.accessToken.split(".")[1], "base64url").toString()).sub as string;
    return { userId, accessToken: tokens.accessToken, refreshToken: tokens.refreshToken };
  }

  /** A card tip to the worker in the amount's currency, paid by a Visa card on Stripe's simulator, as read once succeeded. */
  async cardTip(workerId: string, amount: { currency: string; amountMinor: bigint }): Promise<Tip> {
    const { tip, stripeClientSecret } = await this.api(PaymentService).createTip({
      idempotencyKey: randomUUID(),
      recipient: { case: "workerId", value: workerId },
      amount,
      payment: { case: "card", value: true },
    });
    // The customer's page confirms the PaymentIntent with the publishable key, as Stripe.js does.
    const res = await fetch(`${this.stripe.url}/v1/payment_intents/${stripeClientSecret.split("_secret_")[0]}/confirm`, {
      method: "POST",
      headers: { authorization: `Bearer ${this.stripe.publishableKey}`, "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ payment_method: "pm_card_visa", client_secret: stripeClientSecret, return_url: "http://127.0.0.1/tip/done" }),
    });
    assert.equal(res.status, 200, `the card confirmed: ${await res.text()}`);
    return eventually("the card tip succeeded", async () => {
      const read = (await this.api(PaymentService).getTip({ tipId: tip!.tipId })).tip;
      return read?.status === TipStatus.SUCCEEDED && read;
    });
  }

  /** A KES 100 M-Pesa tip to the worker, held for review (M-Pesa charged another amount than asked), as read once held. */
  async heldTip(workerId: string): Promise<Tip> {
    const payer = testPhone({ format: "07" });
    this.daraja.script({ phone: `254${payer.slice(1)}` }, { stk: "amount_mismatch" });
    const { tip } = await this.api(PaymentService).createTip({
      idempotencyKey: randomUUID(),
      recipient: { case: "workerId", value: workerId },
      amount: { currency: "KES", amountMinor: 100_00n },
      payment: { case: "mpesaPhone", value: payer },
    });
    return eventually("the tip held for review", async () => {
      const read = (await this.api(PaymentService).getTip({ tipId: tip!.tipId })).tip;
      return read?.status === TipStatus.HELD_FOR_REVIEW && read;
    });
  }
}
