// Rebuilds analytics' rollups from the stream, from a day on:
//   DATABASE_URL=postgres://… NATS_URL=nats://… npm run analytics:replay -- 2026-11-01
// The day is taken at midnight East Africa Time. Live consumers may keep
// running: they wait while it runs and skip what it applied.
import { z } from "zod";
import { ConfigError, createLogger, createPool, env, JetStreamBus, loadConfig, migrate, nairobiDayStart } from "@ttip/runtime";
import { fileURLToPath } from "node:url";
import { replay, ReplayBeyondStreamError } from "./replay.js";

// A day no calendar has is refused: read as Date reads it, 2026-02-31 rebuilt from 3 March, and the days meant stayed wrong.
const from = nairobiDayStart(process.argv[2] ?? "");
if (!from) {
  console.error("usage: npm run analytics:replay -- <YYYY-MM-DD>   (the first day to rebuild, East Africa Time)");
  process.exit(2);
}
try {
  const cfg = loadConfig({
    DATABASE_URL: env.url(["postgres", "postgresql"]),
    NATS_URL: env.url(["nats", "tls"]),
    NATS_STREAM: z.string().default("TTIP"),
    LOG_LEVEL: env.logLevel(),
  });
  const logger = createLogger({ level: cfg.LOG_LEVEL, base: { role: "analytics-replay" } });
  const pool = createPool(cfg.DATABASE_URL, { max: 2, applicationName: "ttip-analytics-replay", logger });
  await migrate(pool, "analytics", fileURLToPath(new URL("../migrations", import.meta.url)), logger);
  const bus = await JetStreamBus.connect({ servers: cfg.NATS_URL, stream: cfg.NATS_STREAM, logger });
  const started = Date.now();
  const r = await replay({ pool, bus, logger, from });
  console.log(`rebuilt from ${r.from.toISOString()}: ${r.applied} events applied of ${r.read} read in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  await bus.close();
  await pool.end();
} catch (err) {
  if (err instanceof ConfigError) {
    console.error(err.message);
    process.exit(78);
  }
  if (err instanceof ReplayBeyondStreamError) {
    console.error(`nothing changed: ${err.message}`);
    process.exit(2);
  }
  throw err;
}
