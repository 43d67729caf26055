import { PaymentService, PaymentAdminService, PaymentInternalService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import type { ServiceModule } from "@ttip/runtime";

/** Tip attempts by M-Pesa STK push and Stripe card payments, provider callbacks and webhooks, reconciliation of lost callbacks, B2C payouts, payment methods and fraud checks before money moves. */
export const payment: ServiceModule = {
  name: "payment",
  services: [PaymentService, PaymentAdminService, PaymentInternalService],
  routes(router) {
    // No method is built yet: each answers UNIMPLEMENTED, never a fake success.
    for (const service of this.services) router.service(service, {});
  },
};
