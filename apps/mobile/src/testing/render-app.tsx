// Renders the whole app against a FakeGateway, with in-memory stores, the real
// software device key (secureStoreKeyring) and a biometric prompt the test answers.
import { render, screen, waitFor, fireEvent } from "@testing-library/react-native";
import * as ReactNative from "react-native";
import { AppRoot } from "../App";
import type { AppServices } from "../app-context";
import { secureStoreKeyring } from "../lib/device-key";
import type { Locale } from "../lib/i18n";
import { memoryStore } from "../lib/key-value";
import { SessionStore } from "../lib/session";
import { FakeGateway } from "./fake-gateway";

// React Native loads each component on its first use, so a test file's first render paid
// for compiling them (about 125 modules: 27-34 s on a cold jest cache at load 20-28, so the
// first test hit its 30 s; under 1 s warm). Touched here, they compile while the test file
// loads, which no test's timeout counts. These are the components the app's screens use.
for (const component of ["Image", "Pressable", "ScrollView", "Share", "Switch", "Text", "TextInput", "View"] as const) void ReactNative[component];

/**
 * How long a test waits for what a poll brings (home's every 3 s, the waiting settings' every 5 s,
 * a payout's every 1 s): three of the slowest polls, as a loaded machine needs, within jest's 30 s per test.
 */
export const AFTER_POLLS = { timeout: 16_000 };

export interface TestPhone {
  secure: ReturnType<typeof memoryStore>;
  cache: ReturnType<typeof memoryStore>;
  biometricAnswers: boolean[];
  biometricPrompts: string[];
  /** While set, the biometric prompt stays open until it settles (the worker has not touched the sensor yet). */
  biometricHeld?: Promise<void>;
  pushToken: string | undefined;
  shared: string[];
  keys: number;
}

export function newPhone(): TestPhone {
  return { secure: memoryStore(), cache: memoryStore(), biometricAnswers: [], biometricPrompts: [], pushToken: "fcm-token-0123456789", shared: [], keys: 0 };
}

export async function renderApp(gw: FakeGateway, phone: TestPhone = newPhone(), deviceLocale: Locale = "en") {
  const services: AppServices = {
    sessions: new SessionStore(phone.secure),
    cache: phone.cache,
    writeKeys: phone.secure,
    keyring: async () => secureStoreKeyring(phone.secure, (n) => crypto.getRandomValues(new Uint8Array(n))),
    biometric: {
      confirm: async (prompt) => {
        phone.biometricPrompts.push(prompt);
        await phone.biometricHeld;
        return phone.biometricAnswers.shift() ?? true;
      },
    },
    push: {
      token: async () => (phone.pushToken ? { token: phone.pushToken, platform: "android" } : undefined),
      onNotification: () => () => undefined,
    },
    share: async (message) => void phone.shared.push(message),
    newKey: () => `idem-key-${++phone.keys}-0000`,
  };
  const result = await render(<AppRoot services={services} transport={(i) => gw.transport(i)} deviceLocale={deviceLocale} />);
  return { ...result, phone, services };
}

/** OTP then PIN, as a returning worker. */
/** Sign-in's phone and code steps, up to the PIN step. */
export async function toPinStep(gw: FakeGateway, phoneNumber = "0712 345 678") {
  await fireEvent.changeText(await screen.findByTestId("phone"), phoneNumber);
  await fireEvent.press(screen.getByTestId("signin-submit"));
  await fireEvent.changeText(await screen.findByTestId("otp"), gw.otp);
  await fireEvent.press(screen.getByTestId("signin-submit"));
}

export async function signIn(gw: FakeGateway, phoneNumber = "0712 345 678") {
  await toPinStep(gw, phoneNumber);
  await fireEvent.changeText(await screen.findByTestId("pin"), gw.pin!);
  await fireEvent.press(screen.getByTestId("signin-submit"));
  await waitFor(() => expect(screen.getByTestId("home")).toBeTruthy());
}

/**
 * The worker's PIN typed where this phone's key is added (auth adds a key only with it): asked when the account
 * holds no key yet, at the first step-up of a test's phone.
 */
export async function givePinForKey(gw: FakeGateway) {
  if (gw.devices.size) return;
  await fireEvent.changeText(await screen.findByTestId("key-pin-input"), gw.pin!);
  await fireEvent.press(screen.getByTestId("key-pin-continue"));
}
