// The worker's session in this browser: the token pair from auth, kept in
// local storage so a reload stays signed in; refreshed (rotated) when the
// access token is refused.
export interface Session {
  accessToken: string;
  refreshToken: string;
  userId: string;
}

const KEY = "ttip_session";

export function loadSession(): Session | undefined {
  if (typeof window === "undefined") return undefined;
  try {
    const s = JSON.parse(window.localStorage.getItem(KEY) ?? "null") as Session | null;
    return s?.accessToken ? s : undefined;
  } catch {
    return undefined;
  }
}

/** An access token's payload (base64url JSON), not verified: the browser only reads who it is and what to show. */
function claims(accessToken: string): { sub: string; roles?: unknown } {
  return JSON.parse(atob(accessToken.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
}

/** The roles the session's access token carries. */
export function sessionRoles(s: Session | undefined): string[] {
  if (!s) return [];
  try {
    const roles = claims(s.accessToken).roles;
    return Array.isArray(roles) ? roles.filter((r): r is string => typeof r === "string") : [];
  } catch {
    return [];
  }
}

export function saveSession(tokens: { accessToken: string; refreshToken: string }): Session {
  const userId = claims(tokens.accessToken).sub;
  const s = { accessToken: tokens.accessToken, refreshToken: tokens.refreshToken, userId };
  window.localStorage.setItem(KEY, JSON.stringify(s));
  return s;
}

export function clearSession(): void {
  window.localStorage.removeItem(KEY);
}
