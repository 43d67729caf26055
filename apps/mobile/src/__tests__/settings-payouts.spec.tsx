// Settings for money and access: where payouts go (a new number proved by the device step-up), which devices may approve them, where the worker is signed in.
import { act, fireEvent, screen, waitFor } from "@testing-library/react-native";
import { FakeGateway } from "../testing/fake-gateway";
import { givePinForKey, newPhone, renderApp, signIn } from "../testing/render-app";
import { resetPushRegistration } from "../screens/push-registration";

afterEach(() => resetPushRegistration());

async function openPayoutSettings(gw: FakeGateway) {
  await signIn(gw);
  await fireEvent.press(screen.getByTestId("tab-settings"));
  await waitFor(() => expect(screen.getByTestId("payout-phone")).toBeTruthy());
}

async function savePayout(number: string, auto?: boolean, minimum?: string) {
  await fireEvent.changeText(screen.getByTestId("payout-phone-new"), number);
  if (auto !== undefined) await fireEvent(screen.getByTestId("auto-payout"), "valueChange", auto);
  if (minimum !== undefined) await fireEvent.changeText(screen.getByTestId("auto-minimum"), minimum);
  await fireEvent.press(screen.getByTestId("save-payout"));
}

test("a first payout number and automatic payout are saved without a step-up; a bad number or a minimum under KES 10 is refused before any call", async () => {
  const gw = new FakeGateway();
  const phone = newPhone();
  await renderApp(gw, phone);
  await openPayoutSettings(gw);
  expect(screen.getByTestId("payout-phone")).toHaveTextContent("No payout number yet: set one to pay out automatically.");

  await savePayout("0712 345", true, "50");
  expect(await screen.findByRole("alert")).toHaveTextContent("Enter a Kenyan mobile number, for example 0712 345 678.");
  await savePayout("0712 345 678", true, "9");
  expect(await screen.findByRole("alert")).toHaveTextContent("Enter the minimum in whole shillings, at least 10.");
  expect(gw.count("UpdatePayoutSettings")).toBe(0);

  await savePayout("0712 345 678", true, "500");
  expect(await screen.findByTestId("payout-note")).toHaveTextContent("Saved.");
  expect(gw.payoutSettings).toMatchObject({ phone: "254712345678", autoPayout: true, minimumMinor: 500_00n });
  expect(screen.getByTestId("payout-phone")).toHaveTextContent("Payouts go to 2547******78.");
  expect(screen.getByTestId("auto-minimum").props.value).toBe("500");
  expect(screen.queryByTestId("payout-cooling")).toBeNull();
  expect(phone.biometricPrompts).toEqual([]);
  expect(gw.count("CreateDeviceChallenge")).toBe(0);
});

test("replacing the payout number asks the fingerprint for the new number and sends the change with a payout_number step-up", async () => {
  const gw = new FakeGateway();
  gw.payoutSettings.phone = "254712345678";
  const phone = newPhone();
  await renderApp(gw, phone);
  await openPayoutSettings(gw);
  expect(screen.getByTestId("payout-phone")).toHaveTextContent("Payouts go to 2547******78.");

  await savePayout("0722 000 111");
  await givePinForKey(gw);
  expect(await screen.findByTestId("payout-note")).toHaveTextContent("Saved.");
  expect(phone.biometricPrompts).toEqual(["Confirm payouts to 0722 000 111"]);
  expect(gw.last("RegisterDevice")).toMatchObject({ pin: gw.pin });
  expect(gw.last("CreateDeviceChallenge").purpose).toBe("payout_number");
  expect(gw.count("UpdatePayoutSettings")).toBe(2);
  expect(gw.last("UpdatePayoutSettings")).toMatchObject({ payoutPhone: "254722000111", stepUpToken: expect.stringMatching(/^step-up-/) });
  expect(gw.stepUpTokens.size).toBe(0);
  expect(gw.payoutSettings.phone).toBe("254722000111");
  expect(screen.getByTestId("payout-phone")).toHaveTextContent("Payouts go to 2547******11.");
  expect(screen.getByTestId("payout-cooling")).toHaveTextContent(/^Automatic payouts to this new number start on \d{4}-\d{2}-\d{2} \d{2}:\d{2} \(Nairobi time\)/);
  expect(screen.getByTestId("payout-phone-new").props.value).toBe("");
});

test("a double tap on Save sends one change: one fingerprint prompt, one step-up", async () => {
  const gw = new FakeGateway();
  gw.payoutSettings.phone = "254712345678";
  const phone = newPhone();
  await renderApp(gw, phone);
  await openPayoutSettings(gw);
  await fireEvent.changeText(screen.getByTestId("payout-phone-new"), "0722 000 111");
  // Two taps before React renders again (the button's disabled state comes a render later).
  const save = screen.getByTestId("save-payout");
  await act(async () => {
    fireEvent.press(save);
    fireEvent.press(save);
  });
  await givePinForKey(gw);
  expect(await screen.findByTestId("payout-note")).toHaveTextContent("Saved.");
  expect(phone.biometricPrompts).toEqual(["Confirm payouts to 0722 000 111"]);
  expect(gw.count("CreateDeviceChallenge")).toBe(1);
  expect(gw.count("UpdatePayoutSettings")).toBe(2);
  expect(gw.payoutSettings.phone).toBe("254722000111");
});

test("a new payout number not confirmed by the fingerprint changes nothing and asks auth for nothing", async () => {
  const gw = new FakeGateway();
  gw.payoutSettings.phone = "254712345678";
  const phone = newPhone();
  phone.biometricAnswers.push(false);
  await renderApp(gw, phone);
  await openPayoutSettings(gw);
  await savePayout("0722 000 111");
  expect(await screen.findByRole("alert")).toHaveTextContent("The new number was not confirmed on this phone. Nothing changed.");
  expect(gw.payoutSettings.phone).toBe("254712345678");
  expect(gw.count("CreateDeviceChallenge")).toBe(0);
  expect(gw.count("RegisterDevice")).toBe(0);
  expect(screen.getByTestId("payout-phone-new").props.value).toBe("0722 000 111");
});

test("devices that can approve withdrawals: this phone's key is marked; another is removed after a yes, and removing this phone's forgets its key here", async () => {
  const gw = new FakeGateway();
  const phone = newPhone();
  await renderApp(gw, phone);
  await signIn(gw);
  // A withdrawal registers this phone's key; a browser's was registered elsewhere.
  await fireEvent.press(screen.getByTestId("tab-withdraw"));
  await fireEvent.changeText(await screen.findByTestId("amount"), "100");
  await fireEvent.press(screen.getByTestId("withdraw-submit"));
  await fireEvent.press(await screen.findByTestId("withdraw-confirm"));
  await givePinForKey(gw);
  await screen.findByTestId("payout");
  gw.devices.set("dev-browser", gw.devices.get("dev-1")!);
  gw.deviceInfo.set("dev-browser", { name: "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/131.0 Mobile Safari/537.36", registeredAt: new Date() });

  await fireEvent.press(screen.getByTestId("tab-settings"));
  await waitFor(() => expect(screen.getAllByTestId("device-row")).toHaveLength(2));
  const [mine, browser] = screen.getAllByTestId("device-row");
  expect(mine).toHaveTextContent(/^TTIP app on (Android|iPhone) \(this phone\)Added .+Last used .+Remove$/);
  expect(browser).toHaveTextContent(/^Chrome on AndroidAdded .+Not used yetRemove$/);

  await fireEvent.press(screen.getByLabelText("Remove: Chrome on Android"));
  expect(screen.getByTestId("device-ask")).toHaveTextContent("Remove Chrome on Android? It is signed out and can no longer approve withdrawals.Yes, remove itNo, keep it");
  expect(gw.count("RemoveDevice")).toBe(0);
  await fireEvent.press(screen.getByTestId("device-yes"));
  await waitFor(() => expect(screen.getAllByTestId("device-row")).toHaveLength(1));
  expect([...gw.devices.keys()]).toEqual(["dev-1"]);
  expect(phone.secure.data.get(`device_key.${gw.userId}`)).toMatch(/"deviceId":"dev-1"/);

  await fireEvent.press(screen.getByLabelText(/^Remove: TTIP app on (Android|iPhone) \(this phone\)$/));
  expect(screen.getByTestId("device-ask")).toHaveTextContent(/^Remove this phone\? It can no longer approve withdrawals; your next withdrawal here adds it again\./);
  await fireEvent.press(screen.getByTestId("device-yes"));
  expect(await screen.findByText("None yet: your first withdrawal from a phone or browser adds it here.")).toBeTruthy();
  expect(gw.devices.size).toBe(0);
  expect(phone.secure.data.has(`device_key.${gw.userId}`)).toBe(false);
});

test("where the worker is signed in: this session is marked and kept; another is signed out after a yes", async () => {
  const gw = new FakeGateway();
  await renderApp(gw);
  await signIn(gw);
  const elsewhere = gw.tokens().accessToken;
  gw.sessions[1]!.userAgent = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36";
  await fireEvent.press(screen.getByTestId("tab-settings"));
  await waitFor(() => expect(screen.getAllByTestId("session-row")).toHaveLength(2));
  const [here, browser] = screen.getAllByTestId("session-row");
  expect(here).toHaveTextContent(/^TTIP app on Android \(this one\)Signed in .+Last used .+$/);
  expect(browser).toHaveTextContent(/^Chrome on WindowsSigned in .+Last used .+Sign out$/);

  await fireEvent.press(screen.getByLabelText("Sign out: Chrome on Windows"));
  expect(screen.getByTestId("session-ask")).toHaveTextContent(/^Sign out Chrome on Windows\? It will have to sign in again with your number and PIN\./);
  expect(gw.count("RevokeSession")).toBe(0);
  // A double tap: one sign-out. Before, the second was sent too, refused, and shown as an error.
  const yes = screen.getByTestId("session-yes");
  fireEvent.press(yes);
  await fireEvent.press(yes);
  await waitFor(() => expect(screen.getAllByTestId("session-row")).toHaveLength(1));
  expect(gw.count("RevokeSession")).toBe(1);
  expect(gw.validAccess.has(elsewhere)).toBe(false);
  expect(gw.sessions.map((x) => x.sessionId)).toEqual(["session-1"]);
});
