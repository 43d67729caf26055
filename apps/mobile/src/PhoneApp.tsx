// The app with the real outside world: the gateway over fetch, the secure store,
// AsyncStorage, biometrics, push and the share sheet (the browser build swaps in its
// fallbacks through the .web.ts files).
import type { Interceptor } from "@connectrpc/connect";
import { randomUUID } from "expo-crypto";
import { getLocales } from "expo-localization";
import { useState } from "react";
import { Share } from "react-native";
import { AppRoot, type TransportFactory } from "./App";
import type { AppServices } from "./app-context";
import { phoneBiometric } from "./lib/biometric";
import { apiUrl } from "./lib/config";
import { deviceKeyring } from "./lib/device-key";
import { pickLocale } from "./lib/i18n";
import { phonePush } from "./lib/push";
import { SessionStore } from "./lib/session";
import { cacheStore, secureStore } from "./lib/stores";
import { gatewayTransport } from "./lib/transport";

/** The app on a phone (and in the browser build): the real gateway, stores, biometrics and push. */
export function PhoneApp() {
  const [services] = useState(phoneServices);
  const [factory] = useState<TransportFactory>(() => (interceptors: Interceptor[]) => gatewayTransport(apiUrl(), interceptors));
  return <AppRoot services={services} transport={factory} deviceLocale={pickLocale(getLocales().map((l) => l.languageTag))} />;
}

function phoneServices(): AppServices {
  return {
    sessions: new SessionStore(secureStore),
    cache: cacheStore,
    writeKeys: secureStore,
    keyring: deviceKeyring,
    biometric: phoneBiometric,
    push: phonePush,
    share: async (message, url) => void (await Share.share({ message, url })),
    newKey: () => randomUUID(),
  };
}
