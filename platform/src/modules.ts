import { analytics } from "@ttip/analytics";
import { auth } from "@ttip/auth";
import { notification } from "@ttip/notification";
import { payment } from "@ttip/payment";
import { qr } from "@ttip/qr";
import { accessOf, type ServiceModule } from "@ttip/runtime";
import { venue } from "@ttip/venue";
import { wallet } from "@ttip/wallet";

export const modules: ServiceModule[] = [auth, payment, qr, wallet, notification, analytics, venue];

/**
 * Services the gateway routes: those with an RPC its contract opens to some
 * caller (an RPC declaring no access is routed, and refused by the gateway's policy).
 */
export function publicServices(module: ServiceModule) {
  return module.services.filter((s) => s.methods.some((m) => accessOf(m)?.access !== "internal"));
}
