import type { ConnectRouter } from "@connectrpc/connect";
import { PaymentAdminService, PaymentInternalService, PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import type { Deps } from "../tips.js";
import { consoleHandlers } from "./console.js";
import { paymentHandlerContext } from "./context.js";
import { fraudHandlers } from "./fraud.js";
import { internalHandlers } from "./internal.js";
import { methodHandlers } from "./methods.js";
import { payoutHandlers } from "./payouts.js";
import { suspenseHandlers } from "./suspense.js";
import { tipHandlers } from "./tips.js";

/** Every RPC of the payment service: one file per area, merged here. */
export function registerHandlers(router: ConnectRouter, deps: Deps) {
  const h = paymentHandlerContext(deps);
  router.service(PaymentService, { ...tipHandlers(h), ...payoutHandlers(h), ...methodHandlers(h) });
  router.service(PaymentAdminService, { ...consoleHandlers(h), ...fraudHandlers(h), ...suspenseHandlers(h) });
  router.service(PaymentInternalService, internalHandlers(h));
}
