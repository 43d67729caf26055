import { NotificationService, NotificationAdminService, NotificationInternalService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import type { ServiceModule } from "@ttip/runtime";

/** Templates in English and Swahili, SMS, e-mail, push and in-app channels, providers, preferences and delivery tracking with retries. */
export const notification: ServiceModule = {
  name: "notification",
  services: [NotificationService, NotificationAdminService, NotificationInternalService],
  routes(router) {
    // No method is built yet: each answers UNIMPLEMENTED, never a fake success.
    for (const service of this.services) router.service(service, {});
  },
};
