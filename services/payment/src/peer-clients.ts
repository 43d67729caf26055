// The clients payment calls qr with, one per service context. A client is an
// object with a function for every method of its service (QrService has 20):
// made once, not on every CreateTip and receipt (~1.3 us and ~2.3 KiB a time).
// The context's peers resolve the transport on each call, so a kept client
// goes wherever the peers say at the time.
import { createClient } from "@connectrpc/connect";
import { perContext } from "@ttip/runtime";
import { QrInternalService, QrService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";

/** qr's service as customers and workers see it (resolving codes, owners' display names). */
export const qrClient = perContext((ctx) => createClient(QrService, ctx.peers("qr")));

/** qr's service for the other services (account references, venue access, partner links). */
export const qrInternalClient = perContext((ctx) => createClient(QrInternalService, ctx.peers("qr")));
