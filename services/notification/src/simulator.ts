// Simulators of the four providers on one loopback HTTP server, each speaking
// its provider's real paths and request/response shapes: Africa's Talking SMS,
// Twilio Messages, SendGrid Mail Send and FCM HTTP v1 (with Google's OAuth
// token endpoint). Scriptable: an outage answers 5xx, listed numbers or tokens
// are rejected, and everything accepted is recorded for tests to read.
import { createVerify, generateKeyPairSync, randomBytes, randomUUID, sign } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import type { ProviderConfig, SmsProviderName } from "./config.js";
import { twilioSignature } from "./signatures.js";

export type SimulatedProvider = SmsProviderName | "sendgrid" | "fcm";

export interface SentMessage {
  provider: SimulatedProvider;
  id: string;
  to: string;
  subject: string;
  body: string;
  /** Twilio's per-message StatusCallback; SendGrid's custom_args. */
  callbackUrl: string;
  customArgs: Record<string, string>;
}

export type DeliveryOutcome = "delivered" | "failed";

/** A request's body as text (by its events: cheaper than an async iterator); rejects when it is cut off. */
function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let ended = false;
    req.on("data", (c: Buffer) => chunks.push(c));
    req.once("end", () => {
      ended = true;
      resolve(chunks.length === 1 ? chunks[0].toString("utf8") : Buffer.concat(chunks).toString("utf8"));
    });
    req.once("error", reject);
    req.once("close", () => ended || reject(new Error("request cut off before its end")));
  });
}

/** Answers with a Content-Length, as the providers do: one write, not a chunked body. */
function reply(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  res.writeHead(status, { "content-type": typeof body === "string" ? "text/plain" : "application/json", "content-length": String(Buffer.byteLength(text)), ...headers });
  res.end(text);
}

export class ProviderSimulator {
  /** Every message a provider accepted, in order. */
  readonly sent: SentMessage[] = [];
  /** Requests per provider, accepted or not (an outage still counts them). */
  readonly calls: Record<SimulatedProvider, number> = { africastalking: 0, twilio: 0, sendgrid: 0, fcm: 0 };
  /** Providers that answer 5xx to every send. */
  readonly outage = new Set<SimulatedProvider>();
  /** Providers that take a send and never answer (a timeout after the message may have gone). */
  readonly stalled = new Set<SimulatedProvider>();
  /** Providers that take a send and answer 200 with a body that is not theirs (a proxy's page in between); FCM only. */
  readonly garbled = new Set<SimulatedProvider>();
  /** Numbers (E.164) whose sends Africa's Talking takes at once but answers only after this many ms. */
  readonly slowAnswers = new Map<string, number>();
  /** Numbers (E.164) whose sends Africa's Talking answers with this message id instead of its own (a malformed one, say). */
  readonly messageIds = new Map<string, string>();
  /** Numbers the SMS providers reject as invalid (AT 403, Twilio 21211). */
  readonly invalidNumbers = new Set<string>();
  /** Numbers Africa's Talking rejects (403) in these words instead of InvalidPhoneNumber: a provider's words may hold anything. */
  readonly refusalWords = new Map<string, string>();
  /** Providers whose edge answers 504 for a send the provider took (it timed out waiting for the answer). */
  readonly gatewayTimeouts = new Set<SimulatedProvider>();
  /** Providers whose answer to a send they took is cut short (unreadable, as from a proxy that mangles it). */
  readonly garbledAnswers = new Set<SimulatedProvider>();
  /** Push tokens FCM answers UNREGISTERED for. */
  readonly deadPushTokens = new Set<string>();
  /** The account-level callback URLs the real consoles configure. */
  atDeliveryReportUrl = "";
  sendgridEventWebhookUrl = "";

  readonly at = { username: "sandbox", apiKey: `at_${randomBytes(12).toString("hex")}` };
  readonly twilio = { accountSid: `AC${randomBytes(16).toString("hex")}`, authToken: randomBytes(16).toString("hex"), from: "+15005550006" };
  readonly sendgrid: { apiKey: string; publicKey: string; privateKey: string };
  readonly fcm: { projectId: string; clientEmail: string; privateKey: string; publicKey: string };
  private readonly accessTokens = new Set<string>();
  private server: http.Server | undefined;
  private base = "";

  constructor() {
    const ec = generateKeyPairSync("ec", { namedCurve: "prime256v1" });
    this.sendgrid = {
      apiKey: `SG.${randomBytes(16).toString("base64url")}`,
      publicKey: ec.publicKey.export({ format: "der", type: "spki" }).toString("base64"),
      privateKey: ec.privateKey.export({ format: "pem", type: "pkcs8" }).toString(),
    };
    const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
    this.fcm = {
      projectId: "ttip-sim",
      clientEmail: "notifier@ttip-sim.iam.gserviceaccount.com",
      privateKey: rsa.privateKey.export({ format: "pem", type: "pkcs8" }).toString(),
      publicKey: rsa.publicKey.export({ format: "pem", type: "spki" }).toString(),
    };
  }

  get url(): string {
    return this.base;
  }

  async start(port = 0): Promise<string> {
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((err) => reply(res, 500, { error: String(err) }));
    });
    await new Promise<void>((resolve) => this.server!.listen(port, "127.0.0.1", resolve));
    this.base = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this.base;
  }

  async close(): Promise<void> {
    if (!this.server) return;
    this.server.closeAllConnections();
    await new Promise((r) => this.server!.close(r));
  }

  /** Client configuration pointing every provider at this simulator. */
  config(smsPrimary: SmsProviderName = "africastalking", atCallbackToken = "sim-callback-token"): ProviderConfig {
    return {
      smsPrimary,
      africastalking: { baseUrl: this.base, username: this.at.username, apiKey: this.at.apiKey, senderId: "TTIP", callbackToken: atCallbackToken },
      twilio: { baseUrl: this.base, ...this.twilio },
      sendgrid: { baseUrl: this.base, apiKey: this.sendgrid.apiKey, from: "no-reply@ttip.example", fromName: "TTIP", webhookPublicKey: this.sendgrid.publicKey },
      fcm: { baseUrl: this.base, projectId: this.fcm.projectId, clientEmail: this.fcm.clientEmail, privateKey: this.fcm.privateKey, tokenUrl: `${this.base}/token` },
    };
  }

  sentBy(provider: SimulatedProvider): SentMessage[] {
    return this.sent.filter((m) => m.provider === provider);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse) {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    const body = await readBody(req);
    if (req.method === "POST" && path === "/version1/messaging") return this.africasTalking(req, res, body);
    const tw = /^\/2010-04-01\/Accounts\/([^/]+)\/Messages\.json$/.exec(path);
    if (req.method === "POST" && tw) return this.twilioSend(req, res, body, decodeURIComponent(tw[1]));
    if (req.method === "POST" && path === "/v3/mail/send") return this.sendgridSend(req, res, body);
    if (req.method === "POST" && path === "/token") return this.googleToken(res, body);
    const fcm = /^\/v1\/projects\/([^/]+)\/messages:send$/.exec(path);
    if (req.method === "POST" && fcm) return this.fcmSend(req, res, body, decodeURIComponent(fcm[1]));
    reply(res, 404, { error: `no such path ${path}` });
  }

  private africasTalking(req: http.IncomingMessage, res: http.ServerResponse, raw: string) {
    this.calls.africastalking++;
    if (this.stalled.has("africastalking")) return;
    const form = new URLSearchParams(raw);
    if (req.headers.apikey !== this.at.apiKey || form.get("username") !== this.at.username) {
      return reply(res, 401, "The supplied authentication is invalid");
    }
    if (this.outage.has("africastalking")) return reply(res, 500, "Internal Server Error");
    const to = form.get("to") ?? "";
    const message = form.get("message") ?? "";
    if (!to || !message) return reply(res, 400, "Request is missing required form field 'to'");
    if (this.invalidNumbers.has(to) || this.refusalWords.has(to)) {
      const status = this.refusalWords.get(to) ?? "InvalidPhoneNumber";
      return reply(res, 201, {
        SMSMessageData: { Message: "Sent to 0/1 Total Cost: 0", Recipients: [{ statusCode: 403, number: to, status, cost: "0", messageId: "None" }] },
      });
    }
    const messageId = this.messageIds.get(to) ?? `ATXid_${randomBytes(12).toString("hex")}`;
    this.sent.push({ provider: "africastalking", id: messageId, to, subject: "", body: message, callbackUrl: this.atDeliveryReportUrl, customArgs: {} });
    const answer = () =>
      reply(res, 201, {
        SMSMessageData: {
          Message: "Sent to 1/1 Total Cost: KES 0.8000",
          Recipients: [{ statusCode: 101, number: to, status: "Success", cost: "KES 0.8000", messageId }],
        },
      });
    if (this.garbledAnswers.has("africastalking")) return reply(res, 201, `{"SMSMessageData": {"Message": "Sent to 1/1`);
    if (this.gatewayTimeouts.has("africastalking")) return reply(res, 504, "Gateway Time-out");
    const slowMs = this.slowAnswers.get(to);
    if (slowMs) setTimeout(answer, slowMs);
    else answer();
  }

  private twilioSend(req: http.IncomingMessage, res: http.ServerResponse, raw: string, accountSid: string) {
    this.calls.twilio++;
    if (this.stalled.has("twilio")) return;
    const expected = `Basic ${Buffer.from(`${this.twilio.accountSid}:${this.twilio.authToken}`).toString("base64")}`;
    if (accountSid !== this.twilio.accountSid || req.headers.authorization !== expected) {
      return reply(res, 401, { code: 20003, message: "Authenticate", more_info: "https://www.twilio.com/docs/errors/20003", status: 401 });
    }
    if (this.outage.has("twilio")) return reply(res, 503, { code: 20503, message: "Service unavailable", status: 503 });
    const form = new URLSearchParams(raw);
    const to = form.get("To") ?? "";
    if (this.invalidNumbers.has(to)) {
      return reply(res, 400, { code: 21211, message: `The 'To' number ${to} is not a valid phone number.`, status: 400 });
    }
    const sid = `SM${randomBytes(16).toString("hex")}`;
    this.sent.push({ provider: "twilio", id: sid, to, subject: "", body: form.get("Body") ?? "", callbackUrl: form.get("StatusCallback") ?? "", customArgs: {} });
    if (this.garbledAnswers.has("twilio")) return reply(res, 201, `{"sid": "${sid}", "acc`);
    reply(res, 201, {
      sid,
      account_sid: accountSid,
      to,
      from: form.get("From"),
      body: form.get("Body"),
      status: "queued",
      num_segments: "1",
      direction: "outbound-api",
      api_version: "2010-04-01",
      date_created: new Date().toUTCString(),
      uri: `/2010-04-01/Accounts/${accountSid}/Messages/${sid}.json`,
    });
  }

  private sendgridSend(req: http.IncomingMessage, res: http.ServerResponse, raw: string) {
    this.calls.sendgrid++;
    if (this.stalled.has("sendgrid")) return;
    if (req.headers.authorization !== `Bearer ${this.sendgrid.apiKey}`) {
      return reply(res, 401, { errors: [{ message: "The provided authorization grant is invalid, expired, or revoked", field: null, help: null }] });
    }
    if (this.outage.has("sendgrid")) return reply(res, 503, { errors: [{ message: "Service Unavailable" }] });
    const mail = JSON.parse(raw) as {
      personalizations: { to: { email: string }[]; custom_args?: Record<string, string> }[];
      subject: string;
      content: { type: string; value: string }[];
    };
    const p = mail.personalizations?.[0];
    if (!p?.to?.[0]?.email || !mail.content?.[0]?.value) {
      return reply(res, 400, { errors: [{ message: "The personalizations field is required", field: "personalizations" }] });
    }
    const id = randomBytes(11).toString("base64url");
    this.sent.push({ provider: "sendgrid", id, to: p.to[0].email, subject: mail.subject, body: mail.content[0].value, callbackUrl: this.sendgridEventWebhookUrl, customArgs: p.custom_args ?? {} });
    res.writeHead(202, { "x-message-id": id });
    res.end();
  }

  private googleToken(res: http.ServerResponse, raw: string) {
    const form = new URLSearchParams(raw);
    const assertion = form.get("assertion") ?? "";
    const [h, p, s] = assertion.split(".");
    const valid =
      form.get("grant_type") === "urn:ietf:params:oauth:grant-type:jwt-bearer" &&
      !!s &&
      createVerify("RSA-SHA256").update(`${h}.${p}`).verify(this.fcm.publicKey, Buffer.from(s, "base64url"));
    const claims = valid ? (JSON.parse(Buffer.from(p, "base64url").toString()) as { iss: string; exp: number }) : undefined;
    if (!claims || claims.iss !== this.fcm.clientEmail || claims.exp * 1000 < Date.now()) {
      return reply(res, 400, { error: "invalid_grant", error_description: "Invalid JWT Signature." });
    }
    const token = `ya29.${randomBytes(24).toString("base64url")}`;
    this.accessTokens.add(token);
    reply(res, 200, { access_token: token, expires_in: 3599, token_type: "Bearer" });
  }

  private fcmSend(req: http.IncomingMessage, res: http.ServerResponse, raw: string, project: string) {
    this.calls.fcm++;
    if (this.stalled.has("fcm")) return;
    const bearer = (req.headers.authorization ?? "").replace(/^Bearer /, "");
    if (!this.accessTokens.has(bearer)) {
      return reply(res, 401, { error: { code: 401, message: "Request had invalid authentication credentials.", status: "UNAUTHENTICATED" } });
    }
    if (this.outage.has("fcm")) return reply(res, 503, { error: { code: 503, message: "The service is currently unavailable.", status: "UNAVAILABLE" } });
    const { message } = JSON.parse(raw) as { message: { token: string; notification?: { title?: string; body?: string } } };
    if (this.deadPushTokens.has(message.token)) {
      return reply(res, 404, {
        error: {
          code: 404,
          message: "Requested entity was not found.",
          status: "NOT_FOUND",
          details: [{ "@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", errorCode: "UNREGISTERED" }],
        },
      });
    }
    const name = `projects/${project}/messages/0:${Date.now()}%${randomBytes(8).toString("hex")}`;
    this.sent.push({ provider: "fcm", id: name, to: message.token, subject: message.notification?.title ?? "", body: message.notification?.body ?? "", callbackUrl: "", customArgs: {} });
    if (this.garbled.has("fcm")) return reply(res, 200, "<html><body>Welcome</body></html>");
    reply(res, 200, { name });
  }

  /**
   * Posts the delivery report the real provider would for a sent message:
   * AT's form to the account's callback URL, Twilio's signed status callback,
   * SendGrid's signed event batch. Returns the webhook's HTTP status.
   */
  /**
   * `signedAt`: when SendGrid's report says it was signed (a captured one sent again is older); `batchedBefore`: other
   * entries of SendGrid's batch, ahead of this report.
   */
  async reportDelivery(messageId: string, outcome: DeliveryOutcome, signedAt = new Date(), batchedBefore: unknown[] = []): Promise<number> {
    const m = this.sent.find((s) => s.id === messageId);
    if (!m) throw new Error(`simulator sent no message ${messageId}`);
    if (!m.callbackUrl) throw new Error(`message ${messageId} has no callback URL configured`);
    if (m.provider === "africastalking") return this.africasTalkingReport(m, outcome);
    if (m.provider === "twilio") return this.twilioReport(m, outcome);
    if (m.provider === "sendgrid") return this.sendgridReport(m, outcome, signedAt, batchedBefore);
    throw new Error(`${m.provider} sends no delivery reports`);
  }

  private africasTalkingReport(m: SentMessage, outcome: DeliveryOutcome): Promise<number> {
    const form = {
      id: m.id,
      status: outcome === "delivered" ? "Success" : "Failed",
      phoneNumber: m.to,
      networkCode: "63902",
      retryCount: "0",
      ...(outcome === "failed" ? { failureReason: "DeliveryFailure" } : {}),
    };
    return this.post(m.callbackUrl, new URLSearchParams(form).toString(), { "content-type": "application/x-www-form-urlencoded" });
  }

  private twilioReport(m: SentMessage, outcome: DeliveryOutcome): Promise<number> {
    const params: Record<string, string> = {
      MessageSid: m.id,
      SmsSid: m.id,
      MessageStatus: outcome === "delivered" ? "delivered" : "undelivered",
      SmsStatus: outcome === "delivered" ? "delivered" : "undelivered",
      To: m.to,
      From: this.twilio.from,
      AccountSid: this.twilio.accountSid,
      ApiVersion: "2010-04-01",
      ...(outcome === "failed" ? { ErrorCode: "30003" } : {}),
    };
    return this.post(m.callbackUrl, new URLSearchParams(params).toString(), {
      "content-type": "application/x-www-form-urlencoded",
      "x-twilio-signature": twilioSignature(this.twilio.authToken, m.callbackUrl, params),
    });
  }

  private sendgridReport(m: SentMessage, outcome: DeliveryOutcome, signedAt: Date, batchedBefore: unknown[]): Promise<number> {
    const events = [
      ...batchedBefore,
      {
        email: m.to,
        timestamp: Math.floor(Date.now() / 1000),
        event: outcome === "delivered" ? "delivered" : "bounce",
        sg_event_id: randomUUID(),
        sg_message_id: `${m.id}.filterdrecv-1-2025`,
        ...m.customArgs,
      },
    ];
    const raw = JSON.stringify(events);
    const ts = String(Math.floor(signedAt.getTime() / 1000));
    const signature = sign("sha256", Buffer.from(ts + raw), this.sendgrid.privateKey).toString("base64");
    return this.post(m.callbackUrl, raw, {
      "content-type": "application/json",
      "x-twilio-email-event-webhook-signature": signature,
      "x-twilio-email-event-webhook-timestamp": ts,
    });
  }

  /** An SMS a person sent to our short code, as the provider forwards it. */
  async inboundSms(provider: SmsProviderName, webhookUrl: string, from: string, text: string): Promise<number> {
    if (provider === "africastalking") {
      const form = { from, to: "40404", text, date: new Date().toISOString(), id: randomUUID(), linkId: randomUUID() };
      return this.post(webhookUrl, new URLSearchParams(form).toString(), { "content-type": "application/x-www-form-urlencoded" });
    }
    const params = { MessageSid: `SM${randomBytes(16).toString("hex")}`, AccountSid: this.twilio.accountSid, From: from, To: this.twilio.from, Body: text };
    return this.post(webhookUrl, new URLSearchParams(params).toString(), {
      "content-type": "application/x-www-form-urlencoded",
      "x-twilio-signature": twilioSignature(this.twilio.authToken, webhookUrl, params),
    });
  }

  private async post(url: string, body: string, headers: Record<string, string>): Promise<number> {
    const res = await fetch(url, { method: "POST", headers, body });
    await res.arrayBuffer();
    return res.status;
  }
}
