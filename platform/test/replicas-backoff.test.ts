// A primary whose replica dies while the database refuses connections: the primary stays up and
// replaces it; each replacement fails fast, saying why in its own log line; the primary waits twice
// as long before each next one (its log says how long), and one serves again once the database does.
import assert from "node:assert/strict";
import http from "node:http";
import { readFileSync } from "node:fs";
import { after, before, test } from "node:test";
import pg from "pg";
import { startDarajaSimulator, type DarajaSimulator } from "@ttip/payment/testing";
import { createTestDatabase, PlatformProcess, testEnv, type TestDatabase } from "@ttip/runtime/testing";
import { PLATFORM_MAIN } from "../src/entry.js";
import { REPLICAS_SERVING } from "../src/replicas.js";
import { replicasEnv } from "./cluster-harness.js";

let db: TestDatabase;
let sim: DarajaSimulator;
let platform: PlatformProcess;
/** All the platform wrote (its `logs` keep only the end). */
let output = "";

/** Waits (polling) for `check`; fails, with the platform's log, if the primary exits meanwhile or after `limitMs`. */
async function until(what: string, check: () => boolean | Promise<boolean>, limitMs = 600_000): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!(await check())) {
    assert.ok(platform.running, `the primary exited while waiting for ${what}:\n${platform.logs}`);
    assert.ok(Date.now() < deadline, `${what}: not within ${limitMs / 1_000} s:\n${platform.logs}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

before(async () => {
  db = await createTestDatabase();
  sim = await startDarajaSimulator({ callbackDelayMs: 50 });
  platform = await PlatformProcess.create(PLATFORM_MAIN, "replicas", await replicasEnv(sim, db.url, {
    REPLICAS: "1",
    DATABASE_POOL_MAX: "4",
  }), { onOutput: (text) => (output += text) });
  await platform.start(300_000);
  await until("the replica serving", () => output.includes(REPLICAS_SERVING));
});
after(async () => {
  await platform?.stop();
  await sim?.close();
  await allowConnections(true).catch(() => undefined);
  await db?.drop();
});

/** The test database takes new connections (its open ones stay either way), or refuses them. */
async function allowConnections(allow: boolean): Promise<void> {
  const admin = new pg.Client({ connectionString: testEnv().databaseUrl });
  await admin.connect();
  try {
    await admin.query(`ALTER DATABASE ${new URL(db.url).pathname.slice(1)} WITH ALLOW_CONNECTIONS ${allow}`);
  } finally {
    await admin.end();
  }
}

/** The replicas: the primary's child processes node:cluster forked (its argv), not a loader's helper. */
const replicaPids = () =>
  readFileSync(`/proc/${platform.pid}/task/${platform.pid}/children`, "utf8")
    .trim()
    .split(/\s+/)
    .filter(Boolean)
    .map(Number)
    .filter((pid) => readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").includes("replicas"));

type LogLine = { role?: string; msg: string; time: string; delayMs?: number; served?: boolean };
/** The JSON lines logged so far (not one still being written, nor one a write to stderr came into). */
const logLines = (): LogLine[] =>
  output
    .split("\n")
    .slice(0, -1)
    .flatMap((l) => {
      try {
        return l.startsWith("{") ? [JSON.parse(l) as LogLine] : [];
      } catch {
        return [];
      }
    });
/** The primary's "a replica exited" lines. */
const exits = () => logLines().filter((l) => l.role === "replicas" && l.msg.includes("a replica exited"));
/** Each replica's first line, by role (replica-1, replica-2...): one per replica forked. */
const firstLines = () => {
  const first = new Map<string, LogLine>();
  for (const l of logLines()) if (l.role?.startsWith("replica-") && !first.has(l.role)) first.set(l.role, l);
  return first;
};

/** /healthz through the shared port answers 200. */
const healthy = () =>
  new Promise<boolean>((resolve) => {
    http
      .get({ host: "127.0.0.1", port: platform.port, path: "/healthz", agent: false, timeout: 10_000 }, (res) => (res.resume(), resolve(res.statusCode === 200)))
      .on("timeout", function (this: http.ClientRequest) {
        this.destroy();
      })
      .on("error", () => resolve(false));
  });

test("the only replica killed while the database refuses connections: replaced, each replacement fails fast saying why, the next after 2, then 4 s; one serves again once the database does", async () => {
  await allowConnections(false);
  const [replica] = replicaPids();
  assert.ok(replica, "the replica's pid");
  process.kill(replica, "SIGKILL");
  // The replica that served, then two replacements that could not start (each a whole start of the platform's code: a minute under load).
  await until("the primary replacing its replica three times", () => exits().length >= 3);
  const [died, ...failed] = exits().slice(0, 3);
  assert.equal(died.served, true);
  assert.match(died.msg, /a replica exited; starting another in 1 s/, died.msg);
  assert.deepEqual(
    failed.map((e) => [e.served, e.delayMs]),
    [
      [false, 2_000],
      [false, 4_000],
    ],
    `each replacement that exited before serving waits twice as long:\n${failed.map((e) => e.msg).join("\n")}`,
  );
  // Each replacement said why, in its own line, and exited (that is the exit the primary logged); the next one may have by now too.
  const refusals = logLines().filter((l) => l.role !== "replicas" && /could not start: .*not currently accepting connections/.test(l.msg));
  assert.deepEqual(
    refusals.slice(0, 2).map((l) => l.role),
    ["replica-2", "replica-3"],
    `each replacement's own line saying why:\n${platform.logs}`,
  );
  // Forked no sooner than the primary said: each replacement's first line came at least the wait after the exit before it.
  const first = firstLines();
  for (const [i, exit] of [died, ...failed.slice(0, 1)].entries()) {
    const next = first.get(`replica-${i + 2}`);
    assert.ok(next, `replica-${i + 2} logged`);
    const waited = Date.parse(next.time) - Date.parse(exit.time);
    assert.ok(waited >= exit.delayMs!, `replica-${i + 2} started ${waited} ms after the exit before it, not after ${exit.delayMs} ms`);
  }

  await allowConnections(true);
  await until("a replacement serving again", healthy);
});
