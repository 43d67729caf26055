import type { ServiceImpl } from "@connectrpc/connect";
import { TemplateKey } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { NotificationInternalService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { claimIdempotencyKey, clockOf, fieldError, idempotentRequest, normalisePhone, withTransaction } from "@ttip/runtime";
import { enqueue, type Recipient } from "../delivery.js";
import { upsertContact } from "../stores/recipients.js";
import { MissingVariablesError } from "../templates.js";
import type { NotificationHandlerContext } from "./context.js";

/** What the other services ask of notification: send a message, keep a user's contact details. */
export function internalHandlers(h: NotificationHandlerContext): Partial<ServiceImpl<typeof NotificationInternalService>> {
  return {
    sendNotification: sendNotificationHandler(h),
    upsertContact: upsertContactHandler(h),
  };
}

function sendNotificationHandler(h: NotificationHandlerContext): ServiceImpl<typeof NotificationInternalService>["sendNotification"] {
  const { pool } = h;
  return async function (req, ctx) {
    let to: Recipient;
    if (req.recipient.case === "userId") to = { userId: req.recipient.value };
    else if (req.recipient.case === "phone") to = { phone: req.recipient.value };
    else if (req.recipient.case === "email") to = { email: req.recipient.value };
    else throw fieldError("recipient", "one of user_id, phone or email is required");
    if (req.templateKey === TemplateKey.OTP && req.recipient.case === "email") throw fieldError("email", "sign-in codes go by SMS only");
    try {
      const sourceKey = `rpc:${req.idempotencyKey}`;
      const idempotent = idempotentRequest("notification", ctx, req);
      const send = { sourceKey, to, templateKey: req.templateKey, variables: req.variables, locale: req.locale, channels: req.channels };
      if (req.channels.length === 1 && req.recipient.case !== "userId") {
        // One channel to a number or an address (a receipt, a sign-in code): one delivery, whose
        // statement claims the key itself, without a transaction around it.
        const made = await enqueue(pool, { ...send, claim: { request: idempotent, resultId: sourceKey } }, new Date(clockOf(h).now()));
        if (made.length) return { deliveryIds: made };
        // The key was used before: below, the claim says whether by this request, and finds its delivery.
      }
      const ids = await withTransaction(pool, async (tx) => {
        // The key's deliveries are found again by their source key; the claim refuses another request under it.
        await claimIdempotencyKey(tx, idempotent, sourceKey);
        return enqueue(tx, send, new Date(clockOf(h).now()));
      });
      return { deliveryIds: ids };
    } catch (err) {
      if (err instanceof MissingVariablesError) throw fieldError("variables", `missing ${err.missing.join(", ")}`);
      throw err;
    }
  };
}

function upsertContactHandler(h: NotificationHandlerContext): ServiceImpl<typeof NotificationInternalService>["upsertContact"] {
  const { pool } = h;
  return async function (req) {
    const locale = req.locale === "sw" || req.locale === "en" ? req.locale : "";
    await upsertContact(pool, { userId: req.userId, phone: normalisePhone(req.phone), email: req.email, locale });
    return {};
  };
}
