// The plain HTTP doors of the offline paths, on the payment service's own port
// (behind the ingress, like the STK callbacks):
//   POST /c2b/<token>/validation    M-Pesa asks whether to take a paybill/till payment
//   POST /c2b/<token>/confirmation  M-Pesa reports one it took
//   POST /ussd/<token>              Africa's Talking relays a USSD step
// The paths avoid the words Safaricom refuses in registered URLs. Each body is
// stored raw before anything else looks at it (USSD steps are kept per session).
import assert from "node:assert/strict";
import { timingSafeEqual } from "node:crypto";
import type http from "node:http";
import { timeOrderedUuid, withTransaction, type HttpFilter } from "@ttip/runtime";
import { applyC2bConfirmation, C2B_RESULT, markUnreadableConfirmation, parseC2bPayment, tellOffListConfirmation, validateC2b } from "./c2b.js";
import { ACCEPTED, readBody, remoteAddress, reply, type Req, type Res } from "./callbacks.js";
import { addressAllowed } from "./config.js";
import { paymentMetrics } from "./metrics.js";
import type { Deps } from "./tips.js";
import { answerUssd } from "./ussd.js";

const C2B_ROUTE = /^\/c2b\/([A-Za-z0-9_-]{16,64})\/(validation|confirmation)$/;
const USSD_ROUTE = /^\/ussd\/([A-Za-z0-9_-]{16,64})$/;

function sameToken(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export function offlineFilter(deps: Deps): HttpFilter {
  return (req, res) => {
    const path = (req.url ?? "").split("?")[0];
    const c2b = C2B_ROUTE.exec(path);
    const ussd = c2b ? null : USSD_ROUTE.exec(path);
    if (!c2b && !ussd && !path.startsWith("/c2b/") && !path.startsWith("/ussd/")) return false;
    const work = c2b ? handleC2b(deps, req, res, c2b[1], c2b[2] as "validation" | "confirmation") : ussd ? handleUssd(deps, req, res, ussd[1]) : notFound(res);
    void work.catch((err) => {
      deps.ctx.logger.error({ err, path: path.replace(/\/[A-Za-z0-9_-]{16,64}/, "/[token]") }, "offline path handling failed");
      if (c2b) reply(res, 500, { ResultCode: "C2B00016", ResultDesc: "Temporary failure" });
      // Not "nothing was charged": whether a prompt went out is not known here.
      else text(res, 200, "END Sorry, something went wrong. If an M-Pesa prompt comes, it is your tip; if none comes, please dial again.");
    });
    return true;
  };
}

async function notFound(res: Res): Promise<void> {
  reply(res, 404, { ResultCode: 1, ResultDesc: "Not found" });
}

function text(res: Res, status: number, body: string) {
  if (res.headersSent) return;
  (res as http.ServerResponse).writeHead(status, { "content-type": "text/plain; charset=utf-8" });
  res.end(body);
}

async function handleC2b(deps: Deps, req: Req, res: Res, token: string, kind: "validation" | "confirmation"): Promise<void> {
  const { pool, logger } = deps.ctx;
  const config = deps.config();
  const { body, truncated } = await readBody(req);
  const from = remoteAddress(req, config.callbackTrustedProxies);
  const callbackId = timeOrderedUuid(); // in time order, as callbacks.ts' (payment.callbacks_pkey)
  const source = kind === "validation" ? "mpesa_c2b_validation" : "mpesa_c2b";
  const c2b = config.c2b;
  // Decided before the body is stored, and stored with it: reconciliation applies every confirmation left
  // 'received', so a refused one must never be, not even for the moment between two statements (a crash, a
  // pool timed out under a flood of forged posts) where it would later be credited as if M-Pesa had sent it.
  const refused = !c2b || !sameToken(token, c2b.pathToken) ? "unknown_path"
    : req.method !== "POST" ? "bad_method"
    : !addressAllowed(from, config.callbackAllowList) ? "rejected_address"
    : undefined;
  await pool.query(
    "INSERT INTO payment.callbacks (callback_id, source, path, remote_address, raw_body, outcome) VALUES ($1, $2, $3, $4, $5, $6)",
    [callbackId, source, `/c2b/[token]/${kind}`, from, body, refused ?? "received"],
  ).catch((err: unknown) => {
    if (kind === "confirmation" && !refused) tellUnrecorded(deps, body, err);
    throw err;
  });
  const outcome = (o: string, ref = "", matched = false) =>
    pool.query("UPDATE payment.callbacks SET outcome = $2, external_reference = $3, matched = $4 WHERE callback_id = $1", [callbackId, o, ref, matched]);
  if (refused === "unknown_path") return reply(res, 404, { ResultCode: 1, ResultDesc: "Not found" });
  if (refused === "bad_method") return reply(res, 405, { ResultCode: 1, ResultDesc: "POST only" });
  if (refused === "rejected_address") {
    if (kind === "confirmation") await tellOffListConfirmation(deps, callbackId, from);
    else logger.warn({ from, kind }, "C2B validation from an address outside the allow-list refused");
    return reply(res, 403, { ResultCode: 1, ResultDesc: "Forbidden" });
  }
  assert(c2b);
  let payment;
  try {
    payment = truncated ? undefined : parseC2bPayment(JSON.parse(body.toString("utf8")));
  } catch {
    payment = undefined;
  }
  const metrics = paymentMetrics(deps.ctx.metrics);
  if (!payment) {
    if (kind === "validation") return (await outcome(truncated ? "too_large" : "malformed"), reply(res, 200, C2B_RESULT.other));
    await withTransaction(pool, (tx) => markUnreadableConfirmation(deps, tx, callbackId, truncated));
    return reply(res, 400, { ResultCode: 1, ResultDesc: "Not a C2B confirmation" });
  }
  if (kind === "validation") {
    const started = performance.now();
    const { answer, why } = await validateC2b(deps, c2b, payment);
    reply(res, 200, answer);
    metrics.c2bValidationSeconds.observe({}, (performance.now() - started) / 1000);
    metrics.c2b.inc({ kind, result: answer.ResultCode });
    await outcome(`validation ${answer.ResultCode}: ${why}`.slice(0, 300), payment.transId, true);
    return;
  }
  try {
    const applied = await applyC2bConfirmation(deps, c2b, callbackId, payment);
    metrics.c2b.inc({ kind, result: applied.outcome });
    await outcome(applied.outcome, payment.transId, true);
  } catch (err) {
    // Kept raw as "received": reconciliation applies it once the lookup works again.
    logger.warn({ err, receipt: payment.transId }, "C2B confirmation stored, not applied yet");
  }
  // M-Pesa has moved the money whatever we answer, and does not resend: say accepted.
  reply(res, 200, ACCEPTED);
}

async function handleUssd(deps: Deps, req: Req, res: Res, token: string): Promise<void> {
  const ussd = deps.config().ussd;
  const { body, truncated } = await readBody(req);
  if (!ussd || !sameToken(token, ussd.pathToken)) return text(res, 404, "END Not found");
  if (req.method !== "POST" || truncated) return text(res, 400, "END Invalid request.");
  // Africa's Talking posts a form; JSON is taken too (some gateways relay it so).
  const type = String(req.headers["content-type"] ?? "");
  let fields: Record<string, string>;
  if (type.includes("application/json")) {
    try {
      const j = JSON.parse(body.toString("utf8")) as Record<string, unknown>;
      fields = Object.fromEntries(Object.entries(j).map(([k, v]) => [k, typeof v === "string" ? v : String(v ?? "")]));
    } catch {
      return text(res, 400, "END Invalid request.");
    }
  } else {
    fields = Object.fromEntries(new URLSearchParams(body.toString("utf8")));
  }
  const { sessionId = "", serviceCode = "", phoneNumber = "", text: typed = "" } = fields;
  if (!sessionId || !phoneNumber) return text(res, 400, "END Invalid request.");
  const answer = await answerUssd(deps, ussd, { sessionId, serviceCode, phoneNumber, text: typed });
  text(res, 200, answer);
  paymentMetrics(deps.ctx.metrics).ussd.inc({ answer: answer.startsWith("CON ") ? "con" : "end" });
}

/**
 * A confirmation M-Pesa sent that could not be stored (PostgreSQL refused or did not answer): M-Pesa does not send
 * it again, and no row holds it, so the log line (with what names the payment, never the payer) and the metric are
 * all that is left of it. The TTIPPaybillPaymentUnaccounted alert sends support to the M-Pesa statement with it.
 */
function tellUnrecorded(deps: Deps, body: Buffer, err: unknown): void {
  let sent: Record<string, unknown> = {};
  try {
    const parsed: unknown = JSON.parse(body.toString("utf8"));
    if (parsed && typeof parsed === "object") sent = parsed as Record<string, unknown>;
  } catch {
    // Logged without its fields.
  }
  const field = (name: string) => (typeof sent[name] === "string" || typeof sent[name] === "number" ? String(sent[name]).slice(0, 40) : undefined);
  paymentMetrics(deps.ctx.metrics).c2b.inc({ kind: "confirmation", result: "unrecorded" });
  deps.ctx.logger.error({
    err, transId: field("TransID"), amount: field("TransAmount"), shortCode: field("BusinessShortCode"), transTime: field("TransTime"), reference: field("BillRefNumber"),
  }, "C2B confirmation NOT stored, and M-Pesa does not send it again: find it on the M-Pesa statement by its TransID");
}
