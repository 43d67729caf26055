import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { maskPhone, NotFoundError, optionalTimestamp, type Queryable } from "@ttip/runtime";
import { Role, UserSchema, type User } from "@ttip/proto/ttip/auth/v1/auth_pb.js";

export interface UserRow {
  user_id: string;
  phone: string;
  roles: string[];
  display_name: string;
  photo_url: string;
  locale: number;
  birth_year: number | null;
  pin_hash: string | null;
  pin_failures: number;
  lockouts: number;
  locked_until: Date | null;
  blocked_at?: Date | null;
  blocked_reason?: string;
  created_at: Date;
}

/**
 * The columns a UserRow holds, named rather than `*`: the runtime sends a
 * statement with a column wildcard unprepared (parsed and planned every call).
 */
export const USER_COLUMNS = "user_id, phone, roles, display_name, photo_url, locale, birth_year, pin_hash, pin_failures, lockouts, locked_until, blocked_at, blocked_reason, created_at";

const ROLE_NAMES: Record<number, string> = {
  [Role.CUSTOMER]: "customer",
  [Role.WORKER]: "worker",
  [Role.VENUE_MANAGER]: "venue_manager",
  [Role.ADMIN]: "admin",
  [Role.PARTNER]: "partner",
  [Role.SUPPORT]: "support",
  [Role.FINANCE]: "finance",
};
const ROLE_VALUES = new Map(Object.entries(ROLE_NAMES).map(([v, n]) => [n, Number(v) as Role]));

export const roleName = (role: Role): string => ROLE_NAMES[role];
export const roleValue = (name: string): Role => ROLE_VALUES.get(name) ?? Role.UNSPECIFIED;

export function toUser(u: UserRow): User {
  const locked = u.locked_until && u.locked_until > new Date() ? u.locked_until : undefined;
  return create(UserSchema, {
    userId: u.user_id,
    phoneMasked: maskPhone(u.phone),
    roles: u.roles.map(roleValue),
    displayName: u.display_name,
    photoUrl: u.photo_url,
    locale: u.locale,
    hasPin: !!u.pin_hash,
    lockedUntil: optionalTimestamp(locked),
    createdAt: timestampFromDate(u.created_at),
    blockedAt: optionalTimestamp(u.blocked_at),
    blockedReason: u.blocked_reason ?? "",
  });
}

export async function findUser(db: Queryable, userId: string, lock = false): Promise<UserRow | undefined> {
  const { rows } = await db.query(`SELECT ${USER_COLUMNS} FROM auth.users WHERE user_id = $1${lock ? " FOR UPDATE" : ""}`, [userId]);
  return rows[0];
}

export async function getUser(db: Queryable, userId: string, lock = false): Promise<UserRow> {
  const u = await findUser(db, userId, lock);
  if (!u) throw new NotFoundError(`user ${userId} not found`);
  return u;
}
