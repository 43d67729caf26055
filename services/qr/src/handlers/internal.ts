import type { ServiceImpl } from "@connectrpc/connect";
import { QrCodeStatus, QrProblemKind } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import type { QrInternalService } from "@ttip/proto/ttip/qr/v1/qr_service_pb.js";
import { InvalidStateError, lockForTransaction, NotFoundError, withTransaction } from "@ttip/runtime";
import { VENUE, WORKER } from "../access.js";
import { inactiveProblem } from "../resolver.js";
import { normalizeShortCode, oneSlipAway, shortCodeFromDigits } from "../shortcode.js";
import { activeAccountReferences, codeByAccountReference, type CodeRecord } from "../stores/codes.js";
import { profileOf } from "../stores/profiles.js";
import { addVenueManager, isVenueManager, removeVenueManager, venueManagers, venueManagersLock } from "../stores/venues.js";
import type { QrHandlerContext } from "./context.js";
import { setStaff } from "./venues.js";

type Impl = ServiceImpl<typeof QrInternalService>;

/** The platform's own calls: venue access, managers and staff, and paybill account references. */
export function internalHandlers(h: QrHandlerContext): Partial<Impl> {
  return {
    getVenueAccess: getVenueAccessHandler(h),
    addVenueManager: addVenueManagerHandler(h),
    removeVenueManager: removeVenueManagerHandler(h),
    setVenueStaff: async (req) => ({ revokedCodes: await setStaff(h, req.venueId, req.workerId, req.onStaff) }),
    matchAccountReference: matchAccountReferenceHandler(h),
    suggestAccountReferences: suggestAccountReferencesHandler(h),
  };
}

function getVenueAccessHandler(h: QrHandlerContext): Impl["getVenueAccess"] {
  return async (req) => {
    const { pool } = h;
    const venue = await profileOf(pool, VENUE, req.venueId);
    if (!venue) return { venueExists: false, isManager: false, displayName: "", currency: "", active: false, managerIds: [] };
    const isManager = req.userId ? await isVenueManager(pool, req.venueId, req.userId) : false;
    const managerIds = req.withManagers ? await venueManagers(pool, req.venueId) : [];
    return { venueExists: true, isManager, displayName: venue.displayName, currency: venue.currency, active: venue.active, managerIds };
  };
}

function addVenueManagerHandler(h: QrHandlerContext): Impl["addVenueManager"] {
  return async (req) => {
    if (!(await profileOf(h.pool, VENUE, req.venueId))) throw new NotFoundError(`venue_id: no venue ${req.venueId}`);
    return { added: await addVenueManager(h.pool, req.venueId, req.userId) };
  };
}

function removeVenueManagerHandler(h: QrHandlerContext): Impl["removeVenueManager"] {
  return async (req) => {
    const outcome = await withTransaction(h.pool, async (tx) => {
      await lockForTransaction(tx, venueManagersLock(req.venueId));
      return removeVenueManager(tx, req.venueId, req.userId);
    });
    if (outcome === "none") throw new NotFoundError(`user_id: ${req.userId} does not manage venue ${req.venueId}`);
    if (outcome === "last") throw new InvalidStateError("user_id: this is the venue's last manager; add another manager first");
    return {};
  };
}

function matchAccountReferenceHandler(h: QrHandlerContext): Impl["matchAccountReference"] {
  return async (req) => {
    const { pool } = h;
    const typed = normalizeShortCode(req.accountReference);
    // The card's USSD digits typed as the account (its paybill line and its USSD line sit side by side) name its
    // short code, as ResolveQrCode reads them, and a code's account reference is its short code.
    const code = await codeByAccountReference(pool, shortCodeFromDigits(typed) ?? typed);
    if (!code) throw new NotFoundError(`account_reference: no code has the reference ${req.accountReference}`);
    const venueId = code.ownerKind === VENUE ? code.ownerId : (code.venueId ?? "");
    return {
      workerId: code.ownerKind === WORKER ? code.ownerId : "",
      qrCodeId: code.id,
      venueId,
      status: code.status as QrCodeStatus,
      closedReason: await closedReason(h, code),
    };
  };
}

/** Why a code takes no new tips though it may be active (the tip page's checks after its status: inactiveProblem), or "". */
async function closedReason(h: QrHandlerContext, code: CodeRecord): Promise<string> {
  if (code.expiresAt !== null && code.expiresAt <= Date.now()) return "the code has expired";
  const owner = await profileOf(h.pool, code.ownerKind, code.ownerId);
  const venue = owner?.active && code.ownerKind === WORKER && code.venueId ? await profileOf(h.pool, VENUE, code.venueId) : undefined;
  const inactive = inactiveProblem(code.ownerKind, owner, code.ownerKind === WORKER ? code.venueId : null, venue);
  if (inactive === undefined) return "";
  return inactive === QrProblemKind.OWNER_INACTIVE ? "its worker is not taking tips" : "its venue is not taking tips";
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
