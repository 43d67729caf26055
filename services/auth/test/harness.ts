// Shared set-up for the auth tests: the auth service on real PostgreSQL,
// Redis and JetStream, the SMS simulator it sends OTPs through, and the real
// gateway in front verifying auth's tokens through the JWKS URL.
import { randomInt } from "node:crypto";
import { ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { AuthAdminService, AuthInternalService, AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { Role, type TokenPair } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { startGateway } from "@ttip/gateway";
import { AdjustableClock, Metrics, type RedisCache, type RunningServer } from "@ttip/runtime";
import { captureLogger, deviceStepUp, startTestService, type TestService } from "@ttip/runtime/testing";
import { createAuth, JWKS_PATH } from "../src/index.js";
import { startSmsSimulator, type SmsSimulator } from "../src/testing.js";

export const randomIp = () => `10.${randomInt(0, 255)}.${randomInt(0, 255)}.${randomInt(1, 254)}`;
/**
 * The harness's OTP resend cool-down. Long, so a second request is refused however slow the
 * machine (Redis keeps the claim this long in wall time); tests move the clock past it.
 */
export const OTP_RESEND_MS = 60_000;

export interface Harness {
  t: TestService;
  sim: SmsSimulator;
  gateway: RunningServer;
  jwksUrl: string;
  logLines: string[];
  /** The service's clock: move it past a lockout rather than sleep. */
  clock: AdjustableClock;
  /** AuthService through the gateway, as the holder of `token` (if any) from address `ip`. */
  api(token?: string, ip?: string): ReturnType<typeof createClient<typeof AuthService>>;
  admin(token: string, ip?: string): ReturnType<typeof createClient<typeof AuthAdminService>>;
  /** Call options carrying a device step-up for `token`'s admin (a key registered with `pin`), for RPCs declaring step_up. */
  stepUp(token: string, pin: string): Promise<{ headers: Record<string, string> }>;
  /** AuthInternalService called directly, as another service would. */
  internal: ReturnType<typeof createClient<typeof AuthInternalService>>;
  /** The code in the newest SMS the simulator delivered to `phone`. */
  otpFor(phone: string): string;
  signUp(phone: string, role?: Role): Promise<{ tokens: TokenPair; userId: string }>;
  signUpWithPin(phone: string, pin: string, role?: Role): Promise<{ tokens: TokenPair; userId: string }>;
  /** Asks for a code, moving the clock past the resend cool-down if needed. */
  startVerification(phone: string, ip?: string): Promise<{ challengeId: string; otp: string }>;
  loginWithPin(phone: string, pin: string, deviceId?: string): Promise<TokenPair>;
  makeAdmin(userId: string): Promise<void>;
  close(): Promise<void>;
}

export const subjectOf = (token: string): string => JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString()).sub;

export async function startHarness(env: Record<string, string> = {}): Promise<Harness> {
  const sim = await startSmsSimulator({ apiKey: "test-sms-key" });
  const { logger, lines } = captureLogger("debug");
  const clock = new AdjustableClock();
  const t = await startTestService(
    createAuth({
      env: {
        AUTH_SMS_URL: sim.url,
        AUTH_SMS_API_KEY: "test-sms-key",
        AUTH_OTP_RESEND_SECONDS: String(OTP_RESEND_MS / 1000),
        AUTH_OTP_PER_IP_PER_HOUR: "1000",
        AUTH_LOCKOUT_BASE_SECONDS: "2",
        ...env,
      },
    }),
    { logger, clock },
  );
  const jwksUrl = `${t.service.server.url}${JWKS_PATH}`;
  const gateway = await startGateway({
    logger,
    metrics: new Metrics(),
    cache: t.ctx.cache as RedisCache,
    backends: [
      { service: AuthService, url: t.service.server.url },
      { service: AuthAdminService, url: t.service.server.url },
    ],
    jwt: { jwksUrl, issuer: "ttip-auth", audience: "ttip" },
    stepUp: { authUrl: t.service.server.url },
    rateLimit: { points: 100_000, durationSeconds: 60 },
    corsOrigins: [],
    // The test client is the trusted proxy (loopback): the address it appends to
    // X-Forwarded-For is the client's, so tests can speak from several networks.
    trustedProxies: ["127.0.0.0/8", "::1/128"],
    adminNetworks: ["10.99.0.0/16", "127.0.0.0/8"],
  });

  const transport = (token?: string, ip = "127.0.0.1") => {
    const headers: Interceptor = (next) => (req) => {
      if (token) req.header.set("authorization", `Bearer ${token}`);
      req.header.set("x-forwarded-for", ip);
      req.header.set("user-agent", "ttip-test/1.0");
      return next(req);
    };
    return createConnectTransport({ baseUrl: gateway.url, httpVersion: "1.1", interceptors: [headers] });
  };
  const api = (token?: string, ip?: string) => createClient(AuthService, transport(token, ip));

  const otpFor = (phone: string) => {
    const sms = sim.lastTo(phone);
    if (!sms) throw new Error("no SMS was delivered to this number");
    return /\b(\d{6})\b/.exec(sms.message)![1];
  };

  const startVerification = async (phone: string, ip?: string) => {
    for (let i = 0; ; i++) {
      try {
        const { challengeId } = await api(undefined, ip).startPhoneVerification({ phone });
        return { challengeId, otp: otpFor(phone) };
      } catch (err) {
        // Refused by the resend cool-down: move the service's clock past it.
        const retryAfter = err instanceof ConnectError ? Number(err.metadata.get("retry-after")) : Number.NaN;
        if (i > 5 || !String(err).includes("just sent") || !(retryAfter > 0)) throw err;
        clock.advance(retryAfter * 1_000);
      }
    }
  };

  const signUp = async (phone: string, role = Role.WORKER) => {
    const { challengeId, otp } = await startVerification(phone);
    const res = await api().verifyPhoneOtp({ challengeId, otp, role });
    return { tokens: res.tokens!, userId: subjectOf(res.tokens!.accessToken) };
  };

  return {
    t,
    sim,
    gateway,
    jwksUrl,
    logLines: lines,
    clock,
    api,
    admin: (token, ip) => createClient(AuthAdminService, transport(token, ip)),
    stepUp: (token, pin) => deviceStepUp(api(token), pin),
    internal: t.client(AuthInternalService),
    otpFor,
    startVerification,
    signUp,
    async signUpWithPin(phone, pin, role) {
      const s = await signUp(phone, role);
      await api(s.tokens.accessToken).setPin({ pin });
      return s;
    },
    async loginWithPin(phone, pin, deviceId) {
      const { challengeId, otp } = await startVerification(phone);
      const step = await api().verifyPhoneOtp({ challengeId, otp });
      if (!step.pinRequired) throw new Error("expected the PIN step");
      return (await api().verifyPin({ pinSessionId: step.pinSessionId, pin, deviceId }))!.tokens!;
    },
    async makeAdmin(userId) {
      await t.db.pool.query("UPDATE auth.users SET roles = ARRAY['admin'] WHERE user_id = $1", [userId]);
    },
    async close() {
      // TEST_LOGS=1 shows the service's warnings and errors (already redacted).
      if (process.env.TEST_LOGS) for (const l of lines) if (["warn", "error", "fatal"].includes(JSON.parse(l).level)) console.error(l);
      await gateway.close();
      await t.close();
      await sim.close();
    },
  };
}
