"use client";
import { useQuery } from "@connectrpc/connect-query";
import { VenueService } from "@ttip/proto/ttip/venue/v1/venue_service_pb.js";
import { venueRoleName } from "../../lib/venue-i18n";
import { useVT } from "./use-vt";

/** The venue's roles by their names in the manager's language, for tables that carry only a role's key. */
export function useRoleName(venueId: string): (roleId: string) => string {
  const { locale } = useVT();
  const roles = useQuery(VenueService.method.listRoles, { venueId });
  return (roleId) => venueRoleName(roles.data?.roles.find((r) => r.roleId === roleId), roleId, locale);
}
