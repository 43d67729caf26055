import { act, fireEvent, screen, waitFor, within } from "@testing-library/react-native";
import { Code, ConnectError } from "@connectrpc/connect";
import { Channel, TemplateKey } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { nairobiMonthOf } from "@ttip/web-lib/nairobi-time";
import { FakeGateway } from "../testing/fake-gateway";
import { AFTER_POLLS, newPhone, renderApp, signIn } from "../testing/render-app";
import { resetPushRegistration } from "../screens/push-registration";

afterEach(() => resetPushRegistration());

const tipSms = (gw: FakeGateway) => gw.preferences.kinds.find((k) => k.key === TemplateKey.TIP_RECEIVED)?.channels.includes(Channel.SMS);

test("home counts unread messages; the inbox lists them and marks them read", async () => {
  const gw = new FakeGateway();
  gw.notify("Tip received", "You received KES 250 from a customer.");
  gw.notify("Payout sent", "KES 100 was sent to your M-Pesa.");
  await renderApp(gw);
  await signIn(gw);
  expect(await screen.findByText("Messages (2 new)")).toBeTruthy();
  await fireEvent.press(screen.getByTestId("open-inbox"));
  const list = await screen.findByTestId("inbox-list");
  expect(await within(list).findByText("You received KES 250 from a customer.")).toBeTruthy();
  expect(within(list).getByText("Payout sent")).toBeTruthy();
  await waitFor(() => expect(gw.inbox.every((n) => n.readAt)).toBe(true));
  expect(gw.last("MarkRead").notificationIds).toHaveLength(2);
  await fireEvent.press(screen.getByTestId("inbox-close"));
  expect(await screen.findByText("Messages", {}, AFTER_POLLS)).toBeTruthy();
});

/** Signed in on Settings, tip SMS on. */
async function onTipSmsSetting() {
  const gw = new FakeGateway();
  const phone = newPhone();
  await renderApp(gw, phone);
  await signIn(gw);
  await fireEvent.press(screen.getByTestId("tab-settings"));
  await waitFor(() => expect(screen.getByTestId("tip-sms").props.value).toBe(true));
  return { gw, phone };
}

/** Signed in on Settings, tip SMS turned off while offline (still offline). */
async function tipSmsTurnedOffOffline() {
  const { gw, phone } = await onTipSmsSetting();
  gw.offline = true;
  await fireEvent(screen.getByTestId("tip-sms"), "valueChange", false);
  return { gw, phone };
}

test("a settings change made offline waits on the phone and is sent when the connection returns", async () => {
  const { gw, phone } = await tipSmsTurnedOffOffline();
  expect(await screen.findByTestId("tip-sms-note")).toHaveTextContent("Saved on this phone: it will be sent when you are back online.");
  expect(screen.getByTestId("tip-sms").props.value).toBe(false);
  expect(tipSms(gw)).toBe(true);
  expect([...phone.cache.data.keys()]).toContain(`${gw.userId}:pending:preferences`);

  gw.offline = false;
  await waitFor(() => expect(tipSms(gw)).toBe(false), AFTER_POLLS);
  // Push and in-app stay as they were; the waiting copy is gone.
  expect(gw.preferences.kinds.find((k) => k.key === TemplateKey.TIP_RECEIVED)?.channels).toEqual([Channel.PUSH, Channel.IN_APP]);
  await waitFor(() => expect(phone.cache.data.has(`${gw.userId}:pending:preferences`)).toBe(false));
});

test("a change waiting offline is sent onto the settings as they are then: what the worker changed elsewhere meanwhile stays", async () => {
  const { gw } = await tipSmsTurnedOffOffline();
  await screen.findByText("Saved on this phone: it will be sent when you are back online.");
  // Meanwhile, on the web app: quiet hours set.
  gw.preferences = { ...gw.preferences, quietHoursStart: "22:00", quietHoursEnd: "06:00" };
  gw.offline = false;
  await waitFor(() => expect(tipSms(gw)).toBe(false), AFTER_POLLS);
  // Before, the copy kept on the phone was sent whole, and undid them (as it brought back an address removed).
  expect([gw.preferences.quietHoursStart, gw.preferences.quietHoursEnd]).toEqual(["22:00", "06:00"]);
});

test("a change the service refuses: the switch goes back to what is saved, nothing left waiting", async () => {
  const { gw, phone } = await onTipSmsSetting();
  gw.failPreferences = new ConnectError("preferences: not accepted", Code.InvalidArgument);
  await fireEvent(screen.getByTestId("tip-sms"), "valueChange", false);
  await waitFor(() => expect(screen.getByTestId("tip-sms").props.value).toBe(true));
  expect(tipSms(gw)).toBe(true);
  // Before, the switch's state itself had been changed, and "going back" kept it off beside the error.
  expect(phone.cache.data.has(`${gw.userId}:pending:preferences`)).toBe(false);
});

test("a change made online just after one made offline is the one that stays: the older copy waiting is not sent after it", async () => {
  const { gw, phone } = await tipSmsTurnedOffOffline();
  await screen.findByText("Saved on this phone: it will be sent when you are back online.");
  gw.offline = false;
  await fireEvent(screen.getByTestId("tip-sms"), "valueChange", true);
  await screen.findByText(/^Saved/);
  expect(tipSms(gw)).toBe(true);
  // Before, the retry timer then sent the older "off" copy: the service said off while the switch said on.
  await new Promise((r) => setTimeout(r, 6_000));
  expect(tipSms(gw)).toBe(true);
  expect(phone.cache.data.has(`${gw.userId}:pending:preferences`)).toBe(false);
});

test("settings not loaded (offline): the switch waits, so it cannot clear quiet hours or channels set elsewhere; loaded again, a change keeps them", async () => {
  const gw = new FakeGateway();
  gw.preferences.quietHoursStart = "22:00";
  gw.preferences.quietHoursEnd = "06:00";
  gw.preferences.kinds[0].channels = [Channel.SMS, Channel.IN_APP];
  await renderApp(gw);
  await signIn(gw);
  gw.offline = true;
  await fireEvent.press(screen.getByTestId("tab-settings"));
  expect(await screen.findByTestId("tip-sms-not-loaded")).toHaveTextContent(/could not be loaded/);
  expect(screen.getByTestId("tip-sms").props.disabled).toBe(true);
  gw.offline = false;
  await fireEvent.press(screen.getByText("Load them again"));
  await waitFor(() => expect(screen.getByTestId("tip-sms").props.disabled).toBe(false));
  expect(screen.queryByTestId("tip-sms-not-loaded")).toBeNull();
  await fireEvent(screen.getByTestId("tip-sms"), "valueChange", false);
  expect(await screen.findByTestId("tip-sms-note")).toHaveTextContent("Saved.");
  expect([gw.preferences.quietHoursStart, gw.preferences.quietHoursEnd]).toEqual(["22:00", "06:00"]);
  expect(gw.preferences.kinds.find((k) => k.key === TemplateKey.TIP_RECEIVED)?.channels).toEqual([Channel.IN_APP]);
});

test("online, the setting is saved at once", async () => {
  const gw = new FakeGateway();
  await renderApp(gw);
  await signIn(gw);
  await fireEvent.press(screen.getByTestId("tab-settings"));
  await waitFor(() => expect(screen.getByTestId("tip-sms").props.value).toBe(true));
  await fireEvent(screen.getByTestId("tip-sms"), "valueChange", false);
  expect(await screen.findByTestId("tip-sms-note")).toHaveTextContent("Saved.");
  expect(tipSms(gw)).toBe(false);
});

test("statements: this month's opening, postings and closing; the month before on request; kept offline", async () => {
  const gw = new FakeGateway();
  const phone = newPhone();
  const first = await renderApp(gw, phone);
  await signIn(gw);
  await fireEvent.press(screen.getByTestId("tab-history"));
  await fireEvent.press(await screen.findByTestId("open-statements"));
  const { year, month } = nairobiMonthOf(new Date());
  expect(await screen.findByTestId("opening")).toHaveTextContent(`Opening balance: KES ${(1000 * month).toLocaleString("en")}`);
  expect(screen.getByTestId("closing")).toHaveTextContent(`Closing balance: KES ${(1000 * month + 190).toLocaleString("en")}`);
  expect(within(screen.getByTestId("statement-rows")).getByText("KES -10")).toBeTruthy();
  expect(screen.getByTestId("month-next").props.accessibilityState).toMatchObject({ disabled: true });
  // The arrows are read aloud by what they do, not as "‹" and "›".
  expect(screen.getByLabelText("Next month")).toBe(screen.getByTestId("month-next"));
  await fireEvent.press(screen.getByLabelText("Previous month"));
  const before = month === 1 ? `${year - 1}-12` : `${year}-${month - 1}`;
  await waitFor(() => expect(gw.statementsAsked).toContain(before));
  await first.unmount();

  gw.offline = true;
  await renderApp(gw, phone);
  await fireEvent.press(await screen.findByTestId("tab-history"));
  await fireEvent.press(await screen.findByTestId("open-statements"));
  expect(await screen.findByTestId("offline")).toHaveTextContent(/Showing what was saved at/);
  expect(screen.getByTestId("opening")).toHaveTextContent(`Opening balance: KES ${(1000 * month).toLocaleString("en")}`);
});

test("Change PIN: a double tap sends one change, and says only that it was changed", async () => {
  const gw = new FakeGateway();
  await renderApp(gw);
  await signIn(gw);
  await fireEvent.press(await screen.findByTestId("tab-settings"));
  await fireEvent.changeText(await screen.findByTestId("current-pin"), "2580");
  await fireEvent.changeText(screen.getByTestId("new-pin"), "4321");
  await fireEvent.changeText(screen.getByTestId("new-pin2"), "4321");
  // Two taps before React renders again (the button's disabled state comes a render later).
  const change = screen.getByTestId("change-pin");
  await act(async () => {
    fireEvent.press(change);
    fireEvent.press(change);
  });
  expect(await screen.findByTestId("pin-changed")).toBeTruthy();
  expect(gw.count("ChangePin")).toBe(1);
  expect(screen.queryByRole("alert")).toBeNull();
  expect(gw.pin).toBe("4321");
});

test("Change PIN: a mismatch or the same PIN is refused before any call, a wrong current PIN says the tries left, and the right one changes it", async () => {
  const gw = new FakeGateway();
  await renderApp(gw);
  await signIn(gw);
  await fireEvent.press(await screen.findByTestId("tab-settings"));
  const fill = async (current: string, next: string, again: string) => {
    await fireEvent.changeText(await screen.findByTestId("current-pin"), current);
    await fireEvent.changeText(screen.getByTestId("new-pin"), next);
    await fireEvent.changeText(screen.getByTestId("new-pin2"), again);
    await fireEvent.press(screen.getByTestId("change-pin"));
  };
  await fill("2580", "4321", "4322");
  expect(await screen.findByRole("alert")).toHaveTextContent("The two PINs are not the same.");
  await fill("2580", "2580", "2580");
  expect(await screen.findByRole("alert")).toHaveTextContent("The new PIN must differ from the current one.");
  expect(gw.count("ChangePin")).toBe(0);
  await fill("1111", "4321", "4321");
  expect(await screen.findByRole("alert")).toHaveTextContent("Wrong PIN. 4 tries left before your PIN is locked.");
  expect(gw.pin).toBe("2580");
  await fill("2580", "4321", "4321");
  expect(await screen.findByTestId("pin-changed")).toHaveTextContent("Your PIN was changed. Any other phone or browser signed in to your account was signed out.");
  expect(gw.pin).toBe("4321");
  expect(screen.getByTestId("current-pin").props.value).toBe("");
});
