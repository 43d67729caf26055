// Daraja's callbacks: STK results, B2C results and queue timeouts, transaction
// status results. Each is stored raw before anything else acts on it (or by the
// one statement that decides the usual STK success), then checked:
// source address, the per-attempt token in the path, the body's shape, and
// the ids, amount and phone against our own record. Nothing unmatched is credited.
import type http from "node:http";
import type http2 from "node:http2";
import type { BlockList } from "node:net";
import { answerTooLarge, clientAddress, decimalMinor, BodyTooLargeError, readHttpBody, timeOrderedUuid, withTransaction, type HttpFilter } from "@ttip/runtime";
import { CALLBACK_ROUTE, isCallbackPath } from "./callback-paths.js";
import { applyBalanceResult } from "./mpesa-balance.js";
import { addressAllowed } from "./config.js";
import { recordAlert } from "./fraud.js";
import { applyReversalResult } from "./mpesa-reversals.js";
import { applyB2cResult, applyStatusResult, markQueueTimeout, type PayoutDeps } from "./payouts.js";
import { applyStkOutcomeTo, markCallback, storeAndCreditStk, storeAndFailStk, type Deps, type RawCallback, type StkFailure, type StkSuccess, type TipRef } from "./tips.js";

const MAX_BODY = 64 * 1024;

export type Req = http.IncomingMessage | http2.Http2ServerRequest;
export type Res = http.ServerResponse | http2.Http2ServerResponse;

export function callbackFilter(deps: Deps & PayoutDeps): HttpFilter {
  return (req, res) => {
    const path = (req.url ?? "").split("?")[0];
    if (!isCallbackPath(path)) return false;
    void handle(deps, req, res, path).catch((err) => {
      deps.ctx.logger.error({ err, path: redactToken(path) }, "callback handling failed");
      reply(res, 500, { ResultCode: 1, ResultDesc: "Temporary failure" });
    });
    return true;
  };
}

function redactToken(path: string): string {
  return path.replace(/\/[A-Za-z0-9_-]{16,64}$/, "/[token]");
}

export function remoteAddress(req: Req, trustedProxies: BlockList | undefined): string {
  return clientAddress(req.socket?.remoteAddress, req.headers["x-forwarded-for"], trustedProxies);
}

/** The body up to MAX_BODY; a larger one is not read on (its first bytes are kept as evidence). */
export async function readBody(req: Req): Promise<{ body: Buffer; truncated: boolean }> {
  try {
    return { body: await readHttpBody(req, MAX_BODY), truncated: false };
  } catch (err) {
    if (err instanceof BodyTooLargeError) return { body: Buffer.alloc(0), truncated: true };
    throw err;
  }
}

/**
 * What M-Pesa is told of a callback taken: the usual answer, its JSON encoded once (ACCEPTED_JSON).
 * Frozen: reply picks those bytes by this object's identity, so a change to it would not be sent.
 */
export const ACCEPTED: Readonly<{ ResultCode: number; ResultDesc: string }> = Object.freeze({ ResultCode: 0, ResultDesc: "Accepted" });
const ACCEPTED_JSON = JSON.stringify(ACCEPTED);

/**
 * A JSON answer with its length: node then sends the head and the body as one string in one write
 * (without a length it framed the body chunked, 4 writes' worth of framing joined by a cork).
 */
export function reply(res: Res, status: number, body: unknown) {
  if (res.headersSent) return;
  const data = body === ACCEPTED ? ACCEPTED_JSON : JSON.stringify(body);
  (res as http.ServerResponse).writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(data) });
  res.end(data);
}

async function handle(deps: Deps & PayoutDeps, req: Req, res: Res, path: string): Promise<void> {
  const { pool, logger } = deps.ctx;
  const config = deps.config();
  const { body, truncated } = await readBody(req);
  const from = remoteAddress(req, config.callbackTrustedProxies);
  const match = CALLBACK_ROUTE.exec(path);
  // The route's first word names the source (mpesa_stk, mpesa_b2c, mpesa_status, mpesa_balance, mpesa_reversal); an unknown path is filed as status.
  const source = `mpesa_${match?.[1].split("/")[0] ?? "status"}`;
  // In time order (UUID version 7): payment.callbacks_pkey grows at its end, where a random id put
  // each callback on a leaf page of its own, a full-page image after every checkpoint on a grown table.
  const callbackId = timeOrderedUuid();
  const raw: RawCallback = { callbackId, source, path: redactToken(path), remoteAddress: from, body };
  const allowed = addressAllowed(from, config.callbackAllowList);
  const stk = req.method === "POST" && allowed && !truncated && match?.[1] === "stk" ? readStkOutcome(body) : undefined;
  // The usual STK success or failure is stored by the statement that decides it (one round trip, one commit).
  const early = !stk ? undefined : stk.success ? await storeAndCreditStk(deps, raw, match![2], stk.success) : await storeAndFailStk(deps, raw, match![2], stk.failure);
  if (early === "credited" || early === "failed") return reply(res, 200, ACCEPTED);
  // Anything else is stored first, whatever it is, so nothing Daraja (or anyone) sent is ever lost. A refused one is
  // stored refused, never 'received' (which the replay decides), not even between two statements; an STK result
  // with the tip its path's token names, which is what the replay decides it by.
  const refused = req.method !== "POST" ? "bad_method" : !allowed ? "rejected_address" : truncated ? "too_large" : !match ? "unknown_path" : undefined;
  if (early !== "stored") {
    const stkToken = !refused && match![1] === "stk" ? match![2] : null;
    await pool.query(
      `INSERT INTO payment.callbacks (callback_id, source, path, remote_address, raw_body, outcome, tip_id, token_checked)
       VALUES ($1, $2, $3, $4, $5, $6, (SELECT tip_id FROM payment.tips WHERE callback_token = $7), $7::text IS NOT NULL)`,
      [callbackId, source, raw.path, from, body, refused ?? "received", stkToken],
    );
  }
  const outcome = (o: string, extra: { ref?: string; tipId?: string; payoutId?: string; matched?: boolean } = {}) => markCallback(pool, callbackId, o, extra);

  if (refused === "bad_method") return reply(res, 405, { ResultCode: 1, ResultDesc: "POST only" });
  if (refused === "rejected_address") {
    logger.warn({ from, path: redactToken(path) }, "callback from an address outside the allow-list refused");
    return reply(res, 403, { ResultCode: 1, ResultDesc: "Forbidden" });
  }
  if (refused === "too_large") return answerTooLarge(res, MAX_BODY, "application/json", JSON.stringify({ ResultCode: 1, ResultDesc: `Body larger than ${MAX_BODY} bytes` }));
  if (refused === "unknown_path") return reply(res, 404, { ResultCode: 1, ResultDesc: "Not found" });
  let json: unknown;
  try {
    json = JSON.parse(body.toString("utf8"));
  } catch {
    await outcome("malformed");
    return reply(res, 400, { ResultCode: 1, ResultDesc: "Body is not JSON" });
  }
  const [, kind, token] = match!;
  const answer = kind === "stk" ? await applyStk(deps, callbackId, token, json) : await applyResult(deps, callbackId, kind, token, json);
  return reply(res, answer.status, answer.body);
}

/**
 * An STK result in Daraja's shape with everything its usual decision needs: a
 * success with its receipt, amount and number, or a failure; undefined for anything else.
 */
function readStkOutcome(body: Buffer): { success: StkSuccess; failure?: undefined } | { success?: undefined; failure: StkFailure } | undefined {
  let json: unknown;
  try {
    json = JSON.parse(body.toString("utf8"));
  } catch {
    return undefined;
  }
  const cb = parseStkCallback(json);
  if (!cb) return undefined;
  if (!isSuccessCode(cb.resultCode)) return { failure: { source: "callback", ...cb } };
  if (!cb.receipt || cb.amountMinor === undefined || cb.phone === undefined) return undefined;
  return { success: { source: "callback", ...cb, receipt: cb.receipt, amountMinor: cb.amountMinor, phone: cb.phone } };
}

/** Daraja's answer to a callback. */
interface Answer {
  status: number;
  body: { ResultCode: number; ResultDesc: string };
}

/** An STK result: the tip is found by the token, locked and decided, and this callback marked, in one transaction. */
async function applyStk(deps: Deps, callbackId: string, token: string, json: unknown): Promise<Answer> {
  const cb = parseStkCallback(json);
  if (!cb) {
    await markCallback(deps.ctx.pool, callbackId, "malformed");
    return { status: 400, body: { ResultCode: 1, ResultDesc: "Not an STK callback" } };
  }
  await decideStk(deps, callbackId, { callbackToken: token }, cb);
  return { status: 200, body: ACCEPTED };
}

/** A stored STK callback's decision about the tip `ref` names; one naming no tip is flagged for support. */
async function decideStk(deps: Deps, callbackId: string, ref: TipRef | undefined, cb: ParsedStkCallback): Promise<void> {
  const { result, tip } = ref ? await applyStkOutcomeTo(deps, ref, { source: "callback", ...cb }, { callbackId, reference: cb.receipt ?? cb.checkoutRequestId }) : { result: "unknown" };
  if (result === "unknown") {
    await unknownCallback(deps, callbackId, "mpesa_stk", cb.checkoutRequestId, tip?.worker_id ?? undefined);
    await markCallback(deps.ctx.pool, callbackId, "unknown", { ref: cb.checkoutRequestId });
  }
}

/**
 * STK callbacks stored and never decided, older than a minute: the deciding transaction failed (a timeout, a
 * failover) or the process stopped between the store and the decision, and Daraja was answered 500 or nothing.
 * Daraja does not send them again, and no pass asks M-Pesa about a tip no longer pending (expired, failed): a late
 * success would never reach the worker. Each is decided now as if it had just arrived, by the tip its path's token
 * named when it was stored (the token itself is not kept); one whose token named none is unknown, as it was when it
 * came: a body naming a tip's CheckoutRequestID proves nothing. The least tried first, then the oldest.
 */
export async function replayStoredStkCallbacks(deps: Deps, limit: number): Promise<number> {
  // Each row leased for the pass, attempt counted, in one statement: a replica at a time replays it without a
  // connection held across the work (embedded mode's pool has one). Two replicas deciding one callback decided it
  // once, but the second marked it "duplicate" over the first's "credited", and each raised its own alert.
  const { rows } = await deps.ctx.pool.query<StoredStkCallback>(
    `UPDATE payment.callbacks SET replay_lease_until = now() + interval '5 minutes', attempts = attempts + 1
      WHERE callback_id IN (
        SELECT callback_id FROM payment.callbacks WHERE source = 'mpesa_stk' AND outcome = 'received'
           AND received_at < now() - interval '1 minute' AND (replay_lease_until IS NULL OR replay_lease_until < now())
         ORDER BY attempts, received_at LIMIT $1 FOR UPDATE SKIP LOCKED)
      RETURNING callback_id, raw_body, tip_id, token_checked`,
    [limit],
  );
  return replayEach(deps, rows);
}

/** A stored STK callback to replay, with the tip its path's token named (null: none). */
interface StoredStkCallback {
  callback_id: string;
  raw_body: Buffer;
  tip_id: string | null;
  /** Null: stored by a version that kept no tip by the token (0070_callback_token_checked.sql). */
  token_checked: boolean | null;
}

/** The tip a callback decides: the one its token named, or for one stored before tokens were checked, its body's. */
async function tipOfStored(deps: Deps, r: StoredStkCallback, checkoutRequestId: string): Promise<string | undefined> {
  // A tip kept by the version before (its token checked, the column not yet there) is the token's too.
  if (r.token_checked || r.tip_id) return r.tip_id ?? undefined;
  const { rows } = await deps.ctx.pool.query<{ tip_id: string }>("SELECT tip_id FROM payment.tip_checkout_ids WHERE checkout_request_id = $1", [checkoutRequestId]);
  return rows[0]?.tip_id;
}

async function replayEach(deps: Deps, rows: StoredStkCallback[]): Promise<number> {
  const { pool, logger } = deps.ctx;
  let decided = 0;
  for (const r of rows) {
    try {
      const cb = parseStkCallback(JSON.parse(r.raw_body.toString("utf8")));
      if (!cb) {
        await markCallback(pool, r.callback_id, "malformed");
        continue;
      }
      await decideStk(deps, r.callback_id, await tipOfStored(deps, r, cb.checkoutRequestId), cb);
      decided++;
    } catch (err) {
      if (err instanceof SyntaxError) {
        await markCallback(pool, r.callback_id, "malformed");
        continue;
      }
      // Its attempt was counted with its lease; the next pass after the lease tries again.
      logger.warn({ callbackId: r.callback_id, err }, "stored STK callback still cannot be decided; will retry");
    }
  }
  return decided;
}

/** A Result body: a B2C result or queue timeout, a transaction status result, an account balance, a reversal's result or queue timeout. */
async function applyResult(deps: Deps & PayoutDeps, callbackId: string, kind: string, token: string, json: unknown): Promise<Answer> {
  const { pool } = deps.ctx;
  const outcome = (o: string, extra: { ref?: string; tipId?: string; payoutId?: string; matched?: boolean } = {}) => markCallback(pool, callbackId, o, extra);
  const result = parseResult(json);
  if (!result) {
    await outcome("malformed");
    return { status: 400, body: { ResultCode: 1, ResultDesc: "Not a Result body" } };
  }
  if (kind.startsWith("balance/")) {
    const applied = await applyBalanceResult(pool, token, result, kind === "balance/timeout");
    await outcome(applied ? "balance" : "unknown", { ref: result.conversationId, matched: applied });
    return { status: 200, body: ACCEPTED };
  }
  if (kind.startsWith("reversal/")) {
    const { outcome: applied, tipId } = await applyReversalResult(deps, token, result, kind === "reversal/timeout");
    if (applied === "unknown") await unknownCallback(deps, callbackId, "mpesa_reversal", result.originatorConversationId || result.conversationId);
    await outcome(applied, { ref: result.transactionId || result.conversationId, tipId, matched: applied !== "unknown" });
    return { status: 200, body: ACCEPTED };
  }
  const { rows } = await pool.query<{ payout_id: string; worker_id: string }>("SELECT payout_id, worker_id FROM payment.payouts WHERE callback_token = $1", [token]);
  const payout = rows[0];
  let applied = "unknown";
  if (payout) {
    if (kind === "b2c/result") applied = await applyB2cResult(deps, payout.payout_id, result);
    else if (kind === "b2c/timeout") applied = await markQueueTimeout(deps, payout.payout_id, result);
    else if (kind === "status/result") applied = await applyStatusResult(deps, payout.payout_id, result);
    else applied = "noted"; // a status query's own queue timeout: the next pass asks again
  }
  if (applied === "unknown") {
    await unknownCallback(deps, callbackId, "mpesa_b2c", result.originatorConversationId || result.conversationId, payout?.worker_id);
    await outcome("unknown", { ref: result.originatorConversationId });
  } else {
    await outcome(applied, { ref: result.transactionId || result.conversationId, payoutId: payout!.payout_id, matched: true });
  }
  return { status: 200, body: ACCEPTED };
}

async function unknownCallback(deps: Deps, callbackId: string, source: string, reference: string, workerId?: string) {
  deps.ctx.logger.warn({ callbackId, source, reference }, "callback matches no payment; stored, not credited");
  await withTransaction(deps.ctx.pool, (tx) =>
    recordAlert(tx, { reason: "UNKNOWN_CALLBACK", action: "flag", workerId, detail: `${source} callback ${callbackId} for unknown reference ${reference.slice(0, 80)}` }),
  );
}

/** Daraja's success: 0 or "0" (codes arrive as numbers or strings). */
export function isSuccessCode(code: string | number): boolean {
  return String(code).trim() === "0";
}

export interface ParsedStkCallback {
  checkoutRequestId: string;
  merchantRequestId: string;
  /** Daraja's code as a string: usually digits, sometimes not ("SFC_IC0003"); success iff "0". */
  resultCode: string;
  resultDesc: string;
  receipt?: string;
  /** What M-Pesa reports taking, in minor units (Daraja says shillings, sometimes with cents). */
  amountMinor?: bigint;
  phone?: string;
}

/** Strict: Daraja's exact shape, or undefined. */
export function parseStkCallback(json: unknown): ParsedStkCallback | undefined {
  const cb = (json as { Body?: { stkCallback?: Record<string, unknown> } })?.Body?.stkCallback;
  if (!cb || typeof cb !== "object") return undefined;
  const { CheckoutRequestID, MerchantRequestID, ResultCode, ResultDesc } = cb;
  if (typeof CheckoutRequestID !== "string" || !/^[A-Za-z0-9_-]{1,64}$/.test(CheckoutRequestID)) return undefined;
  if (typeof MerchantRequestID !== "string" || MerchantRequestID.length > 64) return undefined;
  // A number, or a string that is not always digits (the portal lists "SFC_IC0003": the number does not exist).
  const code = typeof ResultCode === "number" && Number.isInteger(ResultCode) ? String(ResultCode)
    : typeof ResultCode === "string" && /^[A-Za-z0-9_.-]{1,32}$/.test(ResultCode.trim()) ? ResultCode.trim()
    : undefined;
  if (code === undefined || typeof ResultDesc !== "string") return undefined;
  const base = { checkoutRequestId: CheckoutRequestID, merchantRequestId: MerchantRequestID, resultCode: code, resultDesc: ResultDesc.slice(0, 300) };
  if (!isSuccessCode(code)) return base;
  const items = (cb.CallbackMetadata as { Item?: unknown })?.Item;
  if (!Array.isArray(items)) return undefined;
  const byName = new Map<string, unknown>();
  for (const item of items) {
    if (!item || typeof item !== "object" || typeof (item as { Name?: unknown }).Name !== "string") return undefined;
    byName.set((item as { Name: string }).Name, (item as { Value?: unknown }).Value);
  }
  // A decimal (1.00), and in one report a string ("1.00"): read exactly, never rounded.
  const amountMinor = decimalMinor(byName.get("Amount"));
  const receipt = byName.get("MpesaReceiptNumber");
  const phone = byName.get("PhoneNumber");
  if (amountMinor === undefined || amountMinor <= 0n) return undefined;
  if (typeof receipt !== "string" || !/^[A-Z0-9]{10}$/.test(receipt)) return undefined;
  if ((typeof phone !== "number" && typeof phone !== "string") || !/^254\d{9}$/.test(String(phone))) return undefined;
  return { ...base, receipt, amountMinor, phone: String(phone) };
}

export interface ParsedResult {
  resultType: number;
  resultCode: string;
  resultDesc: string;
  originatorConversationId: string;
  conversationId: string;
  transactionId: string;
  parameters: Map<string, unknown>;
}

/** The Result envelope of B2C, queue timeouts and transaction status. */
export function parseResult(json: unknown): ParsedResult | undefined {
  const r = (json as { Result?: Record<string, unknown> })?.Result;
  if (!r || typeof r !== "object") return undefined;
  const code = r.ResultCode;
  if (typeof code !== "number" && typeof code !== "string") return undefined;
  if (typeof r.ConversationID !== "string" || typeof r.OriginatorConversationID !== "string") return undefined;
  const parameters = new Map<string, unknown>();
  const list = (r.ResultParameters as { ResultParameter?: unknown })?.ResultParameter;
  if (list !== undefined) {
    const arr = Array.isArray(list) ? list : [list];
    for (const p of arr) {
      if (!p || typeof p !== "object" || typeof (p as { Key?: unknown }).Key !== "string") return undefined;
      parameters.set((p as { Key: string }).Key, (p as { Value?: unknown }).Value);
    }
  }
  return {
    resultType: Number(r.ResultType ?? 0),
    resultCode: String(code),
    resultDesc: String(r.ResultDesc ?? "").slice(0, 300),
    originatorConversationId: r.OriginatorConversationID,
    conversationId: r.ConversationID,
    transactionId: typeof r.TransactionID === "string" ? r.TransactionID : "",
    parameters,
  };
}
