// What the Go and Python SDKs' tests run against: the real gateway and auth (on the
// test PostgreSQL, Redis and JetStream) with auth's partner webhooks, a partner key
// issued through auth's admin API, a qr service that records which caller each
// call reached it as, and a control address that publishes a tip.succeeded event
// for the key, as payment's outbox relay would. Their test programs run as child
// processes; node's test runner asserts on their results.
import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { AuthAdminService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { PartnerService } from "@ttip/proto/ttip/auth/v1/partner_service_pb.js";
import { TipSucceededSchema } from "@ttip/proto/ttip/events/v1/events_pb.js";
import { OwnerKind, QrCodeStatus } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { createAuth } from "@ttip/auth";
import { startGateway } from "@ttip/gateway";
import { buildEvent, Metrics, PRINCIPAL_HEADERS, type RedisCache, type RunningServer, type ServiceModule } from "@ttip/runtime";
import { captureLogger, startTestService, type TestService } from "@ttip/runtime/testing";

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

/** The short code every answer of the recording qr service carries. */
export const SHORT_CODE = "K7M4QX";

export interface SdkPlatform {
  gatewayUrl: string;
  key: { keyId: string; secret: string };
  /** "<qr code id> <subject> <roles>" for each GetQrCode that reached the qr service. */
  seen: string[];
  /** Ids of the tip.succeeded events published through the control address. */
  published: string[];
  /** Environment for the SDK's test program: the gateway, the key and the control address. */
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
  // Deliveries polled often and retried soon, so a test sees one within a second or two.
  const auth = createAuth({ env: { AUTH_WEBHOOK_POLL_MS: "50", AUTH_WEBHOOK_RETRY_BASE_MS: "150", AUTH_WEBHOOK_TIMEOUT_MS: "2000", AUTH_WEBHOOK_ALLOW_LOOPBACK: "true" } });
  const t: TestService = await startTestService(auth, { with: [recordingQr] });
  let gateway: RunningServer | undefined;
  let control: Server | undefined;
  try {
    gateway = await startGateway({
      logger,
      metrics: new Metrics(),
      cache: t.ctx.cache as RedisCache,
      backends: [
        { service: QrService, url: t.urls.get("qr")! },
        { service: PartnerService, url: t.service.server.url },
      ],
      rateLimit: { points: 100_000, durationSeconds: 60 },
      corsOrigins: [],
      partners: { authUrl: t.service.server.url },
    });
    const issued = await t.client(AuthAdminService, { subject: randomUUID(), roles: ["admin"], stepUp: true })
      .issuePartnerApiKey({ partnerName: "Savanna POS", scopes: ["qr:read", "webhooks:read", "webhooks:write"], idempotencyKey: `sdk-${randomUUID()}` });
    const key = { keyId: issued.key!.keyId, secret: issued.secret };
    // A customer tips at the partner's checkout: POST here publishes tip.succeeded for
    // the key, as payment's outbox relay would, and answers with the event id.
    const published: string[] = [];
    control = await listen(async (req, res) => {
      if (req.method !== "POST" || req.url !== "/tip-succeeded") return void res.writeHead(404).end();
      const event = buildEvent("payment", TipSucceededSchema, {
        tipId: randomUUID(),
        workerId: randomUUID(),
        amount: { currency: "KES", amountMinor: 50_000n },
        createdBy: key.keyId,
      });
      await t.ctx.bus.publish(event);
      published.push(event.id);
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ eventId: event.id }));
    });
    const controlUrl = `http://127.0.0.1:${(control.address() as AddressInfo).port}`;
    const running = gateway;
    const controlServer = control;
    return {
      gatewayUrl: running.url,
      key,
      seen,
      published,
      env: {
        TTIP_GATEWAY_URL: running.url,
        TTIP_KEY_ID: key.keyId,
        TTIP_SECRET: key.secret,
        TTIP_REQUIRE_GATEWAY: "1",
        TTIP_TEST_TIP_EVENT_URL: `${controlUrl}/tip-succeeded`,
      },
      close: async () => {
        await new Promise((r) => controlServer.close(r));
        await running.close();
        await t.close();
      },
    };
  } catch (err) {
    control?.close();
    await gateway?.close();
    await t.close();
    throw err;
  }
}

async function listen(handler: Parameters<typeof createServer>[1]): Promise<Server> {
  const server = createServer((req, res) => {
    Promise.resolve(handler!(req, res)).catch((err: Error) => res.writeHead(500).end(err.message));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return server;
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
