// Provider clients over their real HTTP APIs. Only base URLs and credentials
// differ between the real services and the in-repo simulators.
import { createSign } from "node:crypto";
import { HTTP_NOT_SENT, httpRequest, type HttpReply } from "@ttip/runtime";
import type { ProviderConfig } from "./config.js";

/**
 * What a send came to. `transient`: try the same provider again later;
 * `provider`: this provider cannot send it (credentials, balance, routing),
 * so move to the fallback; `recipient`: nobody can (bad number, STOP list,
 * dead push token), so the delivery fails; `in_doubt`: the request went out
 * and no answer came back (timeout, connection cut), so the provider may
 * have sent it and sending again could duplicate it.
 */
export type SendOutcome =
  | { ok: true; messageId: string }
  | { ok: false; kind: "transient" | "provider" | "recipient" | "in_doubt"; error: string };

export interface OutgoingMessage {
  deliveryId: string;
  /** Phone (E.164), e-mail address or push token. */
  to: string;
  subject: string;
  body: string;
  /** Where the provider should post status reports for this message; empty for none. */
  statusCallbackUrl: string;
  data?: Record<string, string>;
}

export interface Provider {
  name: string;
  send(message: OutgoingMessage): Promise<SendOutcome>;
}

/**
 * `carriesMessage`: the request sends the message. A 504 then is an edge that stopped waiting for a provider that
 * may have taken it: in doubt, as a request that got no answer is, not sent again.
 */
function httpFailure(status: number, detail: string, carriesMessage = true): SendOutcome {
  const kind = status === 504 && carriesMessage ? "in_doubt" : status === 429 || status >= 500 ? "transient" : "provider";
  return { ok: false, kind, error: `HTTP ${status}: ${detail.slice(0, 300)}` };
}

/**
 * One request to a provider; a failure becomes an outcome. A kept connection
 * the provider had closed meanwhile is sent again on a new one: at worst a
 * message sent twice, which is no money.
 */
async function request(url: string, init: { method: string; headers: Record<string, string>; body: string | URLSearchParams }, timeoutMs: number, carriesMessage = true): Promise<HttpReply | SendOutcome> {
  try {
    return await httpRequest(url, { ...init, timeoutMs, repeatOnStaleConnection: true });
  } catch (err) {
    const e = err as Error & { code?: string };
    const code = e.code ?? e.name;
    const kind = !carriesMessage || HTTP_NOT_SENT.has(code) ? "transient" : "in_doubt";
    return { ok: false, kind, error: `network: ${code} ${e.message}` };
  }
}

const isOutcome = (r: HttpReply | SendOutcome): r is SendOutcome => !("status" in r);

/** E.164 with the plus sign, as both SMS providers want it. */
export function e164(phone: string): string {
  return phone.startsWith("+") ? phone : `+${phone}`;
}

// Africa's Talking per-recipient status codes (SMS API docs).
const AT_RECIPIENT_ERRORS = new Set([403, 404, 406]);
const AT_TRANSIENT = new Set([500, 501, 502]);

/** Africa's Talking bulk SMS: POST /version1/messaging, form-encoded, apiKey header. */
export function africasTalking(cfg: ProviderConfig["africastalking"], timeoutMs: number): Provider {
  return {
    name: "africastalking",
    async send(m) {
      const form = new URLSearchParams({ username: cfg.username, to: e164(m.to), message: m.body });
      if (cfg.senderId) form.set("from", cfg.senderId);
      const res = await request(
        `${cfg.baseUrl}/version1/messaging`,
        {
          method: "POST",
          headers: { apiKey: cfg.apiKey, accept: "application/json", "content-type": "application/x-www-form-urlencoded" },
          body: form,
        },
        timeoutMs,
      );
      if (isOutcome(res)) return res;
      const text = await res.text();
      if (res.status !== 201 && res.status !== 200) return httpFailure(res.status, text);
      let recipient: { statusCode: number; status: string; messageId: string } | undefined;
      try {
        recipient = JSON.parse(text).SMSMessageData?.Recipients?.[0];
      } catch {
        // Accepted (2xx), its recipients unread: the message may be on its way. Sent again, it could go twice.
        return { ok: false, kind: "in_doubt", error: `unreadable ${res.status} answer` };
      }
      if (!recipient) return { ok: false, kind: "provider", error: `no recipient accepted: ${text.slice(0, 200)}` };
      if (recipient.statusCode >= 100 && recipient.statusCode <= 102) return { ok: true, messageId: recipient.messageId };
      const kind = AT_RECIPIENT_ERRORS.has(recipient.statusCode) ? "recipient" : AT_TRANSIENT.has(recipient.statusCode) ? "transient" : "provider";
      return { ok: false, kind, error: `${recipient.statusCode} ${recipient.status}` };
    },
  };
}

// Twilio error codes that no provider can get past: invalid or non-mobile number, unsubscribed recipient.
const TWILIO_RECIPIENT_ERRORS = new Set([21211, 21214, 21610, 21614]);

/** Twilio Programmable Messaging: POST /2010-04-01/Accounts/{sid}/Messages.json, basic auth. */
export function twilio(cfg: ProviderConfig["twilio"], timeoutMs: number): Provider {
  const auth = `Basic ${Buffer.from(`${cfg.accountSid}:${cfg.authToken}`).toString("base64")}`;
  return {
    name: "twilio",
    async send(m) {
      const form = new URLSearchParams({ To: e164(m.to), From: cfg.from, Body: m.body });
      if (m.statusCallbackUrl) form.set("StatusCallback", m.statusCallbackUrl);
      const res = await request(
        `${cfg.baseUrl}/2010-04-01/Accounts/${encodeURIComponent(cfg.accountSid)}/Messages.json`,
        { method: "POST", headers: { authorization: auth, "content-type": "application/x-www-form-urlencoded" }, body: form },
        timeoutMs,
      );
      if (isOutcome(res)) return res;
      const text = await res.text();
      let body: { sid?: string; code?: number; message?: string } = {};
      try {
        body = JSON.parse(text);
      } catch {
        // keep the raw text for the error
      }
      // 201 Created: Twilio has the message, whether or not its answer can be read. Failed over, it went twice.
      if (res.status === 201) return { ok: true, messageId: body.sid ?? "" };
      if (res.status === 400 && body.code && TWILIO_RECIPIENT_ERRORS.has(body.code)) {
        return { ok: false, kind: "recipient", error: `${body.code} ${body.message ?? ""}` };
      }
      return httpFailure(res.status, body.message ?? text);
    },
  };
}

/** SendGrid v3 Mail Send: POST /v3/mail/send with a bearer API key; 202 and X-Message-Id. */
export function sendgrid(cfg: ProviderConfig["sendgrid"], timeoutMs: number): Provider {
  return {
    name: "sendgrid",
    async send(m) {
      const payload = {
        personalizations: [{ to: [{ email: m.to }], custom_args: { delivery_id: m.deliveryId } }],
        from: { email: cfg.from, name: cfg.fromName },
        subject: m.subject,
        content: [{ type: "text/plain", value: m.body }],
      };
      const res = await request(
        `${cfg.baseUrl}/v3/mail/send`,
        { method: "POST", headers: { authorization: `Bearer ${cfg.apiKey}`, "content-type": "application/json" }, body: JSON.stringify(payload) },
        timeoutMs,
      );
      if (isOutcome(res)) return res;
      const text = await res.text();
      if (res.status !== 202) return httpFailure(res.status, text);
      return { ok: true, messageId: res.headers.get("x-message-id") ?? "" };
    },
  };
}

/** A service-account OAuth token for FCM (JWT bearer grant, RS256), kept until shortly before it expires. */
class GoogleTokenSource {
  private token: { value: string; expiresAt: number } | undefined;
  constructor(
    private readonly cfg: ProviderConfig["fcm"],
    private readonly timeoutMs: number,
  ) {}

  invalidate() {
    this.token = undefined;
  }

  async get(): Promise<string | SendOutcome> {
    if (this.token && this.token.expiresAt > Date.now() + 60_000) return this.token.value;
    const now = Math.floor(Date.now() / 1000);
    const b64 = (v: object) => Buffer.from(JSON.stringify(v)).toString("base64url");
    const unsigned = `${b64({ alg: "RS256", typ: "JWT" })}.${b64({
      iss: this.cfg.clientEmail,
      scope: "https://www.googleapis.com/auth/firebase.messaging",
      aud: this.cfg.tokenUrl,
      iat: now,
      exp: now + 3600,
    })}`;
    let assertion: string;
    try {
      assertion = `${unsigned}.${createSign("RSA-SHA256").update(unsigned).sign(this.cfg.privateKey).toString("base64url")}`;
    } catch (err) {
      return { ok: false, kind: "provider", error: `FCM private key unusable: ${(err as Error).message}` };
    }
    const res = await request(
      this.cfg.tokenUrl,
      {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ grant_type: "urn:ietf:params:oauth:grant-type:jwt-bearer", assertion }),
      },
      this.timeoutMs,
      false,
    );
    if (isOutcome(res)) return res;
    const text = await res.text();
    if (res.status !== 200) return httpFailure(res.status, `token: ${text}`, false);
    const body = JSON.parse(text) as { access_token: string; expires_in: number };
    this.token = { value: body.access_token, expiresAt: Date.now() + body.expires_in * 1000 };
    return body.access_token;
  }
}

/** Firebase Cloud Messaging HTTP v1: POST /v1/projects/{project}/messages:send. */
export function fcm(cfg: ProviderConfig["fcm"], timeoutMs: number): Provider {
  const tokens = new GoogleTokenSource(cfg, timeoutMs);
  return {
    name: "fcm",
    async send(m) {
      const token = await tokens.get();
      if (typeof token !== "string") return token;
      const res = await request(
        `${cfg.baseUrl}/v1/projects/${encodeURIComponent(cfg.projectId)}/messages:send`,
        {
          method: "POST",
          headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
          body: JSON.stringify({ message: { token: m.to, notification: { title: m.subject, body: m.body }, data: m.data ?? {} } }),
        },
        timeoutMs,
      );
      if (isOutcome(res)) return res;
      const text = await res.text();
      if (res.status === 200) {
        try {
          return { ok: true, messageId: (JSON.parse(text) as { name: string }).name };
        } catch {
          // Accepted, its answer unread (a proxy's page): the push may be on its way. Thrown, the send was left
          // 'sending' until its lease ran out, then sent again to every device.
          return { ok: false, kind: "in_doubt", error: "unreadable 200 answer" };
        }
      }
      let status = "";
      try {
        const err = JSON.parse(text).error as { status?: string; details?: { errorCode?: string }[] };
        status = err.details?.find((d) => d.errorCode)?.errorCode ?? err.status ?? "";
      } catch {
        // fall through to the HTTP status
      }
      // A token the app uninstalled or never had: drop it, do not retry.
      if (res.status === 404 || status === "UNREGISTERED" || status === "INVALID_ARGUMENT") {
        return { ok: false, kind: "recipient", error: `${res.status} ${status || "UNREGISTERED"}` };
      }
      if (res.status === 401) tokens.invalidate();
      return res.status === 401 ? { ok: false, kind: "transient", error: "401 token refused; refreshing" } : httpFailure(res.status, text);
    },
  };
}

export interface Providers {
  /** SMS providers in the order they are tried: primary, then fallback. */
  sms: Provider[];
  email: Provider[];
  push: Provider[];
}

/**
 * The providers whose credentials are set, in the order they are tried. One left unset (switched off in the chart) is
 * not tried: asked with empty credentials, it was sent the message anyway (a phone number, a sign-in code, an e-mail)
 * by a company the operator never signed up with, and refused it for hours of retries. A channel with none fails
 * its deliveries at once ("no provider for this channel").
 */
export function createProviders(cfg: ProviderConfig, timeoutMs: number): Providers {
  const { africastalking: a, twilio: t, sendgrid: g, fcm: f } = cfg;
  const at = a.username && a.apiKey ? [africasTalking(a, timeoutMs)] : [];
  const tw = t.accountSid && t.authToken && t.from ? [twilio(t, timeoutMs)] : [];
  return {
    sms: cfg.smsPrimary === "twilio" ? [...tw, ...at] : [...at, ...tw],
    email: g.apiKey ? [sendgrid(g, timeoutMs)] : [],
    push: f.projectId && f.clientEmail && f.privateKey ? [fcm(f, timeoutMs)] : [],
  };
}
