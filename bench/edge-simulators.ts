// The edge of the world for bench/tip-e2e.ts in an OS process of its own
// (bench/edge-simulators-process.ts): the Daraja simulator (M-Pesa), the OTP SMS
// simulator (auth) and the providers' simulator (notification's SMS, e-mail and
// push). In production these are Safaricom and the providers, on machines that
// are not ours: here their CPU is read apart from the platform's, and they do
// not take turns on the platform's event loop. The platform reaches them
// through their real HTTP shapes, as before; the bench asks this process for
// what they saw (an OTP, when each STK callback left) by IPC.
import { fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { ProviderConfig } from "@ttip/notification";
import type { DarajaSimulator } from "@ttip/payment/testing";

/** The OTP SMS simulator's key: auth is given it, the simulator checks it. */
export const EDGE_SMS_API_KEY = "bench-sms-key";

/** What the simulators' process says once they all listen. */
export interface EdgeReady {
  ready: true;
  daraja: Pick<DarajaSimulator, "url" | "options" | "certificateFile"> & { client: ReturnType<DarajaSimulator["clientConfig"]> };
  smsUrl: string;
  /** Every provider of notification pointed at the providers' simulator. */
  providers: ProviderConfig;
}

/** A question to the simulators' process. */
export type EdgeQuestion =
  | { kind: "lastSms"; phone: string }
  | { kind: "stkCallbacksSent" }
  | { kind: "providerSends" }
  | { kind: "profileStart" }
  | { kind: "profileStop"; file: string }
  | { kind: "close" };
/** A question as sent: its answer carries the same id. */
export type EdgeRequest = EdgeQuestion & { id: number };

export interface EdgeAnswer {
  id: number;
  /** lastSms: the newest message's text to that phone, if any. */
  message?: string;
  /** stkCallbacksSent: [CheckoutRequestID, when its callback was last sent (epoch ms)] per STK push. */
  sent?: [string, number][];
  /** providerSends: the messages notification's providers have taken so far (SMS, e-mail, push). */
  sends?: number;
  error?: string;
}

export interface EdgeSimulators {
  /** The simulators' OS process: the bench reads its CPU apart. */
  pid: number;
  daraja: EdgeReady["daraja"] & { clientConfig(): EdgeReady["daraja"]["client"] };
  smsUrl: string;
  providers: ProviderConfig;
  /** The newest OTP SMS's text to a phone (with or without the plus). */
  lastSmsTo(phone: string): Promise<string | undefined>;
  /** When each STK push's callback was last sent, by CheckoutRequestID (epoch ms). */
  stkCallbacksSentAt(): Promise<Map<string, number>>;
  /** The messages notification's providers have taken so far: that the platform reached them. */
  providerSends(): Promise<number>;
  /** A CPU profile of the simulators' process from now until profileStop, written to `file`. */
  profileStart(): Promise<void>;
  profileStop(file: string): Promise<void>;
  close(): Promise<void>;
}

// A start that takes longer is stuck (tsx compiling the three simulators takes a few seconds; at a
// load of 45-50 on two cores, over a minute).
const START_TIMEOUT_MS = 180_000;

/** Starts the simulators' process and waits until they all listen. */
export async function startEdgeSimulators(): Promise<EdgeSimulators> {
  const child = fork(fileURLToPath(new URL("./edge-simulators-process.ts", import.meta.url)), [], {
    execArgv: ["--import", "tsx"],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
    serialization: "advanced", // a callback never sent is NaN, which JSON would make null
  });
  const ready = await new Promise<EdgeReady>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the simulators' process did not start")), START_TIMEOUT_MS);
    child.once("message", (m: EdgeReady) => (clearTimeout(timer), resolve(m)));
    child.once("exit", (code) => (clearTimeout(timer), reject(new Error(`the simulators' process exited with ${code} while starting`))));
  });
  const waiting = new Map<number, (a: EdgeAnswer) => void>();
  child.on("message", (a: EdgeAnswer) => waiting.get(a.id)?.(a));
  // Gone (crashed, killed): no question waits for an answer that cannot come.
  child.once("exit", (code, signal) => {
    for (const [id, answer] of waiting) answer({ id, error: `the simulators' process exited (${signal ?? code})` });
  });
  let nextId = 0;
  const ask = (req: EdgeQuestion) =>
    new Promise<EdgeAnswer>((resolve, reject) => {
      const id = ++nextId;
      waiting.set(id, (a) => (waiting.delete(id), a.error ? reject(new Error(a.error)) : resolve(a)));
      child.send({ ...req, id } satisfies EdgeRequest);
    });
  return {
    pid: child.pid!,
    daraja: { ...ready.daraja, clientConfig: () => ready.daraja.client },
    smsUrl: ready.smsUrl,
    providers: ready.providers,
    lastSmsTo: async (phone) => (await ask({ kind: "lastSms", phone })).message,
    stkCallbacksSentAt: async () => new Map((await ask({ kind: "stkCallbacksSent" })).sent),
    providerSends: async () => (await ask({ kind: "providerSends" })).sends ?? 0,
    profileStart: async () => void (await ask({ kind: "profileStart" })),
    profileStop: async (file) => void (await ask({ kind: "profileStop", file })),
    close: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once("exit", r));
      await ask({ kind: "close" }).catch(() => undefined); // exited meanwhile: closed all the same
      await exited;
    },
  };
}

/** Notification's variables for the providers' simulator as its real providers (cluster mode: NOTIFICATION_PROVIDERS=real). */
export function providerEnv(p: ProviderConfig): Record<string, string> {
  return {
    NOTIFICATION_PROVIDERS: "real",
    NOTIFICATION_SMS_PRIMARY: p.smsPrimary,
    NOTIFICATION_AT_BASE_URL: p.africastalking.baseUrl,
    NOTIFICATION_AT_USERNAME: p.africastalking.username,
    NOTIFICATION_AT_API_KEY: p.africastalking.apiKey,
    NOTIFICATION_AT_SENDER_ID: p.africastalking.senderId,
    NOTIFICATION_AT_CALLBACK_TOKEN: p.africastalking.callbackToken,
    NOTIFICATION_TWILIO_BASE_URL: p.twilio.baseUrl,
    NOTIFICATION_TWILIO_ACCOUNT_SID: p.twilio.accountSid,
    NOTIFICATION_TWILIO_AUTH_TOKEN: p.twilio.authToken,
    NOTIFICATION_TWILIO_FROM: p.twilio.from,
    NOTIFICATION_SENDGRID_BASE_URL: p.sendgrid.baseUrl,
    NOTIFICATION_SENDGRID_API_KEY: p.sendgrid.apiKey,
    NOTIFICATION_SENDGRID_FROM: p.sendgrid.from,
    NOTIFICATION_SENDGRID_WEBHOOK_PUBLIC_KEY: p.sendgrid.webhookPublicKey,
    NOTIFICATION_FCM_BASE_URL: p.fcm.baseUrl,
    NOTIFICATION_FCM_PROJECT_ID: p.fcm.projectId,
    NOTIFICATION_FCM_CLIENT_EMAIL: p.fcm.clientEmail,
    NOTIFICATION_FCM_PRIVATE_KEY: p.fcm.privateKey,
    NOTIFICATION_FCM_TOKEN_URL: p.fcm.tokenUrl,
  };
}
