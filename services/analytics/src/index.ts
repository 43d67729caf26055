import { hostname } from "node:os";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { AnalyticsService, AnalyticsAdminService } from "@ttip/proto/ttip/analytics/v1/analytics_service_pb.js";
import { env, loadConfig, type ModuleOptions, type ServiceModule } from "@ttip/runtime";
import { DEFAULT_CONFIG, routes, type AnalyticsConfig } from "./handlers/index.js";
import { startConsumers } from "./ingest.js";
import { ensurePartitionsAround } from "./store.js";
import { startWeeklySummary, type WeeklyOptions } from "./weekly.js";

export { replay, ReplayBeyondStreamError, type ReplayOptions, type ReplayResult } from "./replay.js";
export { parseCsv } from "./csv.js";
export { factsOf, SUBJECTS, consumerName } from "./facts.js";
export { runWeeklySummary, weekOwed, type WeeklyOptions } from "./weekly.js";

export interface AnalyticsModuleOptions extends ModuleOptions {
  config?: Partial<AnalyticsConfig>;
  /** The weekly summary job; `false` turns it off (benchmarks). */
  weekly?: Partial<WeeklyOptions> | false;
}

const envShape = {
  ANALYTICS_SMS_PRICE_MINOR: z.coerce.bigint().default(80n),
  ANALYTICS_WEEKLY_INTERVAL_MS: env.duration(600_000),
  ANALYTICS_WEEKLY_SEND_HOUR: z.coerce.number().int().min(0).max(167).default(8),
};

/** Read models built from events: live dashboards, revenue and performance metrics, scan-to-tip funnels and CSV reports. */
export function createAnalyticsModule(options: AnalyticsModuleOptions = {}): ServiceModule {
  let vars: ReturnType<typeof loadConfig<typeof envShape>> | undefined;
  const envConfig = () => (vars ??= loadConfig(envShape, options.env));
  let cfg: AnalyticsConfig | undefined;
  const config = () => (cfg ??= { ...DEFAULT_CONFIG, smsPriceMinor: envConfig().ANALYTICS_SMS_PRICE_MINOR, ...options.config });
  return {
    name: "analytics",
    migrations: fileURLToPath(new URL("../migrations", import.meta.url)),
    calls: ["qr", "notification"],
    services: [AnalyticsService, AnalyticsAdminService],
    routes(router, ctx) {
      routes(router, ctx, config());
    },
    async start(ctx) {
      config();
      await ensurePartitionsAround(ctx.pool);
      const stopConsumers = await startConsumers(ctx);
      let stopWeekly = async () => undefined as void;
      if (options.weekly !== false) {
        const e = envConfig();
        stopWeekly = startWeeklySummary(ctx, {
          intervalMs: e.ANALYTICS_WEEKLY_INTERVAL_MS,
          sendAtHour: e.ANALYTICS_WEEKLY_SEND_HOUR,
          leaseMs: 120_000,
          batchSize: 200,
          now: () => new Date(),
          holder: `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`,
          ...options.weekly,
        });
      }
      return async () => {
        await stopWeekly();
        await stopConsumers();
      };
    },
  };
}

export const analytics: ServiceModule = createAnalyticsModule();
