import { createConnectTransport } from "@connectrpc/connect-web";
import { randomUUID } from "expo-crypto";
import { getLocales } from "expo-localization";
import { useState } from "react";
import { Share } from "react-native";
import { AppRoot } from "./App";
import { phoneBiometric } from "./lib/biometric";
import { apiUrl } from "./lib/config";
import { deviceKeyring } from "./lib/device-key";
import { pickLocale } from "./lib/i18n";
import { phonePush } from "./lib/push";
import { SessionStore } from "./lib/session";
import { cacheStore, secureStore } from "./lib/stores";
import { CALL_TIMEOUT_MS } from "./lib/transport";
/** The app on a phone (and in the browser build): the real gateway, stores, biometrics and push. */
export function PhoneApp() {
    const [services] = useState(phoneServices);
    const [factory] = useState(() => (interceptors) => createConnectTransport({ baseUrl: apiUrl(), defaultTimeoutMs: CALL_TIMEOUT_MS, interceptors }));
    return <AppRoot services={services} transport={factory} deviceLocale={pickLocale(getLocales().map((l) => l.languageTag))}/>;
}
function phoneServices() {
    return {
        sessions: new SessionStore(secureStore),
        cache: cacheStore,
        keyring: deviceKeyring,
        biometric: phoneBiometric,
        push: phonePush,
        share: async (message, url) => void (await Share.share({ message, url })),
        newKey: () => randomUUID(),
    };
}
