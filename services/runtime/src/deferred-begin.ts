/// <reference path="./pg-utils.d.ts" />
import pg from "pg";
import pgUtils from "pg/lib/utils.js";
import { BoundedMap } from "./bounded-map.js";

/**
 * A transaction's BEGIN without a round trip of its own. On these machines a
 * round trip costs the platform about 100 us of CPU (a write, a read, parsing,
 * promise hops), and BEGIN alone was one in every transaction. Here BEGIN waits
 * for the transaction's first statement and goes in the same write, before its
 * Sync: Parse/Bind/Execute of BEGIN, then the statement's own messages. An
 * explicit BEGIN inside a pipeline opens a transaction block that outlives the
 * Sync (PostgreSQL's protocol, "Pipelining"); an error in the statement leaves
 * the block aborted for the caller's ROLLBACK, as when BEGIN went alone.
 */

/** The socket pg writes to, the messages it sends and the prepared-statement books it keeps, per connection. */
interface ProtocolConnection {
  stream: { writable: boolean; write(chunk: Uint8Array): boolean };
  query(text: string): void;
  bind(config: unknown): void;
  parse(config: { text: string; name: string; types?: unknown }): void;
  describe(config: { type: string; name: string }): void;
  sync(): void;
  parsedStatements: Record<string, string | undefined>;
  submittedNamedStatements: Record<string, string | undefined>;
}

/** A protocol message: its type byte, its length (itself included) and its body. */
function message(type: string, body: number[]): Buffer {
  const out = Buffer.alloc(5 + body.length);
  out.write(type, 0, "latin1");
  out.writeInt32BE(4 + body.length, 1);
  out.set(body, 5);
  return out;
}

/**
 * Parse (unnamed statement, "BEGIN" or "COMMIT", no parameter types), Bind (unnamed portal,
 * no parameters, no result formats), Execute (all rows): built once, written as
 * one chunk.
 */
function unnamedStatementMessages(text: string): Buffer {
  return Buffer.concat([
    message("P", [0, ...Buffer.from(`${text}\0`, "latin1"), 0, 0]),
    message("B", [0, 0, 0, 0, 0, 0, 0, 0]),
    message("E", [0, 0, 0, 0, 0]),
  ]);
}
const BEGIN_MESSAGES = unnamedStatementMessages("BEGIN");
const COMMIT_MESSAGES = unnamedStatementMessages("COMMIT");

type QueryCallback = (err: Error | null, result?: unknown) => void;

/** The parts of pg's Query (lib/query.js) a statement behind BEGIN changes. */
interface PgQuery {
  text: string;
  callback?: QueryCallback;
  name?: string;
  values?: unknown[];
  binary?: boolean;
  rows?: number;
  types?: unknown;
  requiresPreparation(): boolean;
  /** The statement is prepared on the connection, or its Parse is on the way. */
  hasBeenParsed(connection: ProtocolConnection): boolean;
  submit(connection: ProtocolConnection): Error | null;
  prepare(connection: ProtocolConnection): void;
  handleCommandComplete(message: unknown, connection: ProtocolConnection): void;
  handleError(err: Error, connection: ProtocolConnection): void;
  /** Writes Execute, then Sync (the statement's last messages): after a successful Bind only. */
  _getRows(connection: ProtocolConnection & { execute(config: unknown): void; sync(): void }, rows?: number): void;
  portal?: string;
  handleRowDescription(message: { fields: FieldDescription[] }): void;
  _checkForMultirow(): void;
  _accumulateRows: boolean;
  listeners(event: string): unknown[];
  /** pg's Result (lib/result.js): the answer's fields, their parsers and the empty row each row is copied from. */
  _result: { fields: FieldDescription[]; _parsers?: unknown[]; _prebuiltEmptyResultObject: object | null; _types?: TypeParsers };
}

/** A client's type parsers (pg's TypeOverrides), or pg's own. */
interface TypeParsers {
  getTypeParser(oid: number, format: string): unknown;
}

/** A column of a RowDescription, as pg-protocol parses it. */
interface FieldDescription {
  name: string;
  dataTypeID: number;
  format: string;
}
const PgQuery = pg.Query as unknown as new (config: unknown, values?: unknown, callback?: unknown) => PgQuery;

/**
 * A named prepared statement's config (db.ts names every parameterised
 * statement). pg copies a config object into each Query it makes
 * (getOwnPropertyDescriptors, then defineProperties: ~1 us, several in a busy
 * heap); a Query made from the text and values, then named, is the same Query
 * without the copy.
 */
export class NamedStatement {
  constructor(
    readonly name: string,
    readonly text: string,
    readonly values: unknown[],
  ) {}
}

/** pg.Query's constructor arguments for client.query's, a NamedStatement as its text and values (its name set after). */
function queryArguments(config: unknown, values: unknown, callback: unknown): [unknown, unknown, unknown] {
  if (!(config instanceof NamedStatement)) return [config, values, callback];
  return [config.text, config.values, typeof values === "function" ? values : callback];
}

/** A named statement's columns, the empty row pg's Result built for them (a copy of it starts each row), and its row parser. */
interface EmptyRow {
  fields: FieldDescription[];
  row: object;
  /** rowParser's for these columns (null: pg's own parseRow). */
  parseRow: RowParser | null;
}

/** pg's Result.parseRow's equal: called on the result, `values` a DataRow's texts (null for NULL). */
type RowParser = (this: { _parsers?: unknown[] }, values: (string | null)[]) => object;

/** pg's own row parser, for what rowParser leaves to it. */
const pgParseRow = (pg as unknown as { Result: { prototype: { parseRow: RowParser } } }).Result?.prototype.parseRow;

/**
 * A row parser for these columns, made once per statement: an object literal with the columns'
 * names written in, each value parsed by its column's parser, instead of pg's copy of the empty
 * row and a store by a computed name per column (pg's parseRow: the largest self time of the
 * database client in tip-e2e's profile). The same row: the names in the columns' order, NULL as
 * null, each value through the result's own parsers. Null (pg's own parser) for a column in
 * binary, a repeated name, or "__proto__" (a literal would set the prototype where pg sets a
 * property); a row of another length goes to pg's.
 */
export function rowParser(fields: FieldDescription[]): RowParser | null {
  const names = fields.map((f) => f.name);
  if (!pgParseRow || fields.some((f) => f.format === "binary") || new Set(names).size !== names.length || names.includes("__proto__")) return null;
  const entries = names.map((name, i) => `${JSON.stringify(name)}: values[${i}] === null ? null : parsers[${i}](values[${i}])`);
  // The names are JSON string literals (escaped), the only text of the generated code not written here.
  const make = new Function(
    "fallback",
    `return function parseRow(values) {
       if (values.length !== ${names.length}) return fallback.call(this, values);
       const parsers = this._parsers;
       return { ${entries.join(", ")} };
     };`,
  ) as (fallback: RowParser) => RowParser;
  return make(pgParseRow);
}
const MAX_EMPTY_ROWS = 5_000;
const emptyRows = new BoundedMap<string, EmptyRow>(MAX_EMPTY_ROWS);

function sameNames(a: FieldDescription[], b: FieldDescription[]): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i].name !== b[i].name) return false;
  return true;
}

/**
 * The columns each connection's named statements answer with, by statement name, as the
 * connection's first Describe of each told them (empty: no rows, NoData). PostgreSQL fixes a
 * prepared statement's result type when it parses it: a migration that would change it fails
 * every later run with 0A000 instead ("cached plan must not change result type"), and the pool
 * drops that connection (db-answers.ts). So for as long as a connection has the statement
 * prepared, the answer to Describe is the one it gave first, and it is not asked again.
 */
const describedColumns = new WeakMap<object, Map<string, FieldDescription[]>>();
/** Named statements described per connection: db.ts prepares at most 500 on one. */
const MAX_DESCRIBED_PER_CONNECTION = 1_000;
const NO_COLUMNS: FieldDescription[] = [];

/** The same names, types and formats, in the same order. */
function sameColumns(a: FieldDescription[], b: FieldDescription[]): boolean {
  if (!sameNames(a, b)) return false;
  for (let i = 0; i < a.length; i++) if (a[i].dataTypeID !== b[i].dataTypeID || a[i].format !== b[i].format) return false;
  return true;
}

/**
 * pg's Query, made without copying a NamedStatement's config, and keeping a
 * named statement's empty row: on every answer pg's Result (addFields) builds
 * it in a null-prototype object, one property at a time, then copies it (~4 us
 * for 30 columns), the same each time for one prepared statement. It is taken
 * again when the columns' names are the same; the parsers are looked up on
 * every answer, as pg does (a client's own type parsers, one set later).
 * A statement the connection has prepared and described before is sent without
 * Describe (see describedColumns): pg asks for the row description on every
 * run, and parses it, for an answer that cannot change.
 */
class StatementQuery extends PgQuery {
  declare private emptyRowKey: string | undefined;
  /** The connection whose columns for this statement the answer to our Describe tells (unset: no Describe sent, or not to be kept). */
  declare private describing: ProtocolConnection | undefined;

  constructor(config: unknown, values: unknown, callback: unknown) {
    super(...queryArguments(config, values, callback));
    if (config instanceof NamedStatement) {
      (this as { name?: string }).name = config.name;
      this.emptyRowKey = config.name;
    }
  }

  prepare(connection: ProtocolConnection): void {
    const name = this.emptyRowKey;
    // Read in pages or in binary, a statement goes as pg sends it: its rows' shape is its own.
    if (name === undefined || this.rows || this.binary) return super.prepare(connection);
    const known = connection.parsedStatements[name] === this.text ? describedColumns.get(connection)?.get(name) : undefined;
    // pg's prepare (lib/query.js), but for a value Bind cannot encode (see bindFailed), and without
    // Describe where the connection was told the columns before.
    if (!this.hasBeenParsed(connection)) {
      connection.parse({ text: this.text, name, types: this.types });
      connection.submittedNamedStatements[name] = this.text;
    }
    try {
      connection.bind({ portal: this.portal, statement: name, values: this.values, binary: this.binary, valueMapper: pgUtils.prepareValue });
    } catch (err) {
      return this.bindFailed(err as Error, connection);
    }
    if (!known) {
      // Parsed now (or again), or not yet described: described, and the answer kept.
      this.describing = connection;
      connection.describe({ type: "P", name: this.portal || "" });
    } else if (known.length) this.handleRowDescription({ fields: known });
    this._getRows(connection as ProtocolConnection & { execute(config: unknown): void }, this.rows);
  }

  /**
   * A value Bind could not encode (a JSON value with a cycle or a bigint in it): nothing of the
   * run was written past the Parse, so only Sync follows. pg closes the statement here, yet keeps
   * it booked as prepared (its ParseComplete books it after the Close is written): every later
   * run of it on the connection would then fail (26000, "prepared statement does not exist").
   */
  private bindFailed(err: Error, connection: ProtocolConnection): void {
    connection.sync();
    this.handleError(err, connection);
  }

  handleRowDescription(message: { fields: FieldDescription[] }): void {
    if (this.describing) this.keepColumns(message.fields);
    const fields = message.fields;
    const known = this.emptyRowKey === undefined ? undefined : emptyRows.get(this.emptyRowKey);
    if (!known || !sameNames(known.fields, fields)) {
      super.handleRowDescription(message);
      const row = this._result._prebuiltEmptyResultObject;
      if (this.emptyRowKey !== undefined && fields.length && row) {
        const parseRow = rowParser(fields);
        emptyRows.set(this.emptyRowKey, { fields, row, parseRow });
        this.useRowParser(parseRow, fields);
      }
      return;
    }
    // pg's handleRowDescription and Result.addFields (lib/query.js, lib/result.js), the empty row kept.
    this._checkForMultirow();
    const result = this._result;
    const types = result._types ?? (pg.types as unknown as TypeParsers);
    result.fields = fields;
    const parsers = new Array<unknown>(fields.length);
    for (let i = 0; i < fields.length; i++) parsers[i] = types.getTypeParser(fields[i].dataTypeID, fields[i].format || "text");
    result._parsers = parsers;
    result._prebuiltEmptyResultObject = known.row;
    this._accumulateRows = Boolean(this.callback) || !this.listeners("row").length;
    this.useRowParser(known.parseRow, fields);
  }

  handleCommandComplete(message: unknown, connection: ProtocolConnection): void {
    // Completed with no row description before it: the statement has no rows (NoData).
    if (this.describing) this.keepColumns(NO_COLUMNS);
    super.handleCommandComplete(message, connection);
  }

  /** Keeps the columns our Describe was answered with, for the connection's later runs of the statement. */
  private keepColumns(fields: FieldDescription[]): void {
    const connection = this.describing!;
    this.describing = undefined;
    const name = this.emptyRowKey!;
    // The columns another connection was told, when the same: the next answers' sameNames is then one comparison.
    const shared = emptyRows.get(name)?.fields;
    if (shared && sameColumns(shared, fields)) fields = shared;
    let byName = describedColumns.get(connection);
    if (!byName) describedColumns.set(connection, (byName = new Map()));
    if (byName.has(name) || byName.size < MAX_DESCRIBED_PER_CONNECTION) byName.set(name, fields);
  }

  /**
   * The result parses its rows with `parseRow` (rowParser's for the statement's columns), unless it
   * keeps them as arrays (rowMode) or a column of this answer comes in binary (the same names
   * asked with another format).
   */
  private useRowParser(parseRow: RowParser | null, fields: FieldDescription[]): void {
    const result = this._result as PgQuery["_result"] & { rowAsArray?: boolean; parseRow?: RowParser };
    if (!parseRow || result.rowAsArray) return;
    for (let i = 0; i < fields.length; i++) if (fields[i].format === "binary") return;
    result.parseRow = parseRow;
  }
}

/** client.query's arguments through `query`, a NamedStatement made into its Query here. */
export function sendStatement(client: pg.ClientBase, query: (...args: unknown[]) => unknown, args: unknown[]): unknown {
  const [config, values, callback] = args;
  if (!(config instanceof NamedStatement)) return query.apply(client, args);
  return submitted(client, query, new StatementQuery(config, values, callback));
}

/**
 * One statement with BEGIN written in front of it. Its answer is the
 * statement's: BEGIN's CommandComplete is not taken as a result.
 */
class StatementAfterBegin extends StatementQuery {
  // `declare`: set by pg's constructor (name) or later, never reset by a field initialiser.
  declare private stage: undefined | "begin sent" | "begun";
  declare private statementName: string | undefined;
  declare private unsent: () => void;

  constructor(config: unknown, values: unknown, callback: unknown, unsent: () => void) {
    super(config, values, callback);
    this.unsent = unsent;
  }

  /**
   * BEGIN's ParseComplete comes first, and pg's client files every
   * ParseComplete under the active query's name: it would book the statement
   * as prepared before its own Parse succeeded. Until BEGIN has completed, the
   * statement has no name to file it under.
   */
  get name(): string | undefined {
    return this.stage === "begin sent" ? undefined : this.statementName;
  }

  set name(value: string | undefined) {
    this.statementName = value;
  }

  submit(connection: ProtocolConnection): Error | null {
    if (!this.requiresPreparation()) {
      // No parameters: the simple protocol carries both statements in one message.
      connection.query(`BEGIN; ${this.text}`);
      this.stage = "begin sent";
      return null;
    }
    // pg's submit corks the socket around prepare(): one write for everything.
    const refused = super.submit(connection);
    if (refused) this.unsent();
    return refused;
  }

  prepare(connection: ProtocolConnection): void {
    if (connection.stream.writable) connection.stream.write(BEGIN_MESSAGES);
    super.prepare(connection);
    this.stage = "begin sent";
  }

  handleCommandComplete(message: unknown, connection: ProtocolConnection): void {
    if (this.stage === "begin sent") {
      this.stage = "begun";
      return;
    }
    super.handleCommandComplete(message, connection);
  }

  handleError(err: Error, connection: ProtocolConnection): void {
    if (this.stage === "begin sent") {
      // BEGIN did not run: it failed (the server skipped the statement's Parse, which pg could not
      // unbook by name), or the simple query was refused whole (a syntax error runs none of its
      // statements). BEGIN is still owed: what the caller sends next must not run outside it.
      if (this.statementName) delete connection.submittedNamedStatements[this.statementName];
      this.unsent();
    }
    super.handleError(err, connection);
  }
}

/** What a deferred BEGIN, or a COMMIT or ROLLBACK of a transaction that never began, answers. */
export function nothingSent(command: string): pg.QueryResult {
  return { command, rowCount: null, oid: 0, rows: [], fields: [] };
}

/**
 * Sends `args` (client.query's arguments) through `query` with BEGIN in
 * front. A COMMIT or ROLLBACK first ends a transaction that never began:
 * nothing is sent. `unsent` runs if the statement was refused before anything
 * was written, or BEGIN did not run (BEGIN is still owed).
 */
export function sendWithBegin(client: pg.ClientBase, query: (...args: unknown[]) => unknown, args: unknown[], unsent: () => void): unknown {
  const [config, values, callback] = args;
  const text = typeof config === "string" ? config : (config as { text?: unknown } | null)?.text;
  if (text === "COMMIT" || text === "ROLLBACK") {
    const answer = [values, callback].find((f): f is QueryCallback => typeof f === "function");
    if (!answer) return Promise.resolve(nothingSent(text));
    return void process.nextTick(() => answer(null, nothingSent(text)));
  }
  if (typeof text !== "string" || typeof (config as { submit?: unknown }).submit === "function") {
    // A query of its own kind (a cursor) writes its own messages: BEGIN goes ahead of it alone
    // (the client sends in order, and a failed BEGIN fails the statement too: the connection is gone).
    (query.call(client, "BEGIN") as Promise<unknown>).catch(() => undefined);
    return query.apply(client, args);
  }
  return submitted(client, query, new StatementAfterBegin(config, values, callback, unsent));
}

/**
 * A transaction's last statement with COMMIT behind it, in the same write:
 * the statement's Parse/Bind/Describe/Execute, COMMIT's Parse/Bind/Execute,
 * then Sync. One round trip instead of two, as a simple query carries
 * `statement; COMMIT` but with a prepared statement. A failing statement
 * skips COMMIT (the server ignores what follows an error until Sync): the
 * block is left aborted for the caller's ROLLBACK. A failing COMMIT fails the
 * statement's answer.
 */
class StatementThenCommit extends StatementQuery {
  declare private completed: number | undefined;

  submit(connection: ProtocolConnection): Error | null {
    if (!this.requiresPreparation()) {
      // No parameters: the simple protocol carries both statements in one message. The line
      // break ends a `--` comment at the end of the text, which would otherwise swallow COMMIT.
      connection.query(`${this.text}\n; COMMIT`);
      return null;
    }
    return super.submit(connection);
  }

  _getRows(connection: ProtocolConnection & { execute(config: unknown): void; sync(): void }): void {
    // Reached only once Bind was written (a value that cannot be bound closes and syncs
    // without it): COMMIT never follows a statement that was not sent.
    connection.execute({ portal: this.portal });
    if (connection.stream.writable) connection.stream.write(COMMIT_MESSAGES);
    connection.sync();
  }

  handleCommandComplete(message: unknown, connection: ProtocolConnection): void {
    this.completed = (this.completed ?? 0) + 1;
    // The second is COMMIT's: not a result.
    if (this.completed === 1) super.handleCommandComplete(message, connection);
  }
}

/** Sends `args` (client.query's arguments) through `query` with COMMIT behind it, answering the statement's result. */
export function sendWithCommit(client: pg.ClientBase, query: (...args: unknown[]) => unknown, args: unknown[]): unknown {
  const [config, values, callback] = args;
  if (typeof config !== "string" && (typeof config !== "object" || config === null || typeof (config as { submit?: unknown }).submit === "function")) {
    throw new Error("sendWithCommit takes a statement's text or config, not a query of its own kind");
  }
  // A statement read in pages (`rows`) is not over when its first page comes: COMMIT cannot follow it.
  if (typeof config === "object" && (config as { rows?: unknown }).rows) throw new Error("sendWithCommit takes a statement read whole, not in pages (rows)");
  return submitted(client, query, new StatementThenCommit(config, values, callback));
}

/** Sends `statement` through `query`: its callback answers, or (none given) the promise returned. */
function submitted(client: pg.ClientBase, query: (...args: unknown[]) => unknown, statement: PgQuery): unknown {
  if (statement.callback) return void query.call(client, statement);
  return new Promise((resolve, reject) => {
    statement.callback = (err, result) => (err ? reject(err) : resolve(result));
    query.call(client, statement);
  });
}
