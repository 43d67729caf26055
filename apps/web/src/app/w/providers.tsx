"use client";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { TransportProvider } from "@connectrpc/connect-query";
import { createConnectTransport } from "@connectrpc/connect-web";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { useState, type ReactNode } from "react";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { clearSession, loadSession, saveSession } from "../../lib/session";
import { sessionRefresher } from "../../lib/session-refresh";

let refresher: ((refused: string) => Promise<boolean>) | undefined;

/**
 * Rotates the session's refresh token, one tab at a time (session-refresh.ts): after `refusedAccessToken` was refused,
 * or to take a role just granted into the tokens. True when the session holds newer tokens.
 */
export function refreshSession(refusedAccessToken: string): Promise<boolean> {
  const baseUrl = window.location.origin;
  refresher ??= sessionRefresher({ load: loadSession, save: saveSession, clear: clearSession }, "ttip.web.session-refresh", async (refreshToken, call) =>
    (await createClient(AuthService, createConnectTransport({ baseUrl, useBinaryFormat: true })).refreshSession({ refreshToken }, call)).tokens);
  return refresher(refusedAccessToken);
}

/** Adds the access token; when it is refused, rotates the refresh token once (refreshSession) and retries. */
const authInterceptor: Interceptor = (next) => async (req) => {
  const s = loadSession();
  if (s) req.header.set("authorization", `Bearer ${s.accessToken}`);
  try {
    return await next(req);
  } catch (err) {
    if (s && ConnectError.from(err).code === Code.Unauthenticated && req.stream === false && (await refreshSession(s.accessToken))) {
      req.header.set("authorization", `Bearer ${loadSession()!.accessToken}`);
      return next(req);
    }
    throw err;
  }
};

export function Providers({ children }: { children: ReactNode }) {
  const [client] = useState(() => new QueryClient({ defaultOptions: { queries: { retry: 1, refetchOnWindowFocus: true } } }));
  const [transport] = useState(() => {
    const baseUrl = window.location.origin;
    return createConnectTransport({ baseUrl, useBinaryFormat: true, interceptors: [authInterceptor] });
  });
  return (
    <TransportProvider transport={transport}>
      <QueryClientProvider client={client}>{children}</QueryClientProvider>
    </TransportProvider>
  );
}
