// Renders the whole app against a FakeGateway, with in-memory stores, the real
// software device key (secureStoreKeyring) and a biometric prompt the test answers.
import { render, screen, waitFor, fireEvent } from "@testing-library/react-native";
import { AppRoot } from "../App";
import { secureStoreKeyring } from "../lib/device-key";
import { memoryStore } from "../lib/key-value";
import { SessionStore } from "../lib/session";
export function newPhone() {
    return { secure: memoryStore(), cache: memoryStore(), biometricAnswers: [], biometricPrompts: [], pushToken: "fcm-token-0123456789", shared: [], keys: 0 };
}
export async function renderApp(gw, phone = newPhone(), deviceLocale = "en") {
    const services = {
        sessions: new SessionStore(phone.secure),
        cache: phone.cache,
        keyring: async () => secureStoreKeyring(phone.secure, (n) => crypto.getRandomValues(new Uint8Array(n))),
        biometric: {
            confirm: async (prompt) => {
                phone.biometricPrompts.push(prompt);
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
    const result = await render(<AppRoot services={services} transport={(i) => gw.transport(i)} deviceLocale={deviceLocale}/>);
    return { ...result, phone, services };
}
/** OTP then PIN, as a returning worker. */
export async function signIn(gw, phoneNumber = "0712 345 678") {
    await fireEvent.changeText(await screen.findByTestId("phone"), phoneNumber);
    await fireEvent.press(screen.getByTestId("signin-submit"));
    await fireEvent.changeText(await screen.findByTestId("otp"), gw.otp);
    await fireEvent.press(screen.getByTestId("signin-submit"));
    await fireEvent.changeText(await screen.findByTestId("pin"), gw.pin);
    await fireEvent.press(screen.getByTestId("signin-submit"));
    await waitFor(() => expect(screen.getByTestId("home")).toBeTruthy());
}
