import { fireEvent, screen, waitFor } from "@testing-library/react-native";
import { Role } from "@ttip/proto/ttip/auth/v1/auth_pb.js";
import { FakeGateway } from "../testing/fake-gateway";
import { AFTER_POLLS, renderApp, signIn } from "../testing/render-app";
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

test("a wrong PIN shows the field's error in words and keeps the worker signed out", async () => {
  const gw = new FakeGateway();
  const { phone } = await renderApp(gw);
  await fireEvent.changeText(await screen.findByTestId("phone"), "0712345678");
  await fireEvent.press(screen.getByTestId("signin-submit"));
  await fireEvent.changeText(await screen.findByTestId("otp"), gw.otp);
  await fireEvent.press(screen.getByTestId("signin-submit"));
  await fireEvent.changeText(await screen.findByTestId("pin"), "9999");
  await fireEvent.press(screen.getByTestId("signin-submit"));
  expect(await screen.findByRole("alert")).toHaveTextContent("Please check the pin: wrong PIN.");
  expect(phone.secure.data.has("session")).toBe(false);
  expect(screen.queryByTestId("home")).toBeNull();
});

test("a new worker chooses a PIN (typed twice) before the app opens", async () => {
  const gw = new FakeGateway();
  gw.pin = undefined;
  await renderApp(gw);
  await fireEvent.changeText(await screen.findByTestId("phone"), "0712345678");
  await fireEvent.press(screen.getByTestId("signin-submit"));
  await fireEvent.changeText(await screen.findByTestId("otp"), gw.otp);
  await fireEvent.press(screen.getByTestId("signin-submit"));
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
  await fireEvent.changeText(await screen.findByTestId("phone"), "0712345678");
  await fireEvent.press(screen.getByTestId("signin-submit"));
  await fireEvent.changeText(await screen.findByTestId("otp"), gw.otp);
  await fireEvent.press(screen.getByTestId("signin-submit"));
  await fireEvent.changeText(await screen.findByTestId("pin"), "9999");
  await fireEvent.press(screen.getByTestId("signin-submit"));
  expect(await screen.findByRole("alert")).toHaveTextContent("Tafadhali angalia pin: wrong PIN.");
});
