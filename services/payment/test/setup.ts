// Shared by the payment tests: the payment service with the real wallet
// service, on the harness's PostgreSQL/Redis/NATS, against the Daraja simulator.
import { createHash, randomBytes, randomUUID } from "node:crypto";
import http from "node:http";
import { createClient } from "@connectrpc/connect";
import { AdjustableClock, callerHeaders, createLogger, httpRequest, normalisePhone, type ServiceModule } from "@ttip/runtime";
import { captureLogger, startTestService, testPhone, type TestService } from "@ttip/runtime/testing";
import { eventually as waitUntil } from "@ttip/runtime/testing";
import { WalletAdminService, WalletService } from "@ttip/proto/ttip/wallet/v1/wallet_service_pb.js";
import { wallet } from "@ttip/wallet";
import { createPaymentModule, type PaymentConfig } from "../src/index.js";
import type { DarajaConfig } from "../src/daraja/client.js";
import { simulatedPaymentConfig, startDarajaSimulator, type DarajaSimulator } from "../src/testing.js";

export interface Harness {
  t: TestService;
  sim: DarajaSimulator;
  /** The error lines logged so far, as written (after redaction); empty with PAYMENT_TEST_LOG. */
  errorLines: string[];
  config: PaymentConfig;
  /** The services' clock: move it past an STK deadline or a payout's result wait rather than sleep. */
  clock: AdjustableClock;
  /** Worker's available KES balance in the real wallet (0 when it has none). */
  balance(workerId: string): Promise<bigint>;
  walletEntries(workerId: string): Promise<number>;
  trialBalanced(): Promise<boolean>;
  /** The newest fee schedule version of `currency` in payment's copy (0 before it loaded one). */
  copiedFeeScheduleVersion(currency: string): Promise<number>;
  /** POSTs a callback as Daraja would, from `from` (a loopback address). */
  post(path: string, body: unknown, from?: string): Promise<{ status: number; body: string }>;
  close(): Promise<void>;
}

/**
 * The Daraja client's timeout here: above the stalls of a test process on two busy cores. At 1 s a
 * push on a new connection timed out before it was written when the process did not run for a
 * second: "not sent", its tip failed at once and no push came (push-under-stall.test.ts).
 */
export const DARAJA_TIMEOUT_MS = 3000;
/** When the simulator's late answers come (slow_ack, a late STK callback): after the client gave up. */
export const DARAJA_LATE_MS = DARAJA_TIMEOUT_MS + 1000;

export async function startHarness(overrides: Partial<PaymentConfig> = {}, extra: ServiceModule[] = []): Promise<Harness> {
  const sim = await startDarajaSimulator({ callbackDelayMs: 30, lateDelayMs: DARAJA_LATE_MS });
  // Callbacks from loopback only: the forged-callback test posts from 127.0.0.2, outside it.
  const config: PaymentConfig = simulatedPaymentConfig(sim, {
    daraja: { ...sim.clientConfig(), timeoutMs: DARAJA_TIMEOUT_MS },
    stkDeadlineMs: 100,
    payoutResultWaitMs: 100,
    // These workers are unknown to auth: each first payout number would wait a day (payout-number-cooling.test.ts sets it).
    payoutNumberCoolingOffMs: 0,
    fraud: { phonePerWindow: 5, workerPerWindow: 1000, windowMs: 600_000, outlierMinor: 20_000_00n, pinFailures: 3 },
    ...overrides,
  });
  const clock = new AdjustableClock();
  // Errors are kept (as the JSON lines the redaction wrote) for the tests that read them; PAYMENT_TEST_LOG prints warnings instead.
  const errors = captureLogger("error");
  const t = await startTestService(createPaymentModule({ config: () => config }), { with: [wallet, ...extra], clock, logger: process.env.PAYMENT_TEST_LOG ? createLogger({ level: "warn" }) : errors.logger });
  config.callbackBaseUrl = t.service.server.url;
  const walletUser = createClient(WalletService, t.ctx.peers("wallet"));
  const walletAdmin = createClient(WalletAdminService, t.ctx.peers("wallet"));
  return {
    t,
    sim,
    errorLines: errors.lines,
    config,
    clock,
    balance: async (workerId) => {
      const { balances } = await walletUser.getBalance({ currency: "KES" }, { headers: callerHeaders(workerId, "worker") });
      return balances[0]?.available?.amountMinor ?? 0n;
    },
    walletEntries: async (workerId) => {
      const { transactions } = await walletUser.listTransactions({ currency: "KES" }, { headers: callerHeaders(workerId, "worker") });
      return transactions.length;
    },
    trialBalanced: async () => (await walletAdmin.getTrialBalance({}, { headers: callerHeaders("admin-1", "admin") })).balanced,
    copiedFeeScheduleVersion: async (currency) => {
      const gauge = t.ctx.metrics.registry.getSingleMetric("ttip_payment_fee_schedule_version");
      return (await gauge?.get())?.values.find((v) => v.labels.currency === currency)?.value ?? 0;
    },
    post: (path, body, from = "127.0.0.1") =>
      new Promise((resolve, reject) => {
        const url = new URL(path, t.service.server.url);
        const data = Buffer.from(JSON.stringify(body));
        const req = http.request(
          { host: url.hostname, port: url.port, path: url.pathname, method: "POST", localAddress: from, headers: { "content-type": "application/json", "content-length": data.length } },
          (res) => {
            let text = "";
            res.on("data", (c) => (text += c));
            res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
          },
        );
        req.on("error", reject);
        req.end(data);
      }),
    close: async () => {
      await sim.close();
      await t.close();
    },
  };
}

/**
 * The runtime's eventually, with these tests' argument order and its 15 s: a tip decided, credited and settled crosses
 * PostgreSQL, the wallet and the simulator while two other test files run (5 s, as before, was tight on a busy machine).
 */
export const eventually = <T>(check: () => Promise<T | undefined | false>, what: string, timeoutMs = 15_000): Promise<T> =>
  waitUntil(what, check, timeoutMs);

export { KES } from "@ttip/runtime/testing";

/**
 * A fresh Safaricom-style number (07…), plain or ending in `suffix` (a marker scripts the simulator); never the same
 * twice in one test file (tests count the simulator's pushes by number): the runtime's testPhone.
 */
export const phone = (suffix?: string): string => testPhone({ format: "07", suffix });

/**
 * `daraja` with its calls to paths containing `path` refused as Daraja refuses a request (HTTP 400, its error JSON),
 * never sent on to the simulator (whose answer would settle what the test wants left open); other calls go through.
 */
export function darajaRefusing(daraja: DarajaConfig, path: string, errorCode: string, errorMessage: string): DarajaConfig {
  const refusal = JSON.stringify({ requestId: "1234-5678", errorCode, errorMessage });
  const headers = { get: (name: string) => (name.toLowerCase() === "content-type" ? "application/json" : null) };
  return { ...daraja, request: async (url, call) => {
    if (!url.pathname.includes(path)) return httpRequest(url, call);
    return { status: 400, ok: false, statusText: "Bad Request", headers, text: async () => refusal };
  } };
}

/**
 * A worker known to auth (its module in the harness) with one device, and a fresh step-up token as
 * AuthService.VerifyDeviceChallenge issues after the device signed its challenge (that exchange is auth's own
 * test; here the proof is seeded).
 */
export async function workerWithStepUp(h: Harness): Promise<{ worker: string; signInPhone: string; stepUp: (purpose?: "payout" | "payout_number") => Promise<string> }> {
  const worker = randomUUID();
  const device = randomUUID();
  const db = h.t.db.pool;
  const signInPhone = phone();
  await db.query("INSERT INTO auth.users (user_id, phone, roles) VALUES ($1, $2, ARRAY['worker'])", [worker, normalisePhone(signInPhone)]);
  await db.query("INSERT INTO auth.devices (device_id, user_id, name, public_key_jwk) VALUES ($1, $2, 'test phone', '{}')", [device, worker]);
  return {
    worker,
    signInPhone,
    stepUp: async (purpose = "payout") => {
      const token = `su_${randomBytes(24).toString("base64url")}`;
      await db.query(
        // Its 5 minutes on the services' clock, which auth reads it by (a test may have moved it a day on).
        "INSERT INTO auth.step_up_tokens (token_hash, user_id, device_id, purpose, expires_at) VALUES ($1, $2, $3, $4, $5)",
        [createHash("sha256").update(token).digest(), worker, device, purpose, new Date(h.clock.now() + 5 * 60_000)],
      );
      return token;
    },
  };
}
