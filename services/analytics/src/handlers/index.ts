import type { ConnectRouter } from "@connectrpc/connect";
import { AnalyticsAdminService, AnalyticsService } from "@ttip/proto/ttip/analytics/v1/analytics_service_pb.js";
import type { ServiceContext } from "@ttip/runtime";
import { analyticsHandlerContext, type AnalyticsConfig } from "./context.js";
import { dashboardHandlers } from "./dashboards.js";
import { exportHandlers } from "./exports.js";
import { performanceHandlers } from "./performance.js";
import { platformHandlers } from "./platform.js";

export { DEFAULT_CONFIG, type AnalyticsConfig } from "./context.js";

/** Every RPC of the analytics services: one file per area, merged here per service. */
export function routes(router: ConnectRouter, ctx: ServiceContext, cfg: AnalyticsConfig): void {
  const h = analyticsHandlerContext(ctx, cfg);
  const areas = [dashboardHandlers(h), performanceHandlers(h), platformHandlers(h), exportHandlers(h)];
  router.service(AnalyticsService, Object.assign({}, ...areas.map((a) => a.public)));
  router.service(AnalyticsAdminService, Object.assign({}, ...areas.map((a) => a.admin)));
}
