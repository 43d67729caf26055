// Where the gateway is. On a phone in Expo Go the app is served by Metro from the
// developer's machine, so the gateway of `make run` is on that same host, port 8080.
// In the browser build, the page's own origin; `?api=` names another only on loopback
// (the tests serve the build on its own port): a link naming any server would send it
// every call, tokens, codes and PINs with them.
import Constants from "expo-constants";
import { Platform } from "react-native";

export const GATEWAY_PORT = 8080;

export function apiUrl(): string {
  const fromEnv = process.env.EXPO_PUBLIC_TTIP_API_URL;
  if (fromEnv) return fromEnv;
  if (Platform.OS === "web" && typeof window !== "undefined") {
    return loopbackApi(new URLSearchParams(window.location.search).get("api")) ?? window.location.origin;
  }
  const metroHost = Constants.expoConfig?.hostUri?.split(":")[0];
  return `http://${metroHost ?? "127.0.0.1"}:${GATEWAY_PORT}`;
}

const LOOPBACK_HOST = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/;

/** `?api=`'s origin when both it and this page are on loopback; undefined otherwise. */
function loopbackApi(named: string | null): string | undefined {
  if (!named || !LOOPBACK_HOST.test(window.location.hostname)) return undefined;
  try {
    const url = new URL(named);
    return LOOPBACK_HOST.test(url.hostname) ? url.origin : undefined;
  } catch {
    return undefined;
  }
}
