import { type ServiceImpl } from "@connectrpc/connect";
import { VenueService } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { optionalTimestamp, requireCaller } from "@ttip/runtime";
import { toInvitation } from "../managers.js";
import type { VenueHandlerContext } from "./context.js";

type Impl = ServiceImpl<typeof VenueService>;

/** Co-managers: invitations by phone, their acceptance, the list, and stepping down or being removed. */
export function managerHandlers(h: VenueHandlerContext): Partial<Impl> {
  return {
    inviteManager: inviteManagerHandler(h),
    getManagerInvitation: getManagerInvitationHandler(h),
    acceptManagerInvitation: acceptManagerInvitationHandler(h),
    cancelManagerInvitation: cancelManagerInvitationHandler(h),
    resendManagerInvitation: resendManagerInvitationHandler(h),
    listManagers: listManagersHandler(h),
    removeManager: removeManagerHandler(h),
  };
}

function inviteManagerHandler(h: VenueHandlerContext): Impl["inviteManager"] {
  const { managers, manager } = h;
  return async function (req, ctx) {
    const { caller, venue } = await manager(ctx, req.venueId);
    const { invitation, sent } = await managers.invite(venue, caller, { phone: req.phone, displayName: req.displayName, key: req.idempotencyKey });
    return { invitation: toInvitation(invitation), invitationSent: sent };
  };
}

/** Public: the link's holder learns the venue's name, as the invitation SMS gave it, and nothing else. */
function getManagerInvitationHandler(h: VenueHandlerContext): Impl["getManagerInvitation"] {
  const { access, managers } = h;
  return async function (req) {
    const { venueId, expiresAt, expired } = await managers.invitationVenue(req.token);
    return { venueName: (await access.venue(venueId)).name, expired, expiresAt: optionalTimestamp(expiresAt) };
  };
}

function acceptManagerInvitationHandler(h: VenueHandlerContext): Impl["acceptManagerInvitation"] {
  const { access, managers } = h;
  return async function (req, ctx) {
    const { venueId } = await managers.accept(requireCaller(ctx), req.token);
    const venue = await access.venue(venueId).catch(() => undefined);
    return { venueId, venueName: venue?.name ?? "" };
  };
}

function cancelManagerInvitationHandler(h: VenueHandlerContext): Impl["cancelManagerInvitation"] {
  const { managers, manager } = h;
  return async function (req, ctx) {
    const { caller } = await manager(ctx, req.venueId);
    await managers.cancel(req.venueId, caller, req.invitationId);
    return {};
  };
}

function resendManagerInvitationHandler(h: VenueHandlerContext): Impl["resendManagerInvitation"] {
  const { managers, manager } = h;
  return async function (req, ctx) {
    const { caller, venue } = await manager(ctx, req.venueId);
    const { invitation, sent } = await managers.resend(venue, caller, req.invitationId, req.idempotencyKey);
    return { invitation: toInvitation(invitation), invitationSent: sent };
  };
}

function listManagersHandler(h: VenueHandlerContext): Impl["listManagers"] {
  const { managers, manager } = h;
  return async function (req, ctx) {
    const { caller } = await manager(ctx, req.venueId);
    return managers.list(req.venueId, caller);
  };
}

function removeManagerHandler(h: VenueHandlerContext): Impl["removeManager"] {
  const { managers, manager } = h;
  return async function (req, ctx) {
    const { caller } = await manager(ctx, req.venueId);
    await managers.remove(req.venueId, caller, req.userId);
    return {};
  };
}
