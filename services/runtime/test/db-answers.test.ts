// PostgreSQL's error answers told apart by their SQLSTATE, not by their severity, which PostgreSQL
// translates under lc_messages: credits.ts reads a refused recording as refused, and the pool
// drops a connection whose session ended, on a server whose messages are in any language.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { endsSession, refusedStatement } from "../src/db-answers.js";
import { createTestDatabase, type TestDatabase } from "../src/testing/index.js";

/** The severities PostgreSQL sends under lc_messages = 'de_DE.UTF-8' (its de.po): ERROR, FATAL. */
const GERMAN = { ERROR: "FEHLER", FATAL: "SCHWERWIEGEND" } as const;

/** `err` with the severity a German server sends for it: what pg's DatabaseError then carries. */
const inGerman = (err: Error & { severity?: string }): Error => Object.assign(Object.create(Object.getPrototypeOf(err) as object) as Error, err, {
  severity: GERMAN[err.severity as keyof typeof GERMAN],
});

describe("PostgreSQL's error answers: refused statement or ended session, in any language", () => {
  let db: TestDatabase;
  let refused: Error & { severity?: string; code?: string };
  let ended: Error & { severity?: string; code?: string };
  before(async () => {
    db = await createTestDatabase();
    refused = await db.pool.query("SELECT 1 / 0").then(() => assert.fail("divided by zero"), (err: Error) => err);
    const victim = await db.pool.connect();
    victim.on("error", () => undefined);
    try {
      const pid = (await victim.query<{ pid: number }>("SELECT pg_backend_pid() AS pid")).rows[0].pid;
      // Waits until terminated: its answer is the FATAL that ends its session (57P01).
      const waiting = victim.query("SELECT pg_sleep(600)").then(() => assert.fail("not terminated"), (err: Error) => err);
      // Until the sleep has started, terminating would end the session between statements, with no answer to the query.
      while (!(await db.pool.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event = 'PgSleep'", [pid])).rowCount);
      await db.pool.query("SELECT pg_terminate_backend($1)", [pid]);
      ended = await waiting;
    } finally {
      victim.release(true);
    }
  });
  after(() => db.drop());

  test("the answers as an English server sends them", () => {
    assert.deepEqual([refused.severity, refused.code, ended.severity, ended.code], ["ERROR", "22012", "FATAL", "57P01"]);
    assert.deepEqual([refusedStatement(refused), endsSession(refused)], [true, false]);
    assert.deepEqual([refusedStatement(ended), endsSession(ended)], [false, true]);
  });

  test("the same answers with the severities a German server sends: told apart all the same", () => {
    const [refusedDe, endedDe] = [inGerman(refused), inGerman(ended)];
    assert.deepEqual([(refusedDe as typeof refused).severity, (endedDe as typeof ended).severity], ["FEHLER", "SCHWERWIEGEND"]);
    assert.deepEqual([refusedStatement(refusedDe), endsSession(refusedDe)], [true, false]);
    assert.deepEqual([refusedStatement(endedDe), endsSession(endedDe)], [false, true]);
  });

  test("a server whose messages are in German, when the harness's PostgreSQL has the locale", async (t) => {
    const client = await db.pool.connect();
    try {
      const set = await client.query("SET lc_messages = 'de_DE.UTF-8'").then(() => true, () => false);
      if (!set) return t.skip("no de_DE.UTF-8 locale on this machine: the answers above stand for it");
      const err = await client.query("SELECT 1 / 0").then(() => assert.fail("divided by zero"), (e: Error & { severity?: string }) => e);
      if (err.severity === "ERROR") return t.skip("this PostgreSQL has no German messages");
      assert.deepEqual([refusedStatement(err), endsSession(err)], [true, false]);
    } finally {
      await client.query("RESET lc_messages").catch(() => undefined);
      client.release();
    }
  });

  test("not PostgreSQL's answer (a connection lost, any other error): neither refused nor known to have ended", () => {
    for (const err of [new Error("Connection terminated unexpectedly"), "text", undefined]) {
      assert.deepEqual([refusedStatement(err), endsSession(err)], [false, false]);
    }
  });
});
