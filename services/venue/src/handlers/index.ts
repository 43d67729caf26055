import type { ConnectRouter } from "@connectrpc/connect";
import { VenueService } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { venueHandlerContext, type VenueDeps } from "./context.js";
import { distributionHandlers } from "./distributions.js";
import { managerHandlers } from "./managers.js";
import { memberHandlers } from "./members.js";
import { reportHandlers } from "./reports.js";
import { roleHandlers } from "./roles.js";
import { shiftHandlers } from "./shifts.js";
import { splitRuleHandlers } from "./split-rules.js";

export type { VenueDeps } from "./context.js";

/** Every RPC of the venue service: one file per area, merged here. */
export function registerHandlers(router: ConnectRouter, deps: VenueDeps) {
  const h = venueHandlerContext(deps);
  router.service(VenueService, {
    ...roleHandlers(h),
    ...memberHandlers(h),
    ...managerHandlers(h),
    ...shiftHandlers(h),
    ...splitRuleHandlers(h),
    ...distributionHandlers(h),
    ...reportHandlers(h),
  });
}
