import type { ServiceImpl } from "@connectrpc/connect";
import { NotificationAdminService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { decodeTimeIdToken, encodePageToken, NotFoundError, pageSize } from "@ttip/runtime";
import { deliveryById, deliveryPage } from "../stores/deliveries.js";
import type { NotificationHandlerContext } from "./context.js";

/** Deliveries as support sees them: one with its attempts, or a filtered page. */
export function deliveryHandlers(h: NotificationHandlerContext): Partial<ServiceImpl<typeof NotificationAdminService>> {
  return {
    getDelivery: getDeliveryHandler(h),
    listDeliveries: listDeliveriesHandler(h),
  };
}

function getDeliveryHandler(h: NotificationHandlerContext): ServiceImpl<typeof NotificationAdminService>["getDelivery"] {
  const { pool } = h;
  return async function (req) {
    const d = await deliveryById(pool, req.deliveryId);
    if (!d) throw new NotFoundError(`delivery ${req.deliveryId} not found`);
    return { delivery: d };
  };
}

function listDeliveriesHandler(h: NotificationHandlerContext): ServiceImpl<typeof NotificationAdminService>["listDeliveries"] {
  const { pool } = h;
  return async function (req) {
    const cursor = decodeTimeIdToken(req.page?.pageToken);
    const size = pageSize(req.page);
    const rows = await deliveryPage(pool, req, cursor, size + 1);
    const page = rows.slice(0, size);
    const last = page[page.length - 1];
    return {
      deliveries: page,
      page: { nextPageToken: rows.length > size && last ? encodePageToken([last._pageAt, last.deliveryId]) : "" },
    };
  };
}
