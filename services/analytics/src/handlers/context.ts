import { type ServiceImpl } from "@connectrpc/connect";
import { AnalyticsAdminService, AnalyticsService } from "@ttip/proto/ttip/analytics/v1/analytics_service_pb.js";
import { type ServiceContext } from "@ttip/runtime";
import { Access } from "./access.js";

export interface AnalyticsConfig {
  /** What one SMS costs the platform, in minor units of `smsCurrency` (for SMS spend). */
  smsPriceMinor: bigint;
  smsCurrency: string;
  /** How often a live dashboard re-reads when nothing in this process signalled a change. */
  livePollMs: number;
  /**
   * A live dashboard reads at most once in this long, however many batches commit meanwhile: each commit in the
   * process wakes every stream, whoever it touched (one batch per 200 ms per durable: a thousand open screens read
   * thousands of times a second).
   */
  liveMinReadGapMs: number;
  /** A live stream ends after this long; clients reconnect (no stream holds a slot forever). */
  liveMaxMs: number;
  /** How often a venue's live stream asks again whether its caller still manages the venue. */
  liveAccessRecheckMs: number;
}

export const DEFAULT_CONFIG: AnalyticsConfig = { smsPriceMinor: 80n, smsCurrency: "KES", livePollMs: 2_000, liveMinReadGapMs: 1_000, liveMaxMs: 3_600_000, liveAccessRecheckMs: 60_000 };

/** What every analytics handler shares: the service, its configuration and the access checks. */
export interface AnalyticsHandlerContext {
  ctx: ServiceContext;
  cfg: AnalyticsConfig;
  access: Access;
}

/** The context every analytics handler is given. */
export function analyticsHandlerContext(ctx: ServiceContext, cfg: AnalyticsConfig): AnalyticsHandlerContext {
  return { ctx, cfg, access: new Access(ctx) };
}

/** One area's RPCs, by the service they belong to; merged per service in handlers/index.ts. */
export interface AnalyticsAreaHandlers {
  public?: Partial<ServiceImpl<typeof AnalyticsService>>;
  admin?: Partial<ServiceImpl<typeof AnalyticsAdminService>>;
}
