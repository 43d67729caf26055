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

export function webhooks(o: WebhookOptions): HttpFilter {
  const routes: Record<string, (req: Req, res: Res, body: Buffer, url: URL) => Promise<void>> = {
    "/webhooks/africastalking/delivery": async (_req, res, body, url) => {
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
    },
    "/webhooks/africastalking/inbound": async (_req, res, body, url) => {
      if (!sameSecret(o.providers().africastalking.callbackToken, url.searchParams.get("token") ?? "")) return send(res, 403, "bad token");
      const form = Object.fromEntries(new URLSearchParams(body.toString("utf8")));
      if (!form.from) return send(res, 400, "from is required");
      await inbound("africastalking", form.from, form.text ?? "");
      send(res, 200, "OK");
    },
    "/webhooks/twilio/status": async (req, res, body) => {
      const params = Object.fromEntries(new URLSearchParams(body.toString("utf8")));
      if (!twilioSigned(req, params)) return send(res, 403, "bad signature");
      await applyStatusReport(o.pool, {
        provider: "twilio",
        kind: "status",
        messageId: params.MessageSid ?? "",
        status: TWILIO_STATUS[params.MessageStatus ?? ""],
        error: params.ErrorCode ? `twilio error ${params.ErrorCode}` : undefined,
        payload: { ...params, To: params.To ? maskPhone(params.To) : "" },
      });
      send(res, 204);
    },
    "/webhooks/twilio/inbound": async (req, res, body) => {
      const params = Object.fromEntries(new URLSearchParams(body.toString("utf8")));
      if (!twilioSigned(req, params)) return send(res, 403, "bad signature");
      if (!params.From) return send(res, 400, "From is required");
      await inbound("twilio", params.From, params.Body ?? "");
      send(res, 200, "<Response></Response>", "text/xml");
    },
    "/webhooks/sendgrid/events": async (req, res, body) => {
      const ok = checkSendgridSignature(
        o.providers().sendgrid.webhookPublicKey,
        String(req.headers["x-twilio-email-event-webhook-timestamp"] ?? ""),
        body,
        String(req.headers["x-twilio-email-event-webhook-signature"] ?? ""),
      );
      if (!ok) return send(res, 403, "bad signature");
      let events: { event?: string; sg_message_id?: string; reason?: string }[];
      try {
        events = JSON.parse(body.toString("utf8"));
        if (!Array.isArray(events)) throw new Error("not an array");
      } catch {
        return send(res, 400, "a JSON array of events is expected");
      }
      for (const e of events) {
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
    },
  };

  function twilioSigned(req: Req, params: Record<string, string>): boolean {
    const base = o.publicUrl() || `http://${req.headers.host}`;
    return checkTwilioSignature(o.providers().twilio.authToken, `${base}${req.url}`, params, String(req.headers["x-twilio-signature"] ?? ""));
  }

  async function inbound(provider: string, from: string, text: string) {
    const word = text.trim().split(/\s+/)[0]?.toUpperCase() ?? "";
    const phone = normalisePhone(from);
    if (STOP_WORDS.has(word)) {
      await o.pool.query(
        "INSERT INTO notification.sms_opt_outs (phone, provider) VALUES ($1, $2) ON CONFLICT (phone) DO NOTHING",
        [phone, provider],
      );
      o.logger.info({ phone: maskPhone(phone), provider }, "SMS opt-out (STOP)");
    } else if (START_WORDS.has(word)) {
      await o.pool.query("DELETE FROM notification.sms_opt_outs WHERE phone = $1", [phone]);
      o.logger.info({ phone: maskPhone(phone), provider }, "SMS opt-in (START)");
    }
  }

  return (req, res) => {
    const url = new URL(req.url ?? "/", "http://local");
    const route = routes[url.pathname];
    if (!route) return false;
    if (req.method !== "POST") {
      send(res, 405, "POST only");
      return true;
    }
    readHttpBody(req, MAX_BODY)
      .then((body) => route(req, res, body, url))
      .catch((err) => {
        if (err instanceof BodyTooLargeError) return answerTooLarge(res, MAX_BODY);
        o.logger.error({ err, path: url.pathname }, "webhook failed");
        // 5xx: the provider retries the callback later.
        if (!res.headersSent) send(res, 500, "error");
      });
    return true;
  };
}
