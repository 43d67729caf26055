import { randomBytes } from "node:crypto";
import { Writable } from "node:stream";
import pg from "pg";
import type { Pool } from "../db.js";
import { createLogger, type Logger } from "../log.js";
import type { MigratedSchema } from "./migrated-template.js";

export * from "./eventually.js";
export * from "./servers.js";
export * from "./crash-bus.js";
export * from "./refusal.js";
export * from "./money.js";
export * from "./phones.js";
export * from "./pg-writes.js";
export * from "./wal-records.js";
export * from "./raw-http.js";
export * from "./held-timer.js";
export * from "./days.js";
export * from "./source-loader.js";
export * from "./pglite-folder.js";

/** The servers `make test` started; a clear message when a test is run on its own. */
export function testEnv(): { databaseUrl: string; redisUrl: string; natsUrl: string } {
  const { TEST_DATABASE_URL, TEST_REDIS_URL, TEST_NATS_URL } = process.env;
  if (!TEST_DATABASE_URL || !TEST_REDIS_URL || !TEST_NATS_URL) {
    throw new Error(
      "TEST_DATABASE_URL, TEST_REDIS_URL and TEST_NATS_URL are not set: run tests with `make test` " +
        "(or `npm test -- path/to/file.test.ts`), which starts throwaway servers",
    );
  }
  return { databaseUrl: TEST_DATABASE_URL, redisUrl: TEST_REDIS_URL, natsUrl: TEST_NATS_URL };
}

/** A short random name, safe as an identifier, NATS token or key prefix. */
export function uniqueName(prefix = "t"): string {
  return `${prefix}${randomBytes(5).toString("hex")}`;
}

export interface TestDatabase {
  url: string;
  pool: Pool;
  drop(): Promise<void>;
}

export interface TestDatabaseOptions {
  /**
   * Schemas the database starts with, migrated as migrate() would (a copy of a template migrated
   * once per test server: migrated-template.ts). The service starters pass their modules; a test of
   * migrations themselves leaves this out and migrates an empty database.
   */
  migrated?: readonly MigratedSchema[];
}

/** A fresh database on the test server, so test files never see each other's rows. */
export async function createTestDatabase(options: TestDatabaseOptions = {}): Promise<TestDatabase> {
  // Loaded on first use, as the service starters below are: a file that never asks for a database skips them.
  const [{ createPool }, { KEEP_PUBLISHED }] = await Promise.all([import("../db.js"), import("../outbox.js")]);
  const admin = new pg.Client({ connectionString: testEnv().databaseUrl });
  await admin.connect();
  const name = uniqueName("ttip_test_");
  try {
    if (options.migrated?.length) {
      const { migratedTemplate } = await import("./migrated-template.js");
      const template = await migratedTemplate(admin, testEnv().databaseUrl, options.migrated);
      await admin.query(`CREATE DATABASE ${name} TEMPLATE ${template}`);
    } else {
      await admin.query(`CREATE DATABASE ${name}`);
    }
    // Tests read the events a service wrote from its outbox: the relay marks them published instead of deleting them.
    await admin.query(`ALTER DATABASE ${name} SET ${KEEP_PUBLISHED} = on`);
  } finally {
    // Also when a migration of the template failed: an open client would keep the test file's process from ending.
    await admin.end();
  }
  const url = new URL(testEnv().databaseUrl);
  url.pathname = `/${name}`;
  const pool = createPool(url.toString(), { max: 60 });
  return {
    url: url.toString(),
    pool,
    drop: async () => {
      // pg-pool's end() resolves before its connections have closed; the forced drop below would
      // then terminate a closing one, and its error would crash the test process. Wait for them.
      const open = pool.totalCount;
      let closed = 0;
      const allClosed = new Promise<void>((resolve) => {
        if (open === 0) resolve();
        pool.on("remove", () => ++closed >= open && resolve());
      });
      await pool.end();
      await Promise.race([allClosed, new Promise((r) => setTimeout(r, 5_000))]);
      const c = new pg.Client({ connectionString: testEnv().databaseUrl });
      await c.connect();
      // pool.end() resolves before its connections have closed; forcing the drop
      // while one is still closing makes it emit "terminating connection due to
      // administrator command" as an uncaught pool error. Let them go first.
      for (let i = 0; i < 100; i++) {
        const { rows } = await c.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1", [name]);
        if (rows[0].n === 0) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

/** A logger whose JSON lines are kept for assertions. */
export function captureLogger(level = "debug"): { logger: Logger; lines: string[]; records: () => Record<string, unknown>[] } {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, done) {
      lines.push(...chunk.toString().split("\n").filter(Boolean));
      done();
    },
  });
  const logger = createLogger({ level, destination });
  return { logger, lines, records: () => lines.map((l) => JSON.parse(l)) };
}
export * from "./as-caller.js";
export * from "./device-step-up.js";
export * from "./processes.js";
export type { TestService, TestServiceOptions } from "./service.js";
export type { InProcessService, InProcessOptions } from "./in-process.js";

/**
 * The service starters load their modules (connect-node, NATS, Redis, metrics, the outbox: most of
 * this barrel's import CPU) on first call: every test file's process imports the barrel, and most
 * never start a service here.
 */
export async function startTestService(...args: Parameters<typeof import("./service.js").startTestService>): ReturnType<typeof import("./service.js").startTestService> {
  return (await import("./service.js")).startTestService(...args);
}

export async function startInProcessService(
  ...args: Parameters<typeof import("./in-process.js").startInProcessService>
): ReturnType<typeof import("./in-process.js").startInProcessService> {
  return (await import("./in-process.js")).startInProcessService(...args);
}
export * from "./shared-build.js";
export * from "./stripe-mock.js";
export * from "./otlp-receiver.js";
export * from "./kept-plans.js";
