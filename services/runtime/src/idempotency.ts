// The one idempotency primitive: a retried write happens once. Used inside the transaction
// that makes the write (withTransaction), so the claim and the write commit or vanish together.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import type { HandlerContext } from "@connectrpc/connect";
import { ident, opaqueUnnest, type Queryable } from "./db.js";
import { IdempotencyConflictError } from "./domain-errors.js";

/** The request field that carries the key, in every contract that has one. */
const KEY_FIELD = "idempotency_key";

/** Each request schema's key field (undefined: it has none), found once. */
const keyFields = new WeakMap<DescMessage, { localName: string } | undefined>();

function keyFieldOf(schema: DescMessage): { localName: string } | undefined {
  if (!keyFields.has(schema)) keyFields.set(schema, schema.fields.find((f) => f.name === KEY_FIELD));
  return keyFields.get(schema);
}

/**
 * The request's identity for idempotency: sha256 of its protobuf binary with the key field
 * cleared. Binary, not JSON: the same for every client and protocol that sent it. Encoded from
 * a shallow copy with the key cleared (toBinary only reads it; the request is not changed): a
 * deep clone cost more than the encoding itself, on every idempotent call.
 */
export function requestFingerprint<Desc extends DescMessage>(schema: Desc, request: MessageShape<Desc>): string {
  const keyField = keyFieldOf(schema);
  const copy = keyField ? ({ ...request, [keyField.localName]: "" } as MessageShape<Desc>) : request;
  return createHash("sha256").update(toBinary(schema, copy)).digest("hex");
}

export interface IdempotentRequest {
  /** The service's schema, which holds its idempotent_requests table. */
  schema: string;
  /** What is done, e.g. "ttip.qr.v1.QrService/CreateQrCode". */
  operation: string;
  /** Whose key space it is ("" where keys are global to the operation). */
  caller?: string;
  key: string;
  fingerprint: string;
}

/**
 * The idempotent request a handler is serving: its method is the operation, its input's
 * binary (without the key) the fingerprint. `caller` scopes keys per caller.
 */
export function idempotentRequest<R extends { idempotencyKey: string }>(
  schema: string,
  ctx: Pick<HandlerContext, "method">,
  request: R,
  caller = "",
): IdempotentRequest {
  const input = ctx.method.input;
  return {
    schema,
    operation: `${ctx.method.parent.typeName}/${ctx.method.name}`,
    caller,
    key: request.idempotencyKey,
    fingerprint: requestFingerprint(input, request as unknown as MessageShape<typeof input>),
  };
}

/**
 * The claim of claimIdempotencyKey as a CTE named `claimed`, for a statement
 * that makes the write itself: one round trip, atomic without BEGIN/COMMIT.
 * `claimed` holds one row when this call claimed the key and none when the key
 * was used before (claimIdempotencyKey then says by whom). Its parameters are
 * numbered from `first` on, after the statement's own.
 */
export function claimingCte(request: IdempotentRequest, resultId: string, first: number): { sql: string; values: unknown[] } {
  const [operation, caller, key, fingerprint, result] = [0, 1, 2, 3, 4].map((i) => `$${first + i}`);
  return {
    sql: `claimed AS (INSERT INTO ${ident(request.schema)}.idempotent_requests (operation, caller, key, fingerprint, result_id)
      VALUES (${operation}, ${caller}, ${key}, ${fingerprint}, ${result}) ON CONFLICT DO NOTHING RETURNING result_id)`,
    values: [request.operation, request.caller ?? "", request.key, request.fingerprint, resultId],
  };
}

/**
 * claimingCte for several requests at once (a batch call's): `claimed` holds the
 * result id of each request this statement claimed, none for a key used before.
 * Five array parameters from `first` on. The keys must differ (a batch's repeats
 * are answered from their first). The keys are inserted in the primary key's order,
 * whatever the batch's: two statements claiming overlapping keys then wait for each
 * other's first shared key only, never each for a key the other took (a deadlock).
 *
 * A key used before is skipped by NOT EXISTS, not ON CONFLICT DO NOTHING, whose speculative
 * insert writes each claim twice in the WAL (the row, then its confirmation). Once still rests
 * on the primary key: a key that a concurrent statement claims is not in this one's snapshot,
 * so its insert waits on that statement's transaction; if it commits, this statement fails on
 * the key (idempotencyRace) and writes nothing, and run again it finds the key used.
 */
export function claimingManyCte(claims: readonly { request: IdempotentRequest; resultId: string }[], first: number): { sql: string; values: unknown[] } {
  assert(claims.length > 0 && claims.every((c) => c.request.schema === claims[0].request.schema), "claims of one schema");
  const table = `${ident(claims[0].request.schema)}.idempotent_requests`;
  // Opaque arrays: planned the same whatever the batch's size, so the statement keeps its generic plan.
  return {
    sql: `claimed AS (INSERT INTO ${table} (operation, caller, key, fingerprint, result_id)
      SELECT * FROM ${opaqueUnnest(["text", "text", "text", "text", "text"], first)} AS c(operation, caller, key, fingerprint, result_id)
       WHERE NOT EXISTS (SELECT 1 FROM ${table} r WHERE r.operation = c.operation AND r.caller = c.caller AND r.key = c.key)
       ORDER BY c.operation, c.caller, c.key RETURNING result_id)`,
    values: [
      claims.map((c) => c.request.operation),
      claims.map((c) => c.request.caller ?? ""),
      claims.map((c) => c.request.key),
      claims.map((c) => c.request.fingerprint),
      claims.map((c) => c.resultId),
    ],
  };
}

/**
 * Whether `err` is claimingManyCte's lost race: a key of the statement was claimed by a
 * concurrent transaction that has committed since. Nothing was written; the statement run
 * again (in a new snapshot, outside any transaction that began before) finds the key used.
 */
export function idempotencyRace(err: unknown, schema: string): boolean {
  const e = err as { code?: unknown; schema?: unknown; table?: unknown; constraint?: unknown } | null;
  return e?.code === "23505" && e.schema === schema && e.table === "idempotent_requests" && e.constraint === "idempotent_requests_pkey";
}

/**
 * Claims `request.key` for `resultId` (the id of what this request will make). Returns
 * undefined when this call claimed it: go on and make it, in the same transaction. Returns
 * the first request's result id when the key was used for the same request: answer with
 * that. Throws IdempotencyConflictError when it was used for a different one. A concurrent
 * call with the same key waits on the primary key until the first commits or rolls back.
 */
export async function claimIdempotencyKey(tx: Queryable, request: IdempotentRequest, resultId: string): Promise<string | undefined> {
  const claim = claimingCte(request, resultId, 1);
  const inserted = await tx.query(`WITH ${claim.sql} SELECT result_id FROM claimed`, claim.values);
  if (inserted.rowCount === 1) return undefined;
  return (await priorIdempotentResult(tx, request))!;
}

/**
 * The result id `request.key` was claimed for, or undefined when it is unused; throws
 * IdempotencyConflictError when it was used for a different request. For a handler that must
 * answer a retry before what only a first request checks (a lookup whose answer may have
 * changed since): the claim, in the writing transaction, still decides a race.
 */
export async function priorIdempotentResult(db: Queryable, request: IdempotentRequest): Promise<string | undefined> {
  const { rows } = await db.query<{ fingerprint: string | null; result_id: string }>(
    `SELECT fingerprint, result_id FROM ${ident(request.schema)}.idempotent_requests WHERE operation = $1 AND caller = $2 AND key = $3`,
    [request.operation, request.caller ?? "", request.key],
  );
  const first = rows[0];
  if (!first) return undefined;
  if (first.fingerprint !== null && first.fingerprint !== request.fingerprint) {
    throw new IdempotencyConflictError(request.key, request.operation);
  }
  return first.result_id;
}
