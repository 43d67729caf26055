import { fireEvent, screen, waitFor } from "@testing-library/react-native";
import { Role } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { FakeGateway } from "../testing/fake-gateway";
import { memoryStore } from "../lib/key-value";
import { AFTER_POLLS, newPhone, renderApp, signIn, toPinStep } from "../testing/render-app";
import { resetPushRegistration } from "../screens/push-registration";

afterEach(() => resetPushRegistration());

test("a returning worker signs in with the OTP then the PIN and lands on home with the balance", async () => {
  const gw = new FakeGateway();
  const { phone } = await renderApp(gw);
  await signIn(gw);
  expect(gw.last("StartPhoneVerification")).toMatchObject({ phone: "254712345678" });
  expect(gw.last("VerifyPhoneOtp")).toMatchObject({ otp: "123456", role: Role.WORKER });
  expect(gw.last("VerifyPin")).toMatchObject({ pinSessionId: "pin-session-1", pin: "2580" });
  expect(await screen.findByText("KES 1,500")).toBeTruthy();
  // The session is in the secure store, not the plain cache.
  expect(JSON.parse(phone.secure.data.get("session")!).userId).toBe(gw.userId);
  expect([...phone.cache.data.keys()].some((k) => k.includes("session"))).toBe(false);
});

test("a number that is not Kenyan is refused on the phone, before any call", async () => {
  const gw = new FakeGateway();
  await renderApp(gw);
  await fireEvent.changeText(await screen.findByTestId("phone"), "12345");
  await fireEvent.press(screen.getByTestId("signin-submit"));
  expect(await screen.findByRole("alert")).toHaveTextContent("Enter a Kenyan mobile number, for example 0712 345 678.");
  expect(gw.count("StartPhoneVerification")).toBe(0);
});

test("a wrong PIN says how many tries are left and keeps the worker signed out", async () => {
  const gw = new FakeGateway();
  const { phone } = await renderApp(gw);
  await toPinStep(gw);
  await fireEvent.changeText(await screen.findByTestId("pin"), "9999");
  await fireEvent.press(screen.getByTestId("signin-submit"));
  expect(await screen.findByRole("alert")).toHaveTextContent("Wrong PIN. 4 tries left before your PIN is locked.");
  expect(phone.secure.data.has("session")).toBe(false);
  expect(screen.queryByTestId("home")).toBeNull();
});

test("a new worker chooses a PIN (typed twice) before the app opens", async () => {
  const gw = new FakeGateway();
  gw.pin = undefined;
  await renderApp(gw);
  await toPinStep(gw);
  await fireEvent.changeText(await screen.findByTestId("pin"), "4321");
  await fireEvent.changeText(screen.getByTestId("pin2"), "4322");
  await fireEvent.press(screen.getByTestId("signin-submit"));
  expect(await screen.findByRole("alert")).toHaveTextContent("The two PINs are not the same.");
  expect(screen.queryByTestId("home")).toBeNull();
  await fireEvent.changeText(screen.getByTestId("pin2"), "4321");
  await fireEvent.press(screen.getByTestId("signin-submit"));
  await waitFor(() => expect(screen.getByTestId("home")).toBeTruthy());
  expect(gw.pin).toBe("4321");
});

test("a refused access token is rotated once with the refresh token and the call succeeds", async () => {
  const gw = new FakeGateway();
  const { phone } = await renderApp(gw);
  await signIn(gw);
  const before = JSON.parse(phone.secure.data.get("session")!).refreshToken;
  gw.validAccess.clear(); // every access token expires
  gw.addTip(300_00n);
  expect(await screen.findByText("KES 1,800", {}, AFTER_POLLS)).toBeTruthy();
  expect(gw.count("RefreshSession")).toBeGreaterThanOrEqual(1);
  expect(JSON.parse(phone.secure.data.get("session")!).refreshToken).not.toBe(before);
});

test("in Swahili, the gateway's refusals are Swahili sentences too", async () => {
  const gw = new FakeGateway();
  await renderApp(gw, undefined, "sw");
  await toPinStep(gw);
  await fireEvent.changeText(await screen.findByTestId("pin"), "9999");
  await fireEvent.press(screen.getByTestId("signin-submit"));
  expect(await screen.findByRole("alert")).toHaveTextContent("PIN si sahihi. Umebakiwa na majaribio 4 kabla PIN yako haijafungwa.");
});

test("a mistyped number: the code step goes back to the phone step, and the code is sent to the number typed again", async () => {
  const gw = new FakeGateway();
  await renderApp(gw);
  await fireEvent.changeText(await screen.findByTestId("phone"), "0712345679");
  await fireEvent.press(screen.getByTestId("signin-submit"));
  await fireEvent.changeText(await screen.findByTestId("otp"), "000000");
  await fireEvent.press(screen.getByTestId("signin-submit"));
  expect(await screen.findByRole("alert")).toHaveTextContent("That is not the code we sent. 4 tries left.");
  await fireEvent.press(screen.getByTestId("signin-other-number"));
  expect(screen.queryByRole("alert")).toBeNull();
  await toPinStep(gw);
  expect(gw.last("StartPhoneVerification")).toMatchObject({ phone: "254712345678" });
  expect(gw.count("StartPhoneVerification")).toBe(2);
  expect(await screen.findByTestId("pin")).toBeTruthy();
});

test("a forgotten PIN: five wrong tries lock it, naming the way out; Forgot your PIN? sets a new one on the code just verified and signs in", async () => {
  const gw = new FakeGateway();
  const { phone } = await renderApp(gw);
  await toPinStep(gw);
  for (let i = 0; i < 5; i++) {
    await fireEvent.changeText(await screen.findByTestId("pin"), "9999");
    await fireEvent.press(screen.getByTestId("signin-submit"));
    await waitFor(() => expect(gw.count("VerifyPin")).toBe(i + 1));
  }
  expect(await screen.findByRole("alert")).toHaveTextContent("Your PIN is locked after too many wrong tries. Try again in 15 minutes, or choose a new PIN with “Forgot your PIN?”.");
  await fireEvent.press(screen.getByTestId("signin-forgot-pin"));
  expect(await screen.findByText("Choose a new PIN. It signs you out on every other phone and browser.")).toBeTruthy();
  await fireEvent.changeText(screen.getByTestId("pin"), "4321");
  await fireEvent.changeText(screen.getByTestId("pin2"), "4322");
  await fireEvent.press(screen.getByTestId("signin-submit"));
  expect(await screen.findByRole("alert")).toHaveTextContent("The two PINs are not the same.");
  expect(gw.count("ResetPin")).toBe(0);
  await fireEvent.changeText(screen.getByTestId("pin2"), "4321");
  await fireEvent.press(screen.getByTestId("signin-submit"));
  await waitFor(() => expect(screen.getByTestId("home")).toBeTruthy());
  expect(gw.last("ResetPin")).toMatchObject({ challengeId: gw.last("VerifyPhoneOtp").challengeId, otp: gw.otp, newPin: "4321" });
  expect(gw.pin).toBe("4321");
  expect(JSON.parse(phone.secure.data.get("session")!).pinPending).not.toBe(true);
});

test("a PIN step that ended (five minutes after the code) goes back to the number and says why; the number again signs in", async () => {
  const gw = new FakeGateway();
  await renderApp(gw);
  await toPinStep(gw);
  gw.pinStepEnded = true;
  await fireEvent.changeText(await screen.findByTestId("pin"), gw.pin!);
  await fireEvent.press(screen.getByTestId("signin-submit"));
  // Before, the PIN step stayed, each Continue refused with a general sentence, and no way back to the number.
  expect(await screen.findByRole("alert")).toHaveTextContent("This sign-in has timed out (5 minutes after the code) or was already used: enter your number for a new code.");
  expect(screen.getByTestId("phone")).toBeTruthy();
  gw.pinStepEnded = false;
  await signIn(gw);
});

test("a session the secure store kept from an install since removed (iOS keeps the Keychain) opens at sign-in, its device key forgotten; a restart of the same install stays signed in", async () => {
  const gw = new FakeGateway();
  const phone = newPhone();
  const first = await renderApp(gw, phone);
  await signIn(gw);
  phone.secure.data.set(`device_key.${gw.userId}`, JSON.stringify({ deviceId: "d-1", secretHex: "00" }));
  await first.unmount();
  const again = await renderApp(gw, phone);
  expect(await screen.findByTestId("home")).toBeTruthy();
  await again.unmount();
  // Removed and installed again: the app's own storage went, the Keychain stayed.
  phone.cache = memoryStore();
  await renderApp(gw, phone);
  // Before, the next installer opened as this worker, their key approving withdrawals.
  expect(await screen.findByTestId("phone")).toBeTruthy();
  expect(screen.queryByTestId("home")).toBeNull();
  expect([...phone.secure.data.keys()]).toEqual([]);
});

test("a secure store that cannot be read at start (a keystore error) opens at sign-in, not a blank screen", async () => {
  const gw = new FakeGateway();
  const phone = newPhone();
  const read = phone.secure.get;
  phone.secure.get = async () => {
    throw new Error("android.security.KeyStoreException: key user not authenticated");
  };
  await renderApp(gw, phone);
  // Before, the start never finished: nothing was drawn, at every launch.
  expect(await screen.findByTestId("phone")).toBeTruthy();
  phone.secure.get = read;
  await signIn(gw);
});

test("a cache that cannot be written at start (storage full) signs no one out", async () => {
  const gw = new FakeGateway();
  const phone = newPhone();
  const first = await renderApp(gw, phone);
  await signIn(gw);
  await first.unmount();
  phone.cache.set = async () => {
    throw new Error("database or disk is full");
  };
  await renderApp(gw, phone);
  expect(await screen.findByTestId("home")).toBeTruthy();
});

test("a removed install's session whose store cannot be read at the first start is still forgotten at the next", async () => {
  const gw = new FakeGateway();
  const phone = newPhone();
  const first = await renderApp(gw, phone);
  await signIn(gw);
  await first.unmount();
  // Removed and installed again; at the first start the Keychain cannot be read once.
  phone.cache = memoryStore();
  const read = phone.secure.get;
  phone.secure.get = async () => {
    throw new Error("errSecInteractionNotAllowed");
  };
  const failed = await renderApp(gw, phone);
  expect(await screen.findByTestId("phone")).toBeTruthy();
  await failed.unmount();
  phone.secure.get = read;
  await renderApp(gw, phone);
  // Before (the mark written after that failed start), this start opened as the removed install's worker.
  expect(await screen.findByTestId("phone")).toBeTruthy();
  expect(phone.secure.data.has("session")).toBe(false);
});
