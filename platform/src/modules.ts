import { createAnalyticsModule } from "@ttip/analytics";
import { createAuth } from "@ttip/auth";
import { createNotificationModule } from "@ttip/notification";
import { createPaymentModule } from "@ttip/payment";
import { createQrModule } from "@ttip/qr";
import { accessOf, type Env, type ServiceModule } from "@ttip/runtime";
import { createVenueModule } from "@ttip/venue";
import { createWalletModule } from "@ttip/wallet";

export interface ModulesOptions {
  /** The configuration every service parses once (default process.env); never written to. */
  env?: Env;
  /** Values known only once the services listen: payment's own URL for Daraja's callbacks. */
  paymentCallbackBaseUrl?: () => string | undefined;
}

/** Every service, each built the same way: its factory, given the process's configuration. */
export function createModules(options: ModulesOptions = {}): ServiceModule[] {
  const env = options.env ?? process.env;
  return [
    createAuth({ env }),
    createPaymentModule({ env, callbackBaseUrl: options.paymentCallbackBaseUrl }),
    createQrModule({ env }),
    createWalletModule({ env }),
    createNotificationModule({ env }),
    createAnalyticsModule({ env }),
    createVenueModule({ env }),
  ];
}

export const modules: ServiceModule[] = createModules();

/**
 * Services the gateway routes: those with an RPC its contract opens to some
 * caller (an RPC declaring no access is routed, and refused by the gateway's policy).
 */
export function publicServices(module: ServiceModule) {
  return module.services.filter((s) => s.methods.some((m) => accessOf(m)?.access !== "internal"));
}
