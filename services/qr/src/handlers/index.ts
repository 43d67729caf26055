import type { ServiceImpl } from "@connectrpc/connect";
import type { QrInternalService, QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { partnerLinkHandlers } from "../partner-links.js";
import { codeHandlers } from "./codes.js";
import { qrHandlerContext, type QrDeps } from "./context.js";
import { internalHandlers } from "./internal.js";
import { profileHandlers } from "./profiles.js";
import { scanHandlers } from "./scans.js";
import { venueHandlers } from "./venues.js";

export type { QrDeps } from "./context.js";
export { referrerOf, validateParameters } from "./values.js";

/** Every RPC of the qr service: one file per area, merged here. */
export function createHandlers(deps: QrDeps): { public: Partial<ServiceImpl<typeof QrService>>; internal: Partial<ServiceImpl<typeof QrInternalService>> } {
  const h = qrHandlerContext(deps);
  const links = partnerLinkHandlers(deps.pool, deps.requireActiveKey);
  return {
    public: { ...codeHandlers(h), ...scanHandlers(h), ...profileHandlers(h), ...venueHandlers(h), ...links.public },
    internal: { ...internalHandlers(h), ...links.internal },
  };
}
