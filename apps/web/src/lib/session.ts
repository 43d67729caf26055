// The worker's session in this browser: the token pair from auth, kept in
// local storage so a reload stays signed in; refreshed (rotated) when the
// access token is refused.
export interface Session {
  accessToken: string;
  refreshToken: string;
  userId: string;
}

const KEY = "ttip_session";

/**
 * Whose screens this tab shows: the session's user at the tab's first read, or at its own sign-in. The tabs share
 * one stored session, and another tab signing in someone else (a shared phone) replaces it under this one's screens,
 * read for the first user: a save there changed the second user's account with the first's name, e-mail and choices.
 * Read here, that session is none for this tab (its calls carry no token) until it loads again (onSessionUserChange).
 */
let tabUser: string | undefined;

function storedSession(): Session | undefined {
  try {
    const s = JSON.parse(window.localStorage.getItem(KEY) ?? "null") as Session | null;
    return s?.accessToken ? s : undefined;
  } catch {
    return undefined;
  }
}

export function loadSession(): Session | undefined {
  if (typeof window === "undefined") return undefined;
  const s = storedSession();
  if (!s) return undefined;
  tabUser ??= s.userId;
  return s.userId === tabUser ? s : undefined;
}

/**
 * Calls `changed` when another tab changes whose session is stored (signs out, or signs in someone else); answers
 * the unsubscribe. A tab's own changes go through saveSession and clearSession.
 */
export function onSessionUserChange(changed: (stored: Session | undefined) => void): () => void {
  const listener = (e: StorageEvent) => {
    if (e.key !== KEY && e.key !== null) return;
    const stored = storedSession();
    if (stored?.userId !== tabUser) changed(stored);
  };
  window.addEventListener("storage", listener);
  return () => window.removeEventListener("storage", listener);
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
  tabUser = userId;
  return s;
}

export function clearSession(): void {
  window.localStorage.removeItem(KEY);
  tabUser = undefined;
}
