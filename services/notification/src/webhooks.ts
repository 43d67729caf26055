// Provider callbacks on the service's own HTTP port: delivery reports (AT,
// Twilio, SendGrid) and inbound SMS (the STOP keyword). Each is checked the
// way its provider allows: Twilio's HMAC signature, SendGrid's ECDSA
// signature, and for Africa's Talking (which signs nothing) a secret token in
// the callback URL configured in its console.
import type http from "node:http";
import type http2 from "node:http2";
import { answerTooLarge, BodyTooLargeError, readHttpBody, maskPhone, normalisePhone, type HttpFilter, type Logger, type Pool } from "@ttip/runtime";
import type { ProviderConfig } from "./config.js";
import { applyStatusReport, type ReportedStatus } from "./delivery.js";
import { checkSendgridSignature, checkTwilioSignature, sameSecret } from "./signatures.js";

type Req = http.IncomingMessage | http2.Http2ServerRequest;
type Res = http.ServerResponse | http2.Http2ServerResponse;

const STOP_WORDS = new Set(["STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "ACHA", "SITISHA"]);
const START_WORDS = new Set(["START", "UNSTOP", "YES", "ANZA"]);

const AT_STATUS: Record<string, ReportedStatus> = {
  Success: "delivered",
  Sent: "sent",
  Submitted: "sent",
  Buffered: "sent",
  Failed: "failed",
  Rejected: "failed",
  Expired: "failed",
  AbsentSubscriber: "failed",
};
const TWILIO_STATUS: Record<string, ReportedStatus> = { sent: "sent", delivered: "delivered", undelivered: "failed", failed: "failed" };
const SENDGRID_STATUS: Record<string, ReportedStatus> = { processed: "sent", delivered: "delivered", bounce: "failed", dropped: "failed" };

const MAX_BODY = 256 * 1024;


function send(res: Res, status: number, body = "", type = "text/plain") {
  (res as http.ServerResponse).writeHead(status, { "content-type": type });
  (res as http.ServerResponse).end(body);
}

export interface WebhookOptions {
  pool: Pool;
  logger: Logger;
  providers: () => ProviderConfig;
  /** The public base URL, as Twilio signs it; empty to rebuild it from the Host header. */
  publicUrl: () => string;
}

type Route = (o: WebhookOptions, req: Req, res: Res, body: Buffer, url: URL) => Promise<void>;

/** Each provider callback this service answers, by path. */
const ROUTES: Record<string, Route> = {
  "/webhooks/africastalking/delivery": africasTalkingDelivery,
  "/webhooks/africastalking/inbound": africasTalkingInbound,
  "/webhooks/twilio/status": twilioStatus,
  "/webhooks/twilio/inbound": twilioInbound,
  "/webhooks/sendgrid/events": sendgridEvents,
};

/** POST /webhooks/africastalking/delivery */
async function africasTalkingDelivery(o: WebhookOptions, _req: Req, res: Res, body: Buffer, url: URL): Promise<void> {
  if (!sameSecret(o.providers().africastalking.callbackToken, url.searchParams.get("token") ?? "")) return send(res, 403, "bad token");
  const form = Object.fromEntries(new URLSearchParams(body.toString("utf8")));
  if (!form.id || !form.status) return send(res, 400, "id and status are required");
  await applyStatusReport(o.pool, {
    provider: "africastalking",
    kind: "delivery",
    messageId: form.id,
    status: AT_STATUS[form.status],
    error: form.failureReason,
    payload: { ...form, phoneNumber: form.phoneNumber ? maskPhone(form.phoneNumber) : "" },
  });
  send(res, 200, "OK");
}

/** POST /webhooks/africastalking/inbound */
async function africasTalkingInbound(o: WebhookOptions, _req: Req, res: Res, body: Buffer, url: URL): Promise<void> {
  if (!sameSecret(o.providers().africastalking.callbackToken, url.searchParams.get("token") ?? "")) return send(res, 403, "bad token");
  const form = Object.fromEntries(new URLSearchParams(body.toString("utf8")));
  if (!form.from) return send(res, 400, "from is required");
  await inbound(o, "africastalking", form.from, form.text ?? "");
  send(res, 200, "OK");
}

/** POST /webhooks/twilio/status */
async function twilioStatus(o: WebhookOptions, req: Req, res: Res, body: Buffer): Promise<void> {
  const params = Object.fromEntries(new URLSearchParams(body.toString("utf8")));
  if (!twilioSigned(o, req, params)) return send(res, 403, "bad signature");
  await applyStatusReport(o.pool, {
    provider: "twilio",
    kind: "status",
    messageId: params.MessageSid ?? "",
    status: TWILIO_STATUS[params.MessageStatus ?? ""],
    error: params.ErrorCode ? `twilio error ${params.ErrorCode}` : undefined,
    payload: { ...params, To: params.To ? maskPhone(params.To) : "" },
  });
  send(res, 204);
}

/** POST /webhooks/twilio/inbound */
async function twilioInbound(o: WebhookOptions, req: Req, res: Res, body: Buffer): Promise<void> {
  const params = Object.fromEntries(new URLSearchParams(body.toString("utf8")));
  if (!twilioSigned(o, req, params)) return send(res, 403, "bad signature");
  if (!params.From) return send(res, 400, "From is required");
  await inbound(o, "twilio", params.From, params.Body ?? "");
  send(res, 200, "<Response></Response>", "text/xml");
}

/** How far a SendGrid batch's signed timestamp may be from our clock (its retries are signed again). */
const SENDGRID_SIGNED_WITHIN_MS = 10 * 60_000;

/** POST /webhooks/sendgrid/events */
async function sendgridEvents(o: WebhookOptions, req: Req, res: Res, body: Buffer): Promise<void> {
  const ok = checkSendgridSignature(
    o.providers().sendgrid.webhookPublicKey,
    String(req.headers["x-twilio-email-event-webhook-timestamp"] ?? ""),
    body,
    String(req.headers["x-twilio-email-event-webhook-signature"] ?? ""),
  );
  if (!ok) return send(res, 403, "bad signature");
  // The signature covers the timestamp, which SendGrid sets at sending: an old one is a captured batch sent again.
  const signedAt = Number(req.headers["x-twilio-email-event-webhook-timestamp"]) * 1000;
  if (!(Math.abs(Date.now() - signedAt) <= SENDGRID_SIGNED_WITHIN_MS)) return send(res, 403, "timestamp too old or too new");
  let events: { event?: string; sg_message_id?: string; reason?: string }[];
  try {
    events = JSON.parse(body.toString("utf8"));
    if (!Array.isArray(events)) throw new Error("not an array");
  } catch {
    return send(res, 400, "a JSON array of events is expected");
  }
  // An entry that is no object reports nothing: skipped, where reading it threw and the batch, refused, came back for ever.
  for (const e of events.filter((x) => typeof x === "object" && x !== null && !Array.isArray(x))) {
    await applyStatusReport(o.pool, {
      provider: "sendgrid",
      kind: e.event ?? "",
      // X-Message-Id is the part before the first dot of sg_message_id.
      messageId: (e.sg_message_id ?? "").split(".")[0],
      status: SENDGRID_STATUS[e.event ?? ""],
      error: e.reason,
      payload: { ...e, email: undefined },
    });
  }
  send(res, 200, "OK");
}

function twilioSigned(o: WebhookOptions, req: Req, params: Record<string, string>): boolean {
  const base = o.publicUrl() || `http://${req.headers.host}`;
  return checkTwilioSignature(o.providers().twilio.authToken, `${base}${req.url}`, params, String(req.headers["x-twilio-signature"] ?? ""));
}

async function inbound(o: WebhookOptions, provider: string, from: string, text: string) {
  const word = text.trim().split(/\s+/)[0]?.toUpperCase() ?? "";
  const phone = normalisePhone(from);
  // "Stop." and "Acha," stop too (Africa's Talking keeps no opt-out list of its own); a start is the whole message,
  // the word alone: "Yes thanks" to a sign-in code is no opt-in.
  if (STOP_WORDS.has(word.replace(/^[^\p{L}\p{N}]+|[^\p{L}\p{N}]+$/gu, ""))) {
    await o.pool.query(
      "INSERT INTO notification.sms_opt_outs (phone, provider) VALUES ($1, $2) ON CONFLICT (phone) DO NOTHING",
      [phone, provider],
    );
    o.logger.info({ phone: maskPhone(phone), provider }, "SMS opt-out (STOP)");
  } else if (START_WORDS.has(text.trim().toUpperCase())) {
    await o.pool.query("DELETE FROM notification.sms_opt_outs WHERE phone = $1", [phone]);
    o.logger.info({ phone: maskPhone(phone), provider }, "SMS opt-in (START)");
  }
}

export function webhooks(o: WebhookOptions): HttpFilter {
  return (req, res) => {
    const url = new URL(req.url ?? "/", "http://local");
    const route = ROUTES[url.pathname];
    if (!route) return false;
    if (req.method !== "POST") {
      send(res, 405, "POST only");
      return true;
    }
    readHttpBody(req, MAX_BODY)
      .then((body) => route(o, req, res, body, url))
      .catch((err) => {
        if (err instanceof BodyTooLargeError) return answerTooLarge(res, MAX_BODY);
        o.logger.error({ err, path: url.pathname }, "webhook failed");
        // 5xx: the provider retries the callback later.
        if (!res.headersSent) send(res, 500, "error");
      });
    return true;
  };
}
