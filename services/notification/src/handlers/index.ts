import type { ConnectRouter } from "@connectrpc/connect";
import { NotificationAdminService, NotificationInternalService, NotificationService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import type { Dispatcher } from "../delivery.js";
import type { NotificationHandlerContext } from "./context.js";
import { deliveryHandlers } from "./deliveries.js";
import { inAppHandlers } from "./inapp.js";
import { internalHandlers } from "./internal.js";
import { preferenceHandlers } from "./preferences.js";
import { providerHealthHandlers } from "./provider-health.js";
import { pushTokenHandlers } from "./push-tokens.js";
import { templateHandlers } from "./templates.js";

/** Every RPC of the notification services: one file per area, merged here. `dispatcher`: the started service's. */
export function registerHandlers(router: ConnectRouter, h: NotificationHandlerContext, dispatcher: () => Dispatcher | undefined = () => undefined): void {
  router.service(NotificationService, { ...preferenceHandlers(h), ...inAppHandlers(h), ...pushTokenHandlers(h) });
  router.service(NotificationAdminService, { ...templateHandlers(h), ...deliveryHandlers(h), ...providerHealthHandlers(h) });
  router.service(NotificationInternalService, internalHandlers(h, dispatcher));
}
