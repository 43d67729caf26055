// A primary with two replicas. One that served and dies while the other still starts is replaced.
// Replicas killed while the database refuses connections: the primary stays up and replaces them;
// each replacement fails fast, saying why once, in its own log line; the primary waits twice as long
// before each next one in the same place (its log says how long), 1 s after one that served whatever
// the other place's count, and one serves again in each place once the database does.
import assert from "node:assert/strict";
import http from "node:http";
import { readFileSync } from "node:fs";
import { after, before, test } from "node:test";
import pg from "pg";
import { startDarajaSimulator, type DarajaSimulator } from "@ttip/payment/testing";
import { createTestDatabase, PlatformProcess, testEnv, type TestDatabase } from "@ttip/runtime/testing";
import { modules } from "../src/modules.js";
import { REPLICAS_SERVING } from "../src/replicas.js";
import { builtPlatform } from "./built-platform.js";
import { replicasEnv } from "./cluster-harness.js";

/**
 * Each test waits for whole starts of the platform's code (about 1,000 modules per process), which only CPU
 * makes quicker: at load 39 on two cores this file's primary logged its first line 77 s after it was spawned,
 * finished migrating at 99 s, and its first replica logged 104 s after that and served at 232 s; the first test
 * took 256 s at load 30-37 (190-285 s at load 45 before), too close to the runner's 360 s per test. A hang still fails.
 */
const STARTS_MS = 900_000;

let db: TestDatabase;
let sim: DarajaSimulator;
let platform: PlatformProcess;
/** All the platform wrote (its `logs` keep only the end). */
let output = "";

/** Waits (polling every `everyMs`) for `check`; fails, with the platform's log, if the primary exits meanwhile or after `limitMs`. */
async function until(what: string, check: () => boolean | Promise<boolean>, limitMs = STARTS_MS, everyMs = 100): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (!(await check())) {
    assert.ok(platform.running, `the primary exited while waiting for ${what}:\n${platform.logs}`);
    assert.ok(Date.now() < deadline, `${what}: not within ${limitMs / 1_000} s:\n${platform.logs}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

// The primary and every replica it forks run the development image's compiled bundle (its replicas role): a
// start costs about a third of the CPU of one from source, and this file's primary forks replica after replica.
before(async () => {
  const building = builtPlatform();
  building.catch(() => undefined); // awaited below, once the database and simulator are assigned (after() closes them)
  // A copy of a database the platform's schemas were migrated into once per test server: the primary's migrations find them applied.
  db = await createTestDatabase({ migrated: modules });
  sim = await startDarajaSimulator({ callbackDelayMs: 50 });
  platform = await PlatformProcess.create((await building).developmentEntry, "replicas", await replicasEnv(sim, db.url, {
    REPLICAS: "2",
    DATABASE_POOL_MAX: "4",
  }), { onOutput: (text) => (output += text) });
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

/** When a process started, in clock ticks since boot (/proc/<pid>/stat's 22nd field). */
const startTicks = (pid: number) => Number(readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ")[19]);

/** The replicas, oldest first: the primary's child processes node:cluster forked (its argv), not a loader's helper. */
const replicaPids = () =>
  readFileSync(`/proc/${platform.pid}/task/${platform.pid}/children`, "utf8")
    .trim()
    .split(/\s+/)
    .filter(Boolean)
    .map(Number)
    .filter((pid) => readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").includes("replicas"))
    .sort((a, b) => startTicks(a) - startTicks(b) || a - b);

/**
 * The second replica's pid once it runs node (node:cluster's NODE_UNIQUE_ID in its environment): stopped between
 * fork and exec, it would hold the primary, whose spawn waits for the exec. A process gone between the primary's
 * list and its own files is looked for again.
 */
function secondReplica(): number | undefined {
  try {
    const second = replicaPids()[1];
    return second !== undefined && readFileSync(`/proc/${second}/environ`, "latin1").split("\0").some((v) => v.startsWith("NODE_UNIQUE_ID=")) ? second : undefined;
  } catch {
    return undefined;
  }
}

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
/** The primary's "a replacement replica serves" lines. */
const replacementsServing = () => logLines().filter((l) => l.role === "replicas" && l.msg === "a replacement replica serves").length;
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

test("a replica that served and dies while the next one still starts is replaced", { timeout: STARTS_MS }, async () => {
  // The second replica is forked once the first serves. It is held (SIGSTOP) as soon as it is seen, so it is still
  // starting when the first dies whatever this machine's speed: a start from the bundle takes about a second, while
  // start() below looks at the port every 200 ms (each look up to 1 s), which a quick machine's second replica beat.
  const starting = platform.start(STARTS_MS);
  starting.catch(() => undefined); // awaited below; until() fails first if the primary exits
  let second: number | undefined;
  await until("the second replica forked", () => (second = secondReplica()) !== undefined, STARTS_MS, 10);
  process.kill(second!, "SIGSTOP");
  try {
    await starting;
    assert.ok(!output.includes(REPLICAS_SERVING), "the second replica still starting");
    process.kill(replicaPids()[0], "SIGKILL");
    // Logged as it exits (the code before logged nothing: it ignored an exit while the start went on).
    await until("the primary replacing it", () => exits().length > 0);
  } finally {
    process.kill(second!, "SIGCONT");
  }
  assert.deepEqual(exits().map((e) => [e.served, e.delayMs]), [[true, 1_000]], "the replica that served is replaced after 1 s");
});

test("the start is over once the second replica serves; the replacement serves too", { timeout: STARTS_MS }, async () => {
  await until("every replica of the start serving", () => output.includes(REPLICAS_SERVING));
  await until("the replacement serving", () => replacementsServing() === 1);
  assert.equal(replicaPids().length, 2);
});

test("replicas killed while the database refuses connections: replaced, each replacement fails fast saying why once, the next in its place after 2, then 4 s, one that served after 1 s whatever the other's count", { timeout: STARTS_MS }, async () => {
  await allowConnections(false);
  const [older, younger] = replicaPids(); // replica-2, then replica-3 (the first test's replacement)
  const before = exits().length;
  process.kill(older, "SIGKILL");
  // The replica that served, then two replacements that could not start (each a whole start of the platform's code: a minute under load).
  await until("the primary replacing the first three times", () => exits().length >= before + 3);
  const [died, ...failed] = exits().slice(before, before + 3);
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
  // The other place's replica served: replaced after 1 s, though the first place's replacements keep failing.
  process.kill(younger, "SIGKILL");
  await until("the second replica's exit", () => exits().slice(before + 3).some((e) => e.served));
  assert.equal(exits().slice(before + 3).find((e) => e.served)!.delayMs, 1_000, "one that served waits 1 s, not the other place's doubled wait");

  // Each replacement said why, in its own line, and exited (that is the exit the primary logged): replica-4 and replica-5 in the first's place.
  const refusals = logLines().filter((l) => l.role !== "replicas" && /could not start: .*not currently accepting connections/.test(l.msg));
  assert.deepEqual(
    refusals.slice(0, 2).map((l) => l.role),
    ["replica-4", "replica-5"],
    `each replacement's own line saying why:\n${platform.logs}`,
  );
  // Once: nothing else the replicas wrote (main's handler printing the error again, say) says it.
  const elsewhere = output.split("\n").filter((l) => l.includes("not currently accepting connections") && !l.startsWith("{"));
  assert.deepEqual(elsewhere, [], "the reason said again outside the replicas' log lines");
  // Forked no sooner than the primary said: each replacement's first line came at least the wait after the exit before it.
  const first = firstLines();
  for (const [i, exit] of [died, ...failed.slice(0, 1)].entries()) {
    const next = first.get(`replica-${i + 4}`);
    assert.ok(next, `replica-${i + 4} logged`);
    const waited = Date.parse(next.time) - Date.parse(exit.time);
    assert.ok(waited >= exit.delayMs!, `replica-${i + 4} started ${waited} ms after the exit before it, not after ${exit.delayMs} ms`);
  }
});

test("once the database takes connections again, a replacement serves in each place", { timeout: STARTS_MS }, async () => {
  await allowConnections(true);
  await until("a replacement serving again in each place", () => replacementsServing() === 3);
  assert.ok(await healthy());
});
