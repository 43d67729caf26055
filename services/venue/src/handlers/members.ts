import { timestampDate } from "@bufbuild/protobuf/wkt";
import { type ServiceImpl } from "@connectrpc/connect";
import { VenueService } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { optionalTimestamp, requireCaller } from "@ttip/runtime";
import { membersOf, membershipsOf, toMember } from "../store.js";
import type { VenueHandlerContext } from "./context.js";

/** Membership: invitations, their acceptance, changes and removal, and the venues a caller belongs to. */
export function memberHandlers(h: VenueHandlerContext): Partial<ServiceImpl<typeof VenueService>> {
  return {
    inviteMember: inviteMemberHandler(h),
    resendInvitation: resendInvitationHandler(h),
    getInvitation: getInvitationHandler(h),
    acceptInvitation: acceptInvitationHandler(h),
    updateMember: updateMemberHandler(h),
    removeMember: removeMemberHandler(h),
    listMembers: listMembersHandler(h),
    listMyVenues: listMyVenuesHandler(h),
  };
}

function inviteMemberHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["inviteMember"] {
  const { members, manager } = h;
  return async function (req, ctx) {
    const { caller, venue } = await manager(ctx, req.venueId);
    const { member, sent } = await members.invite(venue, caller, {
      phone: req.phone,
      displayName: req.displayName,
      roleId: req.roleId,
      joinedAt: req.joinedAt ? timestampDate(req.joinedAt) : undefined,
      key: req.idempotencyKey,
    });
    return { member: toMember(member, venue.name), invitationSent: sent };
  };
}

function resendInvitationHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["resendInvitation"] {
  const { members, manager } = h;
  return async function (req, ctx) {
    const { caller, venue } = await manager(ctx, req.venueId);
    const { member, sent } = await members.resend(venue, caller, req.memberId, req.idempotencyKey);
    return { member: toMember(member, venue.name), invitationSent: sent };
  };
}

/** Public: the link's holder learns the venue's name, as the invitation SMS gave it, and nothing of the member. */
function getInvitationHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["getInvitation"] {
  const { access, members } = h;
  return async function (req) {
    const { venueId, expiresAt, expired } = await members.invitationVenue(req.token);
    return { venueName: (await access.venue(venueId)).name, expired, expiresAt: optionalTimestamp(expiresAt) };
  };
}

function acceptInvitationHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["acceptInvitation"] {
  const { access, members } = h;
  return async function (req, ctx) {
    const caller = requireCaller(ctx);
    const m = await members.accept(caller, req.token);
    const venue = await access.venue(m.venue_id).catch(() => undefined);
    return { member: toMember(m, venue?.name ?? "") };
  };
}

function updateMemberHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["updateMember"] {
  const { members, manager } = h;
  return async function (req, ctx) {
    const { caller, venue } = await manager(ctx, req.venueId);
    return { member: toMember(await members.update(req.venueId, caller, req.memberId, req.roleId, req.displayName), venue.name) };
  };
}

function removeMemberHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["removeMember"] {
  const { members, manager } = h;
  return async function (req, ctx) {
    const { caller, venue } = await manager(ctx, req.venueId);
    const m = await members.remove(req.venueId, caller, req.memberId, req.leftAt ? timestampDate(req.leftAt) : undefined, req.reason, req.onlyIfInvited);
    return { member: toMember(m, venue.name) };
  };
}

function listMembersHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["listMembers"] {
  const { pool, manager } = h;
  return async function (req, ctx) {
    const { venue } = await manager(ctx, req.venueId);
    return { members: (await membersOf(pool, req.venueId, req.includeLeft)).map((m) => toMember(m, venue.name)) };
  };
}

function listMyVenuesHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["listMyVenues"] {
  const { pool, access } = h;
  return async function (_req, ctx) {
    const caller = requireCaller(ctx);
    const rows = await membershipsOf(pool, caller.subject);
    const names = new Map<string, string>();
    for (const v of new Set(rows.map((r) => r.venue_id))) names.set(v, (await access.venue(v).catch(() => undefined))?.name ?? "");
    return { memberships: rows.map((m) => toMember(m, names.get(m.venue_id))) };
  };
}
