import { type ServiceImpl } from "@connectrpc/connect";
import { VenueService } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { fieldError, withTransaction } from "@ttip/runtime";
import { audit, ensureDefaultRoles, toRole, type RoleRow } from "../store.js";
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
      const { rows } = await tx.query<RoleRow>(
        `INSERT INTO venue.roles (venue_id, role_id, name, points, is_manager) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (venue_id, role_id) DO UPDATE SET name = $3, points = $4, is_manager = $5, updated_at = now() RETURNING *`,
        [req.venueId, req.roleId, req.name, req.points, req.isManager],
      );
      await audit(tx, req.venueId, caller.subject, "role.changed", { role_id: req.roleId, name: req.name, points: req.points, is_manager: req.isManager });
      return rows[0];
    });
    return { role: toRole(role) };
  };
}

function listRolesHandler(h: VenueHandlerContext): ServiceImpl<typeof VenueService>["listRoles"] {
  const { pool, access } = h;
  return async function (req, ctx) {
    await access.requireMemberOrManager(pool, ctx, req.venueId);
    await ensureDefaultRoles(pool, req.venueId);
    const { rows } = await pool.query<RoleRow>(`SELECT * FROM venue.roles WHERE venue_id = $1 ORDER BY is_manager DESC, role_id`, [req.venueId]);
    return { roles: rows.map(toRole) };
  };
}
