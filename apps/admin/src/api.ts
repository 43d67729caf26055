// The console talks to the gateway it is served by, with the Connect clients
// generated from the contracts (the same ones apps/web uses). The session is
// the token pair from auth in this tab's local storage, refreshed (rotated)
// once when an access token is refused.
import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { forgetDeviceKey, loadDeviceKey, signChallenge } from "../../web/src/lib/device-key";
import { sessionRefresher } from "../../web/src/lib/session-refresh";

export interface Session {
  accessToken: string;
  refreshToken: string;
  userId: string;
  roles: string[];
}

const KEY = "ttip_admin_session";
/** The gateway refuses an admin money action without this header (a device step-up token). */
export const STEP_UP_HEADER = "x-ttip-step-up";

function claims(accessToken: string): { sub: string; roles?: string[] } {
  return JSON.parse(atob(accessToken.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
}

export function loadSession(): Session | undefined {
  try {
    const s = JSON.parse(localStorage.getItem(KEY) ?? "null") as Session | null;
    return s?.accessToken ? s : undefined;
  } catch {
    return undefined;
  }
}

export function saveSession(tokens: { accessToken: string; refreshToken: string }): Session {
  const c = claims(tokens.accessToken);
  const s = { accessToken: tokens.accessToken, refreshToken: tokens.refreshToken, userId: c.sub, roles: c.roles ?? [] };
  localStorage.setItem(KEY, JSON.stringify(s));
  return s;
}

export function clearSession(): void {
  localStorage.removeItem(KEY);
}

/**
 * Binary protobuf, not JSON: the gateway forwards the message bytes to a service in
 * another process without decoding them, and the answers are smaller.
 */
const gatewayTransport = (interceptors: Interceptor[] = []) =>
  createConnectTransport({ baseUrl: window.location.origin, useBinaryFormat: true, interceptors });
const rotate = sessionRefresher({ load: loadSession, save: saveSession, clear: clearSession }, "ttip.admin.session-refresh", async (refreshToken, call) =>
  (await createClient(AuthService, gatewayTransport()).refreshSession({ refreshToken }, call)).tokens);

/** Rotates the refresh token (new roles come with the new access token); `refused`: the access token the gateway refused. */
export function refresh(refused = loadSession()?.accessToken ?? ""): Promise<boolean> {
  return rotate(refused);
}

const withToken: Interceptor = (next) => async (req) => {
  const s = loadSession();
  if (s) req.header.set("authorization", `Bearer ${s.accessToken}`);
  try {
    return await next(req);
  } catch (err) {
    // A step-up token is spent by the first try: never replay a call that carried one.
    if (s && !req.header.has(STEP_UP_HEADER) && ConnectError.from(err).code === Code.Unauthenticated && !req.stream && (await refresh(s.accessToken))) {
      req.header.set("authorization", `Bearer ${loadSession()!.accessToken}`);
      return next(req);
    }
    throw err;
  }
};

const transport = gatewayTransport([withToken]);
const clients = new Map<DescService, unknown>();

export function api<S extends DescService>(service: S): Client<S> {
  let c = clients.get(service) as Client<S> | undefined;
  if (!c) clients.set(service, (c = createClient(service, transport)));
  return c;
}

/**
 * A one-time proof from this browser's device key (P-256, made at sign-in,
 * private half not extractable), for one money action. Returns call options
 * carrying it.
 */
export async function stepUp(): Promise<{ headers: Record<string, string> }> {
  const s = loadSession();
  if (!s) throw new Error("Sign in first.");
  const key = await loadDeviceKey(s.userId);
  if (!key) throw new Error("This browser holds no device key for you: sign out, then sign in with your PIN to register this device.");
  const auth = api(AuthService);
  const ch = await auth.createDeviceChallenge({ deviceId: key.deviceId, purpose: "admin" }).catch(async (err: unknown) => {
    // Removed, or retired by auth (an account keeps ten keys): forgotten here, so the next sign-in adds a key.
    if (ConnectError.from(err).code !== Code.NotFound) throw err;
    await forgetDeviceKey(s.userId);
    throw new Error("This browser's device key was removed from your account: sign out, then sign in with your PIN to add it again.");
  });
  const signature = await signChallenge(key.privateKey, ch.challenge);
  const { stepUpToken } = await auth.verifyDeviceChallenge({ challengeId: ch.challengeId, signature });
  return { headers: { [STEP_UP_HEADER]: stepUpToken } };
}

/** The API's own words, with the field it names: admins need the precise reason. */
export function errorText(err: unknown): string {
  if (!(err instanceof ConnectError)) return err instanceof Error ? err.message : String(err);
  const words: Partial<Record<Code, string>> = {
    [Code.InvalidArgument]: "Check the input",
    [Code.PermissionDenied]: "Not allowed",
    [Code.Unauthenticated]: "Signed out",
    [Code.FailedPrecondition]: "Cannot do that now",
    [Code.NotFound]: "Not found",
    [Code.ResourceExhausted]: "Too many tries",
    [Code.Unavailable]: "Unavailable, try again",
  };
  return `${words[err.code] ?? "Error"}: ${err.rawMessage}`;
}

export const hasRole = (s: Session | undefined, ...roles: string[]) => !!s && roles.some((r) => s.roles.includes(r));
export const CONSOLE_ROLES = ["admin", "support", "finance"];
export const MONEY_ROLES = ["admin", "finance"];
