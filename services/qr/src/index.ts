import { QrService, QrInternalService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import type { ServiceModule } from "@ttip/runtime";

/** QR codes for workers and venues: short codes, signed payloads with optional expiry and dynamic parameters, PNG/SVG renders, the offline KE-QR and USSD forms, and scan events. */
export const qr: ServiceModule = {
  name: "qr",
  services: [QrService, QrInternalService],
  routes(router) {
    // No method is built yet: each answers UNIMPLEMENTED, never a fake success.
    for (const service of this.services) router.service(service, {});
  },
};
