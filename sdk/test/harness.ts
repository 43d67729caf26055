// What the Go and Python SDKs' tests run against: the real gateway and auth (on the
// test PostgreSQL and Redis), a partner key issued through auth's admin API, and a
// qr service that records which caller each call reached it as. Their test
// programs run as child processes; node's test runner asserts on their results.
import { execFile } from "node:child_process";
import { createHmac, randomUUID } from "node:crypto";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { AuthAdminService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { OwnerKind, QrCodeStatus } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { createAuth } from "@ttip/auth";
import { startGateway } from "@ttip/gateway";
import { Metrics, PRINCIPAL_HEADERS, type RedisCache, type RunningServer, type ServiceModule } from "@ttip/runtime";
import { captureLogger, startTestService, type TestService } from "@ttip/runtime/testing";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** The short code every answer of the recording qr service carries. */
export const SHORT_CODE = "K7M4QX";

export interface SdkPlatform {
  gatewayUrl: string;
  key: { keyId: string; secret: string };
  /** "<qr code id> <subject> <roles>" for each GetQrCode that reached the qr service. */
  seen: string[];
  /** Environment for the SDK's test program: the gateway, the key and a signed webhook delivery. */
  env: Record<string, string>;
  close(): Promise<void>;
}

export async function startSdkPlatform(): Promise<SdkPlatform> {
  const { logger } = captureLogger("silent");
  const seen: string[] = [];
  const recordingQr: ServiceModule = {
    name: "qr",
    services: [QrService],
    routes: (router) =>
      void router.service(QrService, {
        getQrCode(req, ctx) {
          seen.push(`${req.qrCodeId} ${ctx.requestHeader.get(PRINCIPAL_HEADERS.subject)} ${ctx.requestHeader.get(PRINCIPAL_HEADERS.roles)}`);
          return {
            qrCode: { qrCodeId: req.qrCodeId, shortCode: SHORT_CODE, ownerKind: OwnerKind.WORKER, status: QrCodeStatus.ACTIVE, createdAt: timestampNow() },
          };
        },
      }),
  };
  const t: TestService = await startTestService(createAuth(), { with: [recordingQr] });
  let gateway: RunningServer | undefined;
  try {
    gateway = await startGateway({
      logger,
      metrics: new Metrics(),
      cache: t.ctx.cache as RedisCache,
      backends: [{ service: QrService, url: t.urls.get("qr")! }],
      rateLimit: { points: 100_000, durationSeconds: 60 },
      corsOrigins: [],
      partners: { authUrl: t.service.server.url },
    });
    const issued = await t.client(AuthAdminService, { subject: randomUUID(), roles: ["admin"] })
      .issuePartnerApiKey({ partnerName: "Savanna POS", scopes: ["qr:read"], idempotencyKey: `sdk-${randomUUID()}` });
    const key = { keyId: issued.key!.keyId, secret: issued.secret };
    // A delivery signed in the scheme @ttip/sdk's verifier defines (webhook.ts), with
    // node's own HMAC: "t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">".
    const webhookSecret = `whsec_${randomUUID()}`;
    const webhookBody = JSON.stringify({ type: "tip.succeeded", tipId: randomUUID(), amount: { currencyCode: "KES", units: "500" } });
    const running = gateway;
    return {
      gatewayUrl: running.url,
      key,
      seen,
      env: {
        TTIP_GATEWAY_URL: running.url,
        TTIP_KEY_ID: key.keyId,
        TTIP_SECRET: key.secret,
        TTIP_REQUIRE_GATEWAY: "1",
        TTIP_WEBHOOK_SECRET: webhookSecret,
        TTIP_WEBHOOK_BODY: webhookBody,
        TTIP_WEBHOOK_SIGNATURE: webhookSignature(webhookSecret, webhookBody, Math.floor(Date.now() / 1000)),
      },
      close: async () => {
        await running.close();
        await t.close();
      },
    };
  } catch (err) {
    await gateway?.close();
    await t.close();
    throw err;
  }
}

function webhookSignature(secret: string, body: string, unixSeconds: number): string {
  return `t=${unixSeconds},v1=${createHmac("sha256", secret).update(`${unixSeconds}.${body}`).digest("hex")}`;
}

/** The folder sdk/tools.sh installed the SDK toolchains into (go-bin/, venv/). */
export async function sdkTools(): Promise<string> {
  const { stdout } = await promisify(execFile)("bash", [path.join(repoRoot, "sdk/tools.sh")], { cwd: repoRoot, maxBuffer: 1 << 20 });
  return stdout.trim().split("\n").pop()!;
}

export interface ProgramRun {
  code: number;
  output: string;
}

/** Runs a test program to its end (a non-zero exit is a result, not a throw). */
export async function runProgram(file: string, args: string[], options: { cwd: string; env: Record<string, string>; timeoutMs: number }): Promise<ProgramRun> {
  try {
    const { stdout, stderr } = await promisify(execFile)(file, args, {
      cwd: options.cwd,
      env: { ...process.env, ...options.env },
      timeout: options.timeoutMs,
      maxBuffer: 16 << 20,
    });
    return { code: 0, output: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string; message: string };
    return { code: typeof e.code === "number" ? e.code : 1, output: `${e.stdout ?? ""}${e.stderr ?? ""}\n${e.message}` };
  }
}
