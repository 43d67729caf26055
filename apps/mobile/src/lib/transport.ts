// The Connect client to the gateway: the Connect protocol in binary protobuf over
// fetch (unary calls only; React Native's fetch cannot stream, so live data is
// polled), the access token on every call, one refresh-token rotation when it is refused.
import { Code, ConnectError, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import type { SessionStore } from "./session";

/** Every call carries the app's language so services answer in it. */
export function authInterceptor(sessions: SessionStore, refreshTransport: () => Transport, locale: () => string): Interceptor {
  let refreshing: Promise<boolean> | undefined;
  const refresh = () =>
    (refreshing ??= (async () => {
      const s = sessions.get();
      if (!s) return false;
      try {
        const { tokens } = await createClient(AuthService, refreshTransport()).refreshSession({ refreshToken: s.refreshToken });
        // Signed out (or signed in again) while it was asked: its answer would sign the worker back in.
        if (!tokens || sessions.get()?.refreshToken !== s.refreshToken) return false;
        await sessions.save(tokens);
        return true;
      } catch (err) {
        // Only a refused refresh token ends the session (not a newer one signed in meanwhile); no network keeps it for later.
        if (ConnectError.from(err).code === Code.Unauthenticated && sessions.get()?.refreshToken === s.refreshToken) await sessions.clear();
        return false;
      }
    })().finally(() => (refreshing = undefined)));
  return (next) => async (req) => {
    req.header.set("accept-language", locale());
    const s = sessions.get();
    if (s) req.header.set("authorization", `Bearer ${s.accessToken}`);
    try {
      return await next(req);
    } catch (err) {
      if (s && ConnectError.from(err).code === Code.Unauthenticated && req.stream === false && (await refresh())) {
        req.header.set("authorization", `Bearer ${sessions.get()!.accessToken}`);
        return next(req);
      }
      throw err;
    }
  };
}

/** Calls time out after 15 s: a phone on a bad network must not spin forever. */
export const CALL_TIMEOUT_MS = 15_000;

/**
 * The gateway's transport. Binary protobuf, not JSON: the gateway forwards the
 * message bytes to a service in another process without decoding them, and the
 * answers are smaller on a phone's network. `fetch` is the platform's unless given.
 */
export function gatewayTransport(baseUrl: string, interceptors: Interceptor[] = [], fetch?: typeof globalThis.fetch): Transport {
  return createConnectTransport({ baseUrl, useBinaryFormat: true, defaultTimeoutMs: CALL_TIMEOUT_MS, interceptors, fetch });
}
