// The whole platform behind its gateway on the real PostgreSQL, Redis and
// JetStream of `make test`, with the outside world simulated, for the tests
// that attack it from outside (boundary tests and the fuzz suite).
import type { DescService } from "@bufbuild/protobuf";
import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { analytics } from "@ttip/analytics";
import { createAuth } from "@ttip/auth";
import { startSmsSimulator, type SmsSimulator } from "@ttip/auth/testing";
import { createNotificationModule, DEFAULT_RETRY } from "@ttip/notification";
import { ProviderSimulator } from "@ttip/notification/testing";
import { createPaymentModule, type PaymentConfig } from "@ttip/payment";
import { simulatedPaymentConfig, startDarajaSimulator, type DarajaSimulator } from "@ttip/payment/testing";
import { Role } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { qr } from "@ttip/qr";
import { JetStreamBus, Metrics, RedisCache, type Logger } from "@ttip/runtime";
import { captureLogger, createTestDatabase, testEnv, uniqueName, type TestDatabase, testPhone } from "@ttip/runtime/testing";
import { venue } from "@ttip/venue";
import { wallet } from "@ttip/wallet";
import { startPlatform, type Platform, type PlatformOptions } from "../src/platform.js";

export const subjectOf = (token: string): string => JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString()).sub;

export interface BoundaryPlatform {
  platform: Platform;
  db: TestDatabase;
  sms: SmsSimulator;
  daraja: DarajaSimulator;
  payment: PaymentConfig;
  /** The SMS, e-mail and push providers notification delivers through. */
  providers: ProviderSimulator;
  logs: ReturnType<typeof captureLogger>;
  /** A Connect (HTTP/1.1) client through the gateway, as the holder of `token`. */
  api<S extends DescService>(service: S, token?: string, headers?: Record<string, string>): Client<S>;
  /** A new user by phone OTP, with an access token; admin is granted in the database as for a deployment's first admin. */
  signUp(role: "worker" | "admin"): Promise<{ userId: string; accessToken: string; refreshToken: string; phone: string }>;
  /** Rows per table of every service schema. */
  rowCounts(): Promise<Map<string, number>>;
  /** Row counts once nothing has changed for 250 ms (events still being consumed move them; up to 15 s). */
  settledRowCounts(): Promise<Map<string, number>>;
  close(): Promise<void>;
}

export interface BoundaryOptions {
  gateway?: Partial<PlatformOptions["gateway"]>;
  logger?: Logger;
  authEnv?: Record<string, string>;
}

export async function startBoundaryPlatform(options: BoundaryOptions = {}): Promise<BoundaryPlatform> {
  const logs = captureLogger("warn");
  const logger = options.logger ?? logs.logger;
  const sms = await startSmsSimulator({ apiKey: "boundary-sms-key" });
  const providers = new ProviderSimulator();
  await providers.start();
  const daraja = await startDarajaSimulator({ callbackDelayMs: 20 });
  const payment: PaymentConfig = simulatedPaymentConfig(daraja);
  const modules = [
    createAuth({ env: { AUTH_SMS_URL: sms.url, AUTH_SMS_API_KEY: "boundary-sms-key", AUTH_OTP_RESEND_SECONDS: "1", ...options.authEnv } }),
    createPaymentModule({ config: () => payment }),
    qr,
    wallet,
    createNotificationModule({ config: { providers: providers.config(), retry: { ...DEFAULT_RETRY, baseDelayMs: 30 }, publicUrl: () => "" } }),
    analytics,
    venue,
  ];
  // A copy of a database these schemas were migrated into once per test server: the start's migrate() finds them applied.
  const db = await createTestDatabase({ migrated: modules });
  const bus = await JetStreamBus.connect({
    servers: testEnv().natsUrl,
    stream: uniqueName("B").toUpperCase(),
    subjectPrefix: uniqueName("ev"),
    logger,
    redeliveryDelayMs: 100,
  });
  const cache = new RedisCache(testEnv().redisUrl, `${uniqueName()}:`);
  const platform = await startPlatform({
    ctx: { logger, pool: db.pool, bus, cache, metrics: new Metrics() },
    modules,
    gateway: { rateLimit: { points: 100_000, durationSeconds: 60 }, corsOrigins: ["*"], host: "127.0.0.1", port: 0, ...options.gateway },
  });
  payment.callbackBaseUrl = platform.urls.get("payment")!;

  function api<S extends DescService>(service: S, token?: string, headers: Record<string, string> = {}): Client<S> {
    const set: Interceptor = (next) => (req) => {
      if (token) req.header.set("authorization", `Bearer ${token}`);
      for (const [k, v] of Object.entries(headers)) req.header.set(k, v);
      return next(req);
    };
    return createClient(service, createConnectTransport({ baseUrl: platform.gatewayUrl, httpVersion: "1.1", interceptors: [set] }));
  }

  async function signUp(role: "worker" | "admin") {
    const phone = testPhone();
    const auth = api(AuthService);
    const { challengeId } = await auth.startPhoneVerification({ phone });
    const otp = /\b(\d{6})\b/.exec(sms.lastTo(phone)!.message)![1];
    const res = await auth.verifyPhoneOtp({ challengeId, otp, role: role === "worker" ? Role.WORKER : undefined });
    let tokens = res.tokens!;
    const userId = subjectOf(tokens.accessToken);
    if (role === "admin") {
      await db.pool.query("UPDATE auth.users SET roles = ARRAY['admin'] WHERE user_id = $1", [userId]);
      tokens = (await auth.refreshSession({ refreshToken: tokens.refreshToken })).tokens!;
    }
    return { userId, accessToken: tokens.accessToken, refreshToken: tokens.refreshToken, phone };
  }

  // Written by timers, not by requests: the weekly summary's lease is taken whenever its scheduler first runs.
  const BACKGROUND_TABLES = new Set(["analytics.leases"]);

  async function rowCounts() {
    const { rows } = await db.pool.query<{ schemaname: string; relname: string }>(
      `SELECT schemaname, relname FROM pg_stat_user_tables
        WHERE schemaname IN ('auth','payment','qr','wallet','notification','analytics','venue') ORDER BY 1, 2`,
    );
    const tables = rows.filter((r) => !BACKGROUND_TABLES.has(`${r.schemaname}.${r.relname}`));
    // One statement for every table (one snapshot, one round trip), not a query per table: the fuzz
    // test's replays count some 100 tables at least four times per chunk of 50 requests.
    const { rows: counted } = await db.pool.query<{ t: string; n: number }>(
      tables.map((r) => `SELECT '${r.schemaname}.${r.relname}' AS t, count(*)::int AS n FROM "${r.schemaname}"."${r.relname}"`).join(" UNION ALL ") + " ORDER BY t",
    );
    return new Map(counted.map((r) => [r.t, r.n]));
  }

  async function settledRowCounts() {
    let previous = await rowCounts();
    for (let i = 0; i < 60; i++) {
      await new Promise((r) => setTimeout(r, 250));
      const now = await rowCounts();
      if (JSON.stringify([...now]) === JSON.stringify([...previous])) return now;
      previous = now;
    }
    return previous;
  }

  return {
    platform,
    db,
    sms,
    daraja,
    payment,
    providers,
    logs,
    api,
    signUp,
    rowCounts,
    settledRowCounts,
    close: async () => {
      if (process.env.TEST_LOGS) for (const l of logs.lines) console.error(l);
      await platform.close();
      await bus.close();
      await cache.close();
      await db.drop();
      await daraja.close();
      await providers.close();
      await sms.close();
    },
  };
}
