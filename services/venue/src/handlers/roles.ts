import { type ServiceImpl } from "@connectrpc/connect";
import { VenueService } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { fieldError, PermissionDeniedError, withTransaction } from "@ttip/runtime";
import { audit, ensureDefaultRoles, ownMemberships, putRole, rolesOf, toRole } from "../store.js";
import type { VenueHandlerContext } from "./context.js";

/** A venue's roles and their default weights in splits. */
export function roleHandlers(h: VenueHandlerContext): Partial<ServiceImpl<typeof VenueService>> {
  return {
    putRole: putRoleHandler(h),
    listRoles: listRolesHandler(h),
  };
}

function putRoleHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["putRole"] {
  const { pool, manager } = h;
  return async function (req, ctx) {
    const { caller } = await manager(ctx, req.venueId);
    const role = await withTransaction(pool, async (tx) => {
      await ensureDefaultRoles(tx, req.venueId);
      if (req.roleId === "manager" && !req.isManager) throw fieldError("is_manager", "the manager role stays a manager role");
      // A role's points weigh its members' shares: a manager's own old membership's role is another's to change.
      if ((await ownMemberships(tx, req.venueId, caller.subject)).some((m) => m.role_id === req.roleId)) throw new PermissionDeniedError(`role_id: ${req.roleId} is the role of your own membership (from your days on the staff): its points set your pay, and another manager of the venue or an admin changes them`);
      const role = await putRole(tx, { venue_id: req.venueId, role_id: req.roleId, name: req.name, points: req.points, is_manager: req.isManager });
      await audit(tx, req.venueId, caller, "role.changed", { role_id: req.roleId, name: req.name, points: req.points, is_manager: req.isManager });
      return role;
    });
    return { role: toRole(role) };
  };
}

function listRolesHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["listRoles"] {
  const { pool, access } = h;
  return async function (req, ctx) {
    await access.requireMemberOrManager(pool, ctx, req.venueId);
    await ensureDefaultRoles(pool, req.venueId);
    return { roles: (await rolesOf(pool, req.venueId)).map(toRole) };
  };
}
