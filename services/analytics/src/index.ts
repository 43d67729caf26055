import { AnalyticsService, AnalyticsAdminService } from "@ttip/proto/ttip/analytics/v1/analytics_service_pb.js";
import type { ServiceModule } from "@ttip/runtime";

/** Read models built from events: live dashboards, revenue and performance metrics, scan-to-tip funnels and CSV reports. */
export const analytics: ServiceModule = {
  name: "analytics",
  services: [AnalyticsService, AnalyticsAdminService],
  routes(router) {
    // No method is built yet: each answers UNIMPLEMENTED, never a fake success.
    for (const service of this.services) router.service(service, {});
  },
};
