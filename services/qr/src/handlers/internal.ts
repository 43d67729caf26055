import type { ServiceImpl } from "@connectrpc/connect";
import { QrCodeStatus } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import type { QrInternalService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { NotFoundError } from "@ttip/runtime";
import { VENUE, WORKER } from "../access.js";
import { normalizeShortCode, oneSlipAway } from "../shortcode.js";
import { activeAccountReferences, codeByAccountReference, type CodeRecord } from "../stores/codes.js";
import { profileOf } from "../stores/profiles.js";
import { isVenueManager } from "../stores/venues.js";
import type { QrHandlerContext } from "./context.js";

type Impl = ServiceImpl<typeof QrInternalService>;

/** The platform's own calls: venue access and paybill account references. */
export function internalHandlers(h: QrHandlerContext): Partial<Impl> {
  return {
    getVenueAccess: getVenueAccessHandler(h),
    matchAccountReference: matchAccountReferenceHandler(h),
    suggestAccountReferences: suggestAccountReferencesHandler(h),
  };
}

function getVenueAccessHandler(h: QrHandlerContext): Impl["getVenueAccess"] {
  return async (req) => {
    const { pool } = h;
    const venue = await profileOf(pool, VENUE, req.venueId);
    if (!venue) return { venueExists: false, isManager: false, displayName: "", currency: "", active: false };
    const isManager = req.userId ? await isVenueManager(pool, req.venueId, req.userId) : false;
    return { venueExists: true, isManager, displayName: venue.displayName, currency: venue.currency, active: venue.active };
  };
}

function matchAccountReferenceHandler(h: QrHandlerContext): Impl["matchAccountReference"] {
  return async (req) => {
    const { pool } = h;
    const code = await codeByAccountReference(pool, normalizeShortCode(req.accountReference));
    if (!code) throw new NotFoundError(`account_reference: no code has the reference ${req.accountReference}`);
    const venueId = code.ownerKind === VENUE ? code.ownerId : (code.venueId ?? "");
    return {
      workerId: code.ownerKind === WORKER ? code.ownerId : "",
      qrCodeId: code.id,
      venueId,
      status: code.status as QrCodeStatus,
      closedReason: await closedReason(h, code, venueId),
    };
  };
}

/** Why a code takes no new tips though it may be active (the tip page's checks after its status), or "". */
async function closedReason(h: QrHandlerContext, code: CodeRecord, venueId: string): Promise<string> {
  if (code.expiresAt !== null && code.expiresAt <= Date.now()) return "the code has expired";
  const owner = await profileOf(h.pool, code.ownerKind, code.ownerId);
  if (!owner?.active) return code.ownerKind === VENUE ? "its venue is not taking tips" : "its worker is not taking tips";
  if (code.ownerKind === WORKER && venueId && !(await profileOf(h.pool, VENUE, venueId))?.active) return "its venue is not taking tips";
  return "";
}

function suggestAccountReferencesHandler(h: QrHandlerContext): Impl["suggestAccountReferences"] {
  return async (req) => {
    const { pool } = h;
    const typed = normalizeShortCode(req.accountReference);
    const candidates = oneSlipAway(typed).slice(0, 2_000);
    if (!candidates.length) return { accountReferences: [] };
    return { accountReferences: await activeAccountReferences(pool, candidates) };
  };
}
