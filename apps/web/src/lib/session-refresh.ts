// Rotating a browser session's refresh token when its access token is refused: the worker and venue apps' and the
// admin console's. Auth takes each refresh token once, and a second use ends the whole session (reuse of a stolen
// token). The tabs of one origin share the session (local storage): two refreshing at once sent one token twice,
// and the session ended in both. So one tab at a time rotates it (Web Locks), and a tab that waited takes the
// tokens the other saved. And only auth's refusal of the token ends the session here: before, a dropped
// connection at the moment the access token expired signed the user out.
import { Code, ConnectError } from "@connectrpc/connect";

export interface Tokens {
  accessToken: string;
  refreshToken: string;
}

export interface SessionStore {
  load(): Tokens | undefined;
  save(tokens: Tokens): void;
  clear(): void;
}

/**
 * How long a rotation may take: the other tabs wait on its lock meanwhile, and a refresh hung on a half-open
 * connection held them all for good. Given to `rotate` as its call's options.
 */
const REFRESH_TIMEOUT_MS = 15_000;

/** The origin's lock around a rotation: one per app, as each keeps its own session. */
export type RefreshLockName = `ttip.${string}.session-refresh`;

/**
 * `refresh(refusedAccessToken)`: true when the session now holds other tokens to try again with, false when it
 * has none (signed out, or auth refused the refresh token: cleared) or the refresh failed for now.
 */
export function sessionRefresher(
  store: SessionStore, lock: RefreshLockName, rotate: (refreshToken: string, call: { timeoutMs: number }) => Promise<Tokens | undefined>,
): (refused: string) => Promise<boolean> {
  let refreshing: Promise<boolean> | undefined;
  const once = async (refused: string): Promise<boolean> => {
    const s = store.load();
    if (!s) return false;
    // Another tab rotated it while this one waited for the lock: its tokens are this tab's too.
    if (s.accessToken !== refused) return true;
    try {
      const tokens = await rotate(s.refreshToken, { timeoutMs: REFRESH_TIMEOUT_MS });
      if (!tokens) return false;
      store.save(tokens);
      return true;
    } catch (err) {
      if (ConnectError.from(err).code === Code.Unauthenticated) store.clear();
      return false;
    }
  };
  return (refused) => (refreshing ??= inOneTab(lock, () => once(refused)).finally(() => (refreshing = undefined)));
}

/** Runs `fn` holding the origin's lock `name`; alone where the browser has no Web Locks (a page over plain http). */
function inOneTab<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const locks = globalThis.navigator?.locks;
  return locks ? (locks.request(name, fn) as Promise<T>) : fn();
}
