// Where the gateway is. On a phone in Expo Go the app is served by Metro from the
// developer's machine, so the gateway of `make run` is on that same host, port 8080.
// In the browser build, `?api=` names it (the tests serve the build on its own port),
// else the page's own origin.
import Constants from "expo-constants";
import { Platform } from "react-native";
export const GATEWAY_PORT = 8080;
export function apiUrl() {
    const fromEnv = process.env.EXPO_PUBLIC_TTIP_API_URL;
    if (fromEnv)
        return fromEnv;
    if (Platform.OS === "web" && typeof window !== "undefined") {
        return new URLSearchParams(window.location.search).get("api") ?? window.location.origin;
    }
    const metroHost = Constants.expoConfig?.hostUri?.split(":")[0];
    return `http://${metroHost ?? "127.0.0.1"}:${GATEWAY_PORT}`;
}
