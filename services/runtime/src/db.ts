import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { endsSession } from "./db-answers.js";
import { NamedStatement, nothingSent, sendStatement, sendWithBegin, sendWithCommit } from "./deferred-begin.js";
import type { Logger } from "./log.js";
import { timestamptzParser } from "./timestamptz.js";
import { currentTraceparent, inClientSpan, tracingEnabled } from "./tracing.js";

export type Pool = pg.Pool;
export type PoolClient = pg.PoolClient;
/** Something that runs queries: the pool, or a client inside a transaction. */
export type Queryable = Pick<pg.Pool, "query">;

// int8 (bigint) as BigInt, so money in minor units never passes through a float.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => BigInt(v));
// timestamptz as pg makes it, without its regular expression for the shape PostgreSQL writes.
pg.types.setTypeParser(pg.types.builtins.TIMESTAMPTZ, timestamptzParser(pg.types.getTypeParser(pg.types.builtins.TIMESTAMPTZ, "text")));

export interface PoolOptions {
  max?: number;
  applicationName?: string;
  logger?: Logger;
  /**
   * Parameterised statements as named prepared statements (default true).
   * Off for PGlite: its one session outlives a reconnecting client, whose
   * new connection would prepare the same names again.
   */
  preparedStatements?: boolean;
  /**
   * withTransaction's BEGIN in the same write as the transaction's first
   * statement (default true; see deferred-begin.ts). Off: BEGIN goes alone, a
   * round trip of its own (for a proxy that cannot take it pipelined, and to
   * measure what it saves: bench/transaction-round-trips.ts).
   */
  pipelinedBegin?: boolean;
}

export function createPool(url: string, options: PoolOptions = {}): Pool {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.max ?? 10,
    application_name: options.applicationName,
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: 10_000,
  });
  // An idle connection dropped by a Postgres restart or failover emits here; without
  // a listener the process would crash. The pool replaces it on the next checkout.
  pool.on("error", (err) => options.logger?.warn({ err: err.message }, "idle Postgres connection lost"));
  // pg-pool listens on a connection only while it sits idle: from the moment a new one
  // has opened until its taker listens (a restart's FATAL read in the same chunk as
  // the startup's ReadyForQuery), and in a taker that does not listen (migrate), the
  // 'error' event of a session ended would crash the process. Its statements fail
  // anyway, and the pool drops a released connection that is no longer queryable.
  pool.on("connect", (client) => client.on("error", () => undefined));
  keepConnectionOnStatementError(pool);
  // Before prepareStatements: its wrapper goes around this one, which sees the statements it named.
  hookStatements(pool, options.pipelinedBegin !== false);
  if (options.preparedStatements !== false) prepareStatements(pool);
  return pool;
}

/**
 * withTransaction's BEGIN. On createPool's connections it is not sent alone
 * but with the transaction's first statement (see deferred-begin.ts); on any
 * other pool's it is an ordinary BEGIN.
 */
const DEFERRED_BEGIN: pg.QueryConfig = { text: "BEGIN" };
/** Clients whose BEGIN waits for their next statement. */
const beginOwed = new WeakSet<object>();
/** createPool's clients that send BEGIN and COMMIT in the write of a statement (pipelinedBegin). */
const pipelining = new WeakSet<object>();
/** Clients whose next statement takes COMMIT behind it (withTransactionBracketed's closing, commitWith). */
const commitOwed = new WeakSet<object>();
/** Clients of withTransaction (or withTransactionBracketed) until they are released. */
const transactionClients = new WeakSet<object>();
/** Clients whose transaction commitWith ended: no statement may follow until they are released. */
const committedEarly = new WeakSet<object>();

/** The innermost wrapper of a connection's query(): BEGIN sent with the next statement, commits to outboxes announced. */
function hookStatements(pool: pg.Pool, pipelinedBegin: boolean): void {
  pool.on("connect", (client) => {
    const query = client.query as (...args: unknown[]) => unknown;
    if (pipelinedBegin) pipelining.add(client);
    (client as { query: unknown }).query = (...args: unknown[]) => {
      // Sent now, it would run outside the transaction the caller believes it is in.
      if (committedEarly.has(client)) return Promise.reject(new Error("the transaction was committed by its last statement (commitWith): nothing may follow it"));
      if (commitOwed.delete(client)) return announceOutboxCommits(client, args[0], sendWithCommit(client, query, args));
      if (args[0] === DEFERRED_BEGIN && pipelinedBegin) {
        beginOwed.add(client);
        return Promise.resolve(nothingSent("BEGIN"));
      }
      // Owed again only out of any transaction (the status before the statement): a connection
      // still in one gets its ROLLBACK sent, not answered here.
      const owedAgain = () => void (client.getTransactionStatus() === "I" && beginOwed.add(client));
      const sent = beginOwed.delete(client) ? sendWithBegin(client, query, args, owedAgain) : sendStatement(client, query, args);
      return announceOutboxCommits(client, args[0], sent);
    };
  });
}

const outboxListeners = new Set<(schema: string) => void>();

/**
 * Calls `listener` with a schema's name when this process has committed rows
 * to that schema's outbox (a statement that wrote them succeeded and its
 * connection was out of any transaction after it, or after a later one). A
 * hint for the relay, not a guarantee: rows written elsewhere are not told.
 * Returns the unsubscribe.
 */
export function onOutboxCommitted(listener: (schema: string) => void): () => void {
  outboxListeners.add(listener);
  return () => void outboxListeners.delete(listener);
}

/**
 * The outboxes a statement writes, by text: `INSERT INTO <schema>.outbox`, the
 * schema quoted (writeOutbox, outboxCte) or not (services' own statements). One
 * that names no schema wakes no relay, whose next look finds its rows.
 */
const outboxesWritten = new Map<string, readonly string[]>();

function outboxesWrittenBy(text: string): readonly string[] {
  let schemas = outboxesWritten.get(text);
  if (schemas) return schemas;
  schemas = [...text.matchAll(/INSERT\s+INTO\s+"?([a-z_][a-z0-9_]*)"?\.outbox\b/gi)].map((m) => m[1].toLowerCase());
  if (outboxesWritten.size < MAX_STATEMENT_NAMES) outboxesWritten.set(text, schemas);
  return schemas;
}

/** Outboxes a client wrote to in its open transaction: announced once it commits. */
const unannounced = new WeakMap<object, Set<string>>();

/** `sent` (a statement's answer), announcing the outboxes it leaves committed. */
function announceOutboxCommits(client: pg.PoolClient, config: unknown, sent: unknown): unknown {
  if (!outboxListeners.size || !(sent instanceof Promise)) return sent;
  const text = typeof config === "string" ? config : (config as { text?: unknown } | null)?.text;
  const written = typeof text === "string" ? outboxesWrittenBy(text) : [];
  if (!written.length && !unannounced.has(client)) return sent;
  return sent.then(
    (result) => {
      const schemas = unannounced.get(client) ?? new Set<string>();
      for (const schema of written) schemas.add(schema);
      // The answer came with ReadyForQuery: 'I' is out of any transaction, so what it wrote is committed.
      if (client.getTransactionStatus() !== "I") unannounced.set(client, schemas);
      else {
        unannounced.delete(client);
        if (text !== "ROLLBACK") for (const schema of schemas) for (const listener of outboxListeners) listener(schema);
      }
      return result;
    },
    (err: unknown) => {
      // A failed statement's transaction is rolled back (or was its own): nothing of it commits.
      // (Still 'T': refused before it was sent, the transaction goes on.)
      if (client.getTransactionStatus() !== "T") unannounced.delete(client);
      throw err;
    },
  );
}

/**
 * Array parameter `$n` of `type` as `unnest(…)` or `= ANY(…)` should take it in a prepared
 * statement. Given the value (a custom plan), PostgreSQL estimates such a set at the array's
 * length; without it (the generic plan) at 10 rows. A batch of a few rows then always plans
 * cheaper custom than generic, and the statement is planned again on every call. Behind a
 * scalar subquery the value is out of the planner's sight in both: both estimate 10 rows, and
 * the generic plan is kept after the fifth call.
 */
export function opaqueArray(n: number, type: string): string {
  const known = opaqueArrays.get(type)?.[n];
  if (known !== undefined) return known;
  assert(Number.isInteger(n) && n > 0 && /^[a-z]+$/.test(type), "opaqueArray takes a parameter number and a type name");
  const text = `(SELECT $${n}::${type}[])::${type}[]`;
  // Kept for the next statement built with it (statements are built per call): the types and
  // parameter numbers are the code's, a few dozen of each.
  if (n <= MAX_OPAQUE_PARAMETER && (opaqueArrays.has(type) || opaqueArrays.size < MAX_OPAQUE_TYPES)) {
    const byNumber = opaqueArrays.get(type) ?? [];
    byNumber[n] = text;
    opaqueArrays.set(type, byNumber);
  }
  return text;
}

/** opaqueArray's texts by type, then by parameter number. */
const opaqueArrays = new Map<string, string[]>();
const MAX_OPAQUE_TYPES = 64;
const MAX_OPAQUE_PARAMETER = 64;

/** `unnest(…)` of array parameters `$first`, `$first + 1`, … of `types`, each an opaqueArray. */
export function opaqueUnnest(types: readonly string[], first = 1): string {
  return `unnest(${types.map((type, i) => opaqueArray(first + i, type)).join(", ")})`;
}

/** At most this many statements are prepared on one connection; more (dynamic SQL) are sent unnamed. */
const MAX_PREPARED_PER_CONNECTION = 500;
/** Names by statement text, shared by the connections (a name is the same text's everywhere). */
const statementNames = new Map<string, string | null>();
const MAX_STATEMENT_NAMES = 5_000;

/**
 * The statement's name, or null when it stays unnamed: a select list or
 * RETURNING with a `*` wildcard (a column added by a later migration would
 * change the prepared result type, and PostgreSQL fails every call of it until
 * it is prepared again: old replicas during a rolling upgrade). `count(*)` and
 * `SELECT * FROM unnest(` (columns fixed by the parameters' types) are safe,
 * and so is a multiplication.
 */
function statementName(text: string): string | null {
  let name = statementNames.get(text);
  if (name !== undefined) return name;
  name = hasColumnWildcard(text) ? null : `ttip_${createHash("sha256").update(text).digest("base64url").slice(0, 22)}`;
  if (statementNames.size < MAX_STATEMENT_NAMES) statementNames.set(text, name);
  return name;
}

/**
 * A `*` standing for columns: after SELECT, DISTINCT, RETURNING, a comma or a
 * table's name and dot, or before FROM (DISTINCT ON (…) *). A product's `*`
 * follows a value and is followed by one.
 */
function hasColumnWildcard(text: string): boolean {
  const rest = text.replace(/count\(\*\)|SELECT \* FROM unnest\(/gi, "");
  return /(?:\bSELECT|\bDISTINCT|\bRETURNING|,|\.)\s*\*|\*\s*FROM\b/i.test(rest);
}

/**
 * Every parameterised statement goes as a named prepared statement: PostgreSQL
 * parses and plans it once per connection instead of on every call (measured:
 * about half of the server's CPU for a small SELECT). Statements without
 * parameters (BEGIN, COMMIT) keep the simple protocol.
 */
function prepareStatements(pool: pg.Pool): void {
  pool.on("connect", (client) => {
    const prepared = new Map<string, number>();
    statementRuns.set(client, prepared);
    const query = client.query;
    (client as { query: unknown }).query = function (this: pg.PoolClient, ...args: unknown[]) {
      const [text, values] = args;
      if (typeof text === "string" && Array.isArray(values) && values.length > 0) {
        const name = statementName(text);
        if (name && (prepared.has(name) || prepared.size < MAX_PREPARED_PER_CONNECTION)) {
          prepared.set(name, Math.min((prepared.get(name) ?? 0) + 1, RUNS_TO_SETTLED_PLAN));
          return (query as (...a: unknown[]) => unknown).call(this, new NamedStatement(name, text, withArrayLiterals(values)), ...args.slice(2));
        }
      }
      return (query as (...a: unknown[]) => unknown).apply(this, args);
    };
  });
}

/**
 * PostgreSQL plans a prepared statement for its values on its first five runs on a connection, then
 * builds the generic plan and keeps it if it costs no more: from the sixth run on, a statement whose
 * generic plan is kept is not planned again on that connection.
 */
const RUNS_TO_SETTLED_PLAN = 6;
/** Runs of each named statement per connection (at most RUNS_TO_SETTLED_PLAN counted), by statement name. */
const statementRuns = new WeakMap<object, Map<string, number>>();

/** The parts of pg-pool's Pool (pg-pool/index.js) connectFor reads and reorders. */
interface PoolQueues {
  /** Idle connections; a checkout takes the last. */
  _idle: { client?: object }[];
  /** Checkouts waiting, served first come first served, each by a pulse on the next tick. */
  _pendingQueue: unknown[];
}

/**
 * pool.connect(), handed the idle connection that has run `text` most (up to settled). Plans do
 * not cross connections: with the pool's default (the last released first), a pool grown by a
 * burst hands the statements of a batch consumer or poller to whichever connection is on top, and
 * each of the dozens the pool holds plans each of them for its values five times over before it
 * keeps a generic plan (bench/tip-e2e.ts, BENCH_PG_STATEMENTS: 0.4-0.9 plans per call for the
 * grouped statements in a 20 s run on 24-32 connections). Only an order among idle connections:
 * none is waited for, none is opened, the waiting checkouts keep their turn.
 * pg-pool hands an idle connection over on the next tick, to the oldest waiting checkout; set
 * before connect(), the order would be undone by the next checkout of the same turn, and the first
 * checkout given the last one's choice (two statements each got the other's connection). So the
 * order is set on a tick queued just before connect()'s own, and only if that tick serves this
 * checkout. Another pg-pool shape leaves the pool's own order.
 */
function connectFor(pool: pg.Pool, text: unknown): Promise<PoolClient> {
  const { _idle: idle, _pendingQueue: pending } = pool as unknown as Partial<PoolQueues>;
  const name = typeof text === "string" ? statementNames.get(text) : undefined;
  // No name: never prepared here (or not preparable: no parameters, a column wildcard), no connection is better than another.
  if (!name || !Array.isArray(idle) || idle.length < 2 || !Array.isArray(pending)) return pool.connect();
  let ours: unknown;
  process.nextTick(() => {
    if (ours !== undefined && pending[0] === ours) takeNextConnectionThatRan(idle, name);
  });
  const waiting = pending.length;
  const connecting = pool.connect();
  if (pending.length > waiting) ours = pending[pending.length - 1];
  return connecting;
}

/** Moves to the end of `idle` (the next taken) the connection that has run statement `name` most, up to settled. */
function takeNextConnectionThatRan(idle: PoolQueues["_idle"], name: string): void {
  if (idle.length < 2) return;
  const runs = (i: number) => statementRuns.get(idle[i]?.client ?? {})?.get(name) ?? 0;
  let best = idle.length - 1;
  let bestRuns = runs(best);
  // Bounded by the pool's size; stops at the first connection that has settled the statement's plan.
  for (let i = idle.length - 2; i >= 0 && bestRuns < RUNS_TO_SETTLED_PLAN; i--) {
    const r = runs(i);
    if (r > bestRuns) [best, bestRuns] = [i, r];
  }
  if (best !== idle.length - 1) idle.push(idle.splice(best, 1)[0]);
}

/** A string element pg would send with a backslash or quote escaped. */
const needsEscape = (text: string) => text.includes("\\") || text.includes('"');

/** An array element as pg quotes it (utils.js escapeElement), tested before it is rewritten: most need nothing escaped. */
function quotedElement(text: string): string {
  return needsEscape(text) ? `"${text.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"` : `"${text}"`;
}

/** One element of a literal that is not a plain string or number: NULL, bytes as pg writes them (unquoted hex), or quoted. */
function elementText(item: unknown): string {
  if (item === null || item === undefined) return "NULL";
  if (ArrayBuffer.isView(item)) return `\\\\x${(item instanceof Buffer ? item : Buffer.from(item.buffer, item.byteOffset, item.byteLength)).toString("hex")}`;
  return quotedElement(String(item));
}

/** Each element's text (elementText); a hole is one too (NULL, as pg has it), which map would skip. */
function textsOf(values: readonly unknown[]): string[] {
  const texts = new Array<string>(values.length);
  for (let i = 0; i < values.length; i++) texts[i] = elementText(values[i]);
  return texts;
}

/**
 * An array of strings, numbers, bigints, bytes (Buffers, typed arrays) and nulls as the text literal
 * pg would send for it, character for character (utils.js arrayString); undefined for any other
 * array (dates, booleans, nested arrays), which pg encodes itself. pg adds each element to the text
 * in turn, escaping it with two regular-expression replacements: a string made of one more piece
 * per element, copied whole again when it is sent. Here an array whose elements all go quoted as
 * they are (ids, codes, amounts: most) is one join; any other, one join of its elements' texts.
 * Measured (bench/array-params.ts): allocations and CPU per array a fraction of pg's.
 */
export function arrayLiteral(values: readonly unknown[]): string | undefined {
  let plain = true;
  for (let i = 0; i < values.length; i++) {
    const item = values[i];
    const type = typeof item;
    if (type === "string") plain &&= !needsEscape(item as string);
    else if (type === "number" || type === "bigint") continue;
    else if (item === null || item === undefined || ArrayBuffer.isView(item)) plain = false;
    else return undefined;
  }
  const n = values.length;
  if (n === 0) return "{}";
  // One join makes the whole literal, braces too, in one piece (what the serializer then sends
  // without copying it again). It writes numbers and bigints as pg's prepareValue does (String()).
  const parts: unknown[] = plain ? values.slice() : textsOf(values);
  const [open, close, separator] = plain ? ['{"', '"}', '","'] : ["{", "}", ","];
  parts[0] = `${open}${parts[0]}`;
  parts[n - 1] = `${parts[n - 1]}${close}`;
  return parts.join(separator);
}

/** PostgreSQL's type oid of bytea, the element type a binary array of bytes declares. */
const BYTEA_OID = 17;

/**
 * An array of bytes (Buffers, typed arrays; nulls among them) in PostgreSQL's binary array format
 * (array_send: dimensions, flags, element type, then each element's length and bytes): pg sends a
 * Buffer parameter in binary, so the array goes as its bytes. As text each element is written in
 * hex (twice its size), copied with its prefix, joined, and sent; PostgreSQL then decodes the hex.
 * The statement must take the parameter as bytea[] (every statement of ours that sends bytes does:
 * events' payloads, callbacks' bodies); another element type is refused ("wrong element type").
 * Undefined for any other array, and for one of nulls only (its type is not told by its values).
 */
export function byteaArray(values: readonly unknown[]): Buffer | undefined {
  let size = 20;
  let nulls = false;
  let views = 0;
  for (let i = 0; i < values.length; i++) {
    const item = values[i];
    if (item === null || item === undefined) nulls = true;
    else if (ArrayBuffer.isView(item)) {
      views++;
      size += item.byteLength;
    } else return undefined;
    size += 4;
  }
  if (!views) return undefined;
  const out = Buffer.allocUnsafe(size);
  // One dimension, from index 1 (the lower bound pg's text literal has).
  out.writeInt32BE(1, 0);
  out.writeInt32BE(nulls ? 1 : 0, 4);
  out.writeUInt32BE(BYTEA_OID, 8);
  out.writeInt32BE(values.length, 12);
  out.writeInt32BE(1, 16);
  let at = 20;
  for (let i = 0; i < values.length; i++) {
    const item = values[i] as ArrayBufferView | null | undefined;
    if (item === null || item === undefined) at = out.writeInt32BE(-1, at);
    else {
      at = out.writeInt32BE(item.byteLength, at);
      out.set(item instanceof Uint8Array ? item : new Uint8Array(item.buffer, item.byteOffset, item.byteLength), at);
      at += item.byteLength;
    }
  }
  return out;
}

/** `values` with each array of bytes as byteaArray's binary and each array arrayLiteral can write as its literal (a copy; the same values when there is none). */
function withArrayLiterals(values: unknown[]): unknown[] {
  let out: unknown[] | undefined;
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    if (!Array.isArray(value)) continue;
    const literal = byteaArray(value) ?? arrayLiteral(value);
    if (literal === undefined) continue;
    out ??= values.slice();
    out[i] = literal;
  }
  return out ?? values;
}

/**
 * pg-pool's own pool.query() destroys the connection after ANY failed
 * statement. A statement the server refused (a constraint, a bad byte) leaves
 * the connection fine; destroying it costs a reconnect, and where one
 * connection is shared (PGlite) the replacement races the closing one and the
 * calls of everyone else waiting on it fail. Only a lost connection is dropped.
 */
function keepConnectionOnStatementError(pool: pg.Pool): void {
  const query = async (...args: unknown[]) => {
    const client = await connectFor(pool, args[0]);
    let lost: Error | undefined;
    const onLost = (err: Error) => {
      lost = err;
    };
    client.on("error", onLost);
    try {
      return await inStatementSpan(args[0], () => (client.query as (...a: unknown[]) => Promise<unknown>)(...args));
    } catch (err) {
      if (!(err instanceof pg.DatabaseError) || endedSession(err)) lost ??= err as Error;
      throw err;
    } finally {
      client.removeListener("error", onLost);
      client.release(lost);
    }
  };
  (pool as unknown as { query: typeof query }).query = query;
}

/**
 * A FATAL answer (a restart's or pg_terminate_backend's 57P01) ends its
 * session: the socket closes right after, so the connection is not given to
 * the next caller, whose statement would fail on it. Told by its SQLSTATE too
 * (endsSession): the severity is translated when messages are not in English.
 */
function endedSession(err: unknown): boolean {
  return err instanceof pg.DatabaseError && endsSession(err);
}

/**
 * A statement in a client span while tracing (see inClientSpan): named by its
 * first keyword, with its text, which holds placeholders, never the values.
 */
function inStatementSpan<T>(statement: unknown, fn: () => Promise<T>): Promise<T> {
  if (!tracingEnabled()) return fn();
  const text = typeof statement === "string" ? statement : ((statement as { text?: string } | undefined)?.text ?? "");
  const operation = /^\s*([A-Za-z]+)/.exec(text)?.[1]?.toUpperCase() ?? "QUERY";
  return inClientSpan(`pg ${operation}`, { "db.system": "postgresql", "db.operation": operation, "db.statement": text.slice(0, 2000) }, fn);
}

/** Traces each statement a checked-out client runs until the returned function restores it. */
function traceStatements(client: PoolClient): () => void {
  if (!tracingEnabled()) return () => undefined;
  const query = client.query;
  client.query = ((...args: unknown[]) => inStatementSpan(args[0], () => (query as (...a: unknown[]) => Promise<unknown>).apply(client, args))) as typeof client.query;
  return () => {
    client.query = query;
  };
}

/**
 * Runs fn in a transaction; commits if it returns, rolls back if it throws.
 * BEGIN travels with fn's first statement, one round trip for both (see
 * deferred-begin.ts); a transaction that ran no statement sends nothing.
 * `firstStatement`, the text of the statement fn sends first when the caller
 * knows it (a consumer's inbox claim): the transaction takes the idle
 * connection that has planned it, as pool.query does (connectFor).
 */
export async function withTransaction<T>(pool: Pool, fn: (client: PoolClient) => Promise<T>, firstStatement?: string): Promise<T> {
  return onTransactionClient(pool, firstStatement, async (client) => {
    await client.query(DEFERRED_BEGIN);
    // Outbox rows written in this transaction take its trace context (the column's default);
    // only while tracing is on, so a transaction costs no extra statement otherwise.
    const traceparent = currentTraceparent();
    if (traceparent) await client.query("SELECT set_config('ttip.traceparent', $1, true)", [traceparent]);
    const result = await fn(client);
    if (!committedEarly.has(client)) await client.query("COMMIT");
    return result;
  });
}

/**
 * Waits for the advisory lock named `key`, held until withTransaction's transaction `tx` ends: the
 * services' way to serialize writers of one thing that has no row to lock yet (a worker's payouts, a
 * venue's rules). Names hash to PostgreSQL's 32-bit keys: two names may share a lock, which only
 * serializes more, never less. Outside a transaction the lock would end with its own statement.
 * `shared`: writers that may run beside each other but not beside the one holding the lock alone.
 */
export async function lockForTransaction(tx: Queryable, key: string, mode: "exclusive" | "shared" = "exclusive"): Promise<void> {
  assert(transactionClients.has(tx), "an advisory lock is taken inside withTransaction");
  await tx.query(mode === "shared" ? "SELECT pg_advisory_xact_lock_shared(hashtext($1))" : "SELECT pg_advisory_xact_lock(hashtext($1))", [key]);
}

/**
 * Runs a statement as the last of withTransaction's transaction `tx`, with COMMIT behind it in
 * the same write (as withTransactionBracketed's closing): one round trip fewer. Once it has
 * answered, the transaction has committed; withTransaction sends no COMMIT, and any statement
 * after it on `tx` fails. The only statement of its transaction goes alone, without BEGIN or
 * COMMIT (one statement is a transaction of its own). `tx` anything else (the pool, a client
 * of someone else's transaction): the statement is sent as it is, and nothing is committed.
 */
export async function commitWith<R extends pg.QueryResultRow = pg.QueryResultRow>(tx: Queryable, text: string, values: unknown[]): Promise<pg.QueryResult<R>> {
  if (!transactionClients.has(tx)) return tx.query<R>(text, values);
  const client = tx as PoolClient;
  assert(!committedEarly.has(client), "commitWith ends a transaction once");
  let result: pg.QueryResult<R>;
  if (beginOwed.delete(client)) {
    // Failed, it ran alone and changed nothing: BEGIN is owed again, so the ROLLBACK that follows is answered here.
    result = await client.query<R>(text, values).catch((err: unknown) => {
      beginOwed.add(client);
      throw err;
    });
  } else if (pipelining.has(client)) {
    commitOwed.add(client);
    result = await client.query<R>(text, values);
  } else {
    result = await client.query<R>(text, values);
    await client.query("COMMIT");
  }
  assertCommitted(client, "commitWith");
  committedEarly.add(client);
  return result;
}

/**
 * A statement that was to carry its transaction's COMMIT has answered: the connection must be out
 * of any transaction. Still in one, nothing committed: said to be, the connection would go back to
 * the pool mid-transaction and its writes be lost with it. Failing here, the transaction rolls back.
 */
function assertCommitted(client: PoolClient, what: string): void {
  const status = client.getTransactionStatus();
  if (status === "T" || status === "E") throw new Error(`${what}: the transaction is still open after its last statement (status ${status})`);
}

/** A statement and its parameters. */
export interface Statement {
  text: string;
  values: unknown[];
}

/**
 * withTransaction for a transaction with a first and a last statement known
 * apart (a poller's claim and mark): BEGIN travels with the first and COMMIT
 * with the last, one round trip each, both prepared statements (see
 * deferred-begin.ts). `fn` gets the first statement's result and answers the
 * last statement (none: COMMIT alone). Outbox rows written here get no trace
 * context from it.
 */
export async function withTransactionBracketed<T>(
  pool: Pool,
  opening: Statement,
  fn: (client: PoolClient, opened: pg.QueryResult) => Promise<{ closing?: Statement; result: T }>,
): Promise<T> {
  return onTransactionClient(pool, opening.text, async (client) => {
    await client.query(DEFERRED_BEGIN);
    const opened = await client.query(opening.text, opening.values);
    const { closing, result } = await fn(client, opened);
    if (committedEarly.has(client)) assert(!closing, "a bracketed transaction ends with its closing statement or commitWith, not both");
    else if (!closing) await client.query("COMMIT");
    else if (pipelining.has(client) && !beginOwed.has(client)) {
      commitOwed.add(client);
      await client.query(closing.text, closing.values);
      assertCommitted(client, "withTransactionBracketed");
    } else {
      await client.query(closing.text, closing.values);
      await client.query("COMMIT");
    }
    return result;
  });
}

/**
 * A checked-out client for one transaction (the one that has run its `opening` statement's text,
 * if idle: connectFor): rolled back if `body` throws; a connection lost meanwhile is dropped.
 */
async function onTransactionClient<T>(pool: Pool, opening: string | undefined, body: (client: PoolClient) => Promise<T>): Promise<T> {
  const client = await connectFor(pool, opening);
  const untrace = traceStatements(client);
  // A connection lost while checked out (a Postgres restart or failover) emits 'error' on
  // the client, where the pool no longer listens: unhandled, it would crash the process.
  // The query in flight rejects anyway; the broken client is destroyed, not reused.
  let lost: Error | undefined;
  const onLost = (err: Error) => {
    lost = err;
  };
  client.on("error", onLost);
  transactionClients.add(client);
  try {
    return await body(client);
  } catch (err) {
    if (endedSession(err)) lost ??= err as Error;
    // Committed by commitWith already: there is nothing to roll back.
    if (!lost && !committedEarly.has(client)) await client.query("ROLLBACK").catch(() => undefined);
    throw err;
  } finally {
    transactionClients.delete(client);
    committedEarly.delete(client);
    beginOwed.delete(client);
    commitOwed.delete(client);
    untrace();
    client.removeListener("error", onLost);
    client.release(lost);
  }
}

/** Quotes a schema or table name that comes from code, never from users. */
export function ident(name: string): string {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(name)) throw new Error(`not a safe SQL identifier: ${name}`);
  return `"${name}"`;
}

export interface Migration {
  version: string;
  sql: string;
  checksum: string;
}

/**
 * A migration file whose first line is this runs outside a transaction, each statement on its own:
 * what PostgreSQL refuses inside one (CREATE INDEX CONCURRENTLY, which builds an index on a live
 * table without holding its writes). Its statements end with `;` at the end of a line (no function
 * bodies), and the file must be safe to run again from its start: a failure part way leaves the
 * statements before it done and the file unrecorded (e.g. an interrupted concurrent build leaves an
 * invalid index, so such a file drops its index IF EXISTS before building it).
 */
export const OUTSIDE_TRANSACTION = "-- migrate: outside a transaction";

/** The statements of a file run outside a transaction, one at a time. */
function statementsOf(sql: string): string[] {
  return sql.split(/;[ \t]*$/m).map((s) => s.trim()).filter((s) => s.replace(/^--.*$/gm, "").trim() !== "");
}

/**
 * How long a file run in a transaction waits for a table's lock before it gives up. Its DDL queued
 * behind a long transaction holds every later reader and writer of the table behind it
 * (PostgreSQL's lock queue), stalling the live service for as long as it waits; giving up and
 * trying again stalls nobody. So each wait is short, and the tries many: a table every tip writes
 * (an outbox: runtime migration 0006 takes its ACCESS EXCLUSIVE lock) stalls at most a second a try.
 * A file may set its own (SET LOCAL lock_timeout). Files outside a transaction get none: their
 * concurrent builds block no writer, and wait out older transactions by design.
 */
const MIGRATION_LOCK_TIMEOUT_MS = 1_000;

/**
 * How often a file that gave up on a lock is tried, and the pause before the next try (doubling):
 * with the defaults a start gives up after ~20 s (5 waits of 1 s, pauses of 1, 2, 4 and 8 s), and
 * the orchestrator's restart tries again.
 */
const MIGRATION_LOCK_TRIES = 5;
const MIGRATION_LOCK_PAUSE_MS = 1_000;

export interface MigrateOptions {
  lockTimeoutMs?: number;
  lockPauseMs?: number;
  /** Tries of a file that gives up on a lock (default MIGRATION_LOCK_TRIES). */
  lockTries?: number;
}

/** Runs one file's SQL: in a transaction with its record, or (OUTSIDE_TRANSACTION) statement by statement, then its record. */
async function applyMigration(client: pg.PoolClient, s: string, m: Migration, lockTimeoutMs: number): Promise<void> {
  const record = () => client.query(`INSERT INTO ${s}.schema_migrations (version, checksum) VALUES ($1, $2)`, [m.version, m.checksum]);
  if (m.sql.startsWith(OUTSIDE_TRANSACTION)) {
    await client.query(`SET search_path TO ${s}, public`);
    try {
      for (const statement of statementsOf(m.sql)) await client.query(statement);
    } finally {
      await client.query("RESET search_path");
    }
    await record();
    return;
  }
  await client.query("BEGIN");
  try {
    await client.query(`SET LOCAL search_path TO ${s}, public`);
    await client.query(`SET LOCAL lock_timeout = ${Math.trunc(lockTimeoutMs)}`);
    await client.query(m.sql);
    await record();
    await client.query("COMMIT");
  } catch (err) {
    await client.query("ROLLBACK").catch(() => undefined);
    throw err;
  }
}

async function readMigrations(dir: string, prefix: string): Promise<Migration[]> {
  const names = (await readdir(dir)).filter((n) => /^\d{4}_[a-z0-9_]+\.sql$/.test(n)).sort();
  return Promise.all(
    names.map(async (name) => {
      const sql = await readFile(path.join(dir, name), "utf8");
      return { version: `${prefix}${name.replace(/\.sql$/, "")}`, sql, checksum: createHash("sha256").update(sql).digest("hex") };
    }),
  );
}

/**
 * How long a replica that finds the migration lock taken waits before asking again. It asks
 * (pg_try_advisory_lock) rather than waiting in pg_advisory_lock: a statement waiting there holds
 * a snapshot, and the holder's CREATE INDEX CONCURRENTLY (OUTSIDE_TRANSACTION) waits for every
 * older snapshot to end, so each would wait on the other until PostgreSQL's deadlock check failed
 * one of the two starts. Short beside a migration; one query per interval per waiting replica.
 */
const MIGRATE_LOCK_RETRY_MS = 100;

/**
 * A start waiting on another session's migrations says so once it has waited this long (a brief
 * wait, two services starting together, is no news), then once a minute.
 */
const MIGRATE_LOCK_QUIET_MS = 5_000;
const MIGRATE_LOCK_LOG_MS = 60_000;

/** Takes the session's advisory lock `key`, holding no snapshot while another session has it. */
async function lockMigrations(client: pg.PoolClient, key: string, schema: string, logger?: Logger): Promise<void> {
  const since = Date.now();
  let loggedAt = since - MIGRATE_LOCK_LOG_MS + MIGRATE_LOCK_QUIET_MS;
  while (!(await client.query<{ locked: boolean }>("SELECT pg_try_advisory_lock(hashtext($1)) AS locked", [key])).rows[0].locked) {
    if (Date.now() - loggedAt >= MIGRATE_LOCK_LOG_MS) {
      loggedAt = Date.now();
      logger?.warn({ schema, waitedMs: loggedAt - since }, `waiting for another session's migrations of ${schema} to end (its advisory lock ${key})`);
    }
    await new Promise((resolve) => setTimeout(resolve, MIGRATE_LOCK_RETRY_MS));
  }
}

/** A file in a transaction that gave up on a lock (55P03) rolled back whole, so it is tried again from its start. */
async function applyWithLockRetries(client: pg.PoolClient, s: string, m: Migration, options: MigrateOptions, logger?: Logger): Promise<void> {
  let pause = options.lockPauseMs ?? MIGRATION_LOCK_PAUSE_MS;
  for (let attempt = 1; ; attempt++) {
    try {
      return await applyMigration(client, s, m, options.lockTimeoutMs ?? MIGRATION_LOCK_TIMEOUT_MS);
    } catch (err) {
      const gaveUpOnLock = (err as { code?: string }).code === "55P03" && !m.sql.startsWith(OUTSIDE_TRANSACTION);
      if (!gaveUpOnLock || attempt >= (options.lockTries ?? MIGRATION_LOCK_TRIES)) throw err;
      logger?.warn({ version: m.version, attempt }, "migration gave up waiting for a lock; trying again");
      await new Promise((resolve) => setTimeout(resolve, pause));
      pause *= 2;
    }
  }
}

const RUNTIME_MIGRATIONS = fileURLToPath(new URL("../migrations", import.meta.url));

/** The files migrate() runs for a service's migrations folder, in order: the runtime's own first. */
export async function migrationsToRun(dir: string | undefined): Promise<Migration[]> {
  return [...(await readMigrations(RUNTIME_MIGRATIONS, "runtime/")), ...(dir ? await readMigrations(dir, "") : [])];
}

/**
 * Forward-only migrations into one service's schema: the runtime's own tables
 * (outbox, inbox) first, then the service's files NNNN_name.sql in order. Each
 * file runs once, in a transaction (or outside one: OUTSIDE_TRANSACTION), with
 * search_path set to the schema; in a transaction it gives up on a table's lock
 * after lockTimeoutMs and is tried again (MIGRATION_LOCK_TRIES). An
 * applied file that was edited afterwards stops the start: history is not
 * rewritten, a new file is added instead. Replicas starting together
 * serialise on an advisory lock.
 */
export async function migrate(pool: Pool, schema: string, dir: string | undefined, logger?: Logger, options: MigrateOptions = {}): Promise<string[]> {
  const migrations = await migrationsToRun(dir);
  const s = ident(schema);
  const client = await pool.connect();
  const applied: string[] = [];
  try {
    await lockMigrations(client, `ttip.migrate.${schema}`, schema, logger);
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${s}`);
    await client.query(
      `CREATE TABLE IF NOT EXISTS ${s}.schema_migrations (
         version text PRIMARY KEY,
         checksum text NOT NULL,
         applied_at timestamptz NOT NULL DEFAULT now())`,
    );
    const done = new Map<string, string>(
      (await client.query(`SELECT version, checksum FROM ${s}.schema_migrations`)).rows.map((r) => [r.version, r.checksum]),
    );
    for (const m of migrations) {
      const previous = done.get(m.version);
      if (previous !== undefined) {
        if (previous !== m.checksum) {
          throw new Error(`migration ${schema}/${m.version} was changed after it was applied; add a new migration instead`);
        }
        continue;
      }
      try {
        await applyWithLockRetries(client, s, m, options, logger);
      } catch (err) {
        throw new Error(`migration ${schema}/${m.version} failed: ${(err as Error).message}`);
      }
      applied.push(m.version);
      logger?.info({ schema, version: m.version }, "migration applied");
    }
  } finally {
    await client.query("SELECT pg_advisory_unlock(hashtext($1))", [`ttip.migrate.${schema}`]).catch(() => undefined);
    client.release();
  }
  return applied;
}
