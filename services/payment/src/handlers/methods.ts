import { type ServiceImpl } from "@connectrpc/connect";
import { requireCaller, requireKenyanMobile } from "@ttip/runtime";
import type { PaymentService } from "@ttip/proto/ttip/payment/v1/payment_service_pb.js";
import { addMethod, listMethods, removeMethod } from "../methods.js";
import { type PaymentHandlerContext } from "./context.js";

type Impl = ServiceImpl<typeof PaymentService>;

/** The signed-in user's saved M-Pesa numbers. */
export function methodHandlers(h: PaymentHandlerContext): Partial<Impl> {
  return {
    listPaymentMethods: listPaymentMethodsHandler(h),
    addPaymentMethod: addPaymentMethodHandler(h),
    removePaymentMethod: removePaymentMethodHandler(h),
  };
}

function listPaymentMethodsHandler(h: PaymentHandlerContext): Impl["listPaymentMethods"] {
  return async (_req, ctx) => {
    const { pool } = h;
    const caller = requireCaller(ctx);
    return { paymentMethods: await listMethods(pool, caller.subject) };
  };
}

function addPaymentMethodHandler(h: PaymentHandlerContext): Impl["addPaymentMethod"] {
  return async (req, ctx) => {
    const { pool } = h;
    const caller = requireCaller(ctx);
    const phone = requireKenyanMobile(req.mpesaPhone, "mpesa_phone");
    return { paymentMethod: await addMethod(pool, caller.subject, phone, req.label, req.makeDefault) };
  };
}

function removePaymentMethodHandler(h: PaymentHandlerContext): Impl["removePaymentMethod"] {
  return async (req, ctx) => {
    const { pool } = h;
    const caller = requireCaller(ctx);
    await removeMethod(pool, caller.subject, req.paymentMethodId);
    return {};
  };
}
