import { analytics } from "@ttip/analytics";
import { auth } from "@ttip/auth";
import { notification } from "@ttip/notification";
import { payment } from "@ttip/payment";
import { qr } from "@ttip/qr";
import type { ServiceModule } from "@ttip/runtime";
import { venue } from "@ttip/venue";
import { wallet } from "@ttip/wallet";

export const modules: ServiceModule[] = [auth, payment, qr, wallet, notification, analytics, venue];

/** Services reachable through the gateway: all but the service-to-service ones. */
export function publicServices(module: ServiceModule) {
  return module.services.filter((s) => !s.name.endsWith("InternalService"));
}
