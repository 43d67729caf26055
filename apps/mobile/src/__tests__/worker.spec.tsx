import { fireEvent, screen, waitFor, within } from "@testing-library/react-native";
import { Code, ConnectError } from "@connectrpc/connect";
import { create } from "@bufbuild/protobuf";
import { MoneySchema } from "@ttip/proto/ttip/common/v1/money_pb.js";
import { CardTipState, MpesaReversalState, TipStatus } from "@ttip/proto/ttip/payment/v1/payment_pb.js";
import { QrCodeStatus } from "@ttip/proto/ttip/qr/v1/qr_pb.js";
import { FakeGateway } from "../testing/fake-gateway";
import { AFTER_POLLS, givePinForKey, newPhone, renderApp, signIn, type TestPhone } from "../testing/render-app";
import { resetPushRegistration } from "../screens/push-registration";
import { formatMoney } from "@ttip/web-lib/money";
import { nairobiDayStart, nairobiWeekStart } from "@ttip/web-lib/nairobi-time";

afterEach(() => resetPushRegistration());

async function openTab(id: string) {
  await fireEvent.press(screen.getByTestId(`tab-${id}`));
}

/** `confirmed`: the biometric prompt says yes (then, on a phone without a key, the PIN is typed to add one). */
async function startWithdrawal(gw: FakeGateway, amount: string, confirmed = true) {
  await openTab("withdraw");
  await fireEvent.changeText(await screen.findByTestId("amount"), amount);
  await fireEvent.press(screen.getByTestId("withdraw-submit"));
  await fireEvent.press(await screen.findByTestId("withdraw-confirm"));
  if (confirmed) await givePinForKey(gw);
}

/** A signed-in worker's withdrawal of `amount` whose answer was lost (the payout made), its error shown, then Cancel. */
async function withdrawalAnswerLost(amount: string): Promise<FakeGateway> {
  const gw = new FakeGateway();
  await renderApp(gw);
  await signIn(gw);
  gw.loseNextPayoutAnswer = true;
  await startWithdrawal(gw, amount);
  expect(await screen.findByRole("alert")).toBeTruthy();
  await fireEvent.press(screen.getByText("Cancel"));
  return gw;
}

test("home announces a tip that arrives while it is open and adds it to the balance", async () => {
  const gw = new FakeGateway();
  gw.addTip(200_00n);
  await renderApp(gw);
  await signIn(gw);
  expect(await screen.findByText("KES 1,700")).toBeTruthy();
  expect(screen.queryByTestId("new-tip")).toBeNull(); // the tip already there is not "new"
  const asked = gw.count("ListTips");
  gw.addTip(250_00n);
  // Home's next poll asks for the tips, then announces the new one: one wait, on the announcement (a wait on
  // the poll first, with its own bound, plus this one's and the sign-in's could pass jest's 30 s per test).
  expect(await screen.findByText("New tip: KES 250", {}, AFTER_POLLS)).toBeTruthy();
  expect(gw.count("ListTips")).toBeGreaterThan(asked);
  expect(screen.getByTestId("available")).toHaveTextContent("KES 1,950");
  expect(within(screen.getByTestId("latest-tips")).getAllByText(/received/)).toHaveLength(2);
});

test("home's today and this week are analytics' figures: what reached the worker (not the amount tipped), over every tip (not the 50 listed)", async () => {
  const gw = new FakeGateway();
  // 60 tips today, each KES 300 of which KES 285 reached the wallet (the customer did not cover the fee).
  for (let i = 0; i < 60; i++) gw.addTip(300_00n, TipStatus.SUCCEEDED, new Date(), 285_00n);
  gw.addTip(500_00n, TipStatus.FAILED);
  await renderApp(gw);
  await signIn(gw);
  // Before: "Today: KES 15,000" (50 listed tips' amounts).
  expect(await screen.findByText("Today: KES 17,100 · This week: KES 17,100")).toBeTruthy();
  expect(gw.count("GetWorkerEarnings")).toBeGreaterThan(0);
});

test("home's today and this week are Nairobi's day and Monday-to-Sunday week (analytics'), whatever the phone's zone", async () => {
  const gw = new FakeGateway();
  const now = new Date();
  const day = nairobiDayStart(now).getTime();
  const week = nairobiWeekStart(now).getTime();
  // A minute either side of each midnight in Nairobi (21:00 UTC): on a phone set to UTC, a local midnight falls elsewhere.
  const tips: [bigint, number][] = [[1_00n, week - 60_000], [20_00n, week], [300_00n, day - 60_000], [4000_00n, day]];
  for (const [amount, at] of tips) gw.addTip(amount, TipStatus.SUCCEEDED, new Date(at));
  const since = (start: number) => tips.filter(([, at]) => at >= start).reduce((sum, [amount]) => sum + amount, 0n);
  await renderApp(gw);
  await signIn(gw);
  expect(await screen.findByText(`Today: ${formatMoney(since(day), "KES")} · This week: ${formatMoney(since(week), "KES")}`)).toBeTruthy();
});

test("a card tip paid in USD reads USD 10 in the list, and today's total adds what reached the worker in KES, not 10 as shillings", async () => {
  const gw = new FakeGateway();
  gw.addTip(200_00n);
  const card = gw.addTip(0n);
  card.amount = create(MoneySchema, { amountMinor: 10_00n, currency: "USD" });
  card.workerReceives = create(MoneySchema, { amountMinor: 1_290_00n, currency: "KES" });
  await renderApp(gw);
  await signIn(gw);
  expect(await screen.findByText("Today: KES 1,490 · This week: KES 1,490")).toBeTruthy();
  expect(within(screen.getByTestId("latest-tips")).getByText("USD 10")).toBeTruthy();
});

test("tips refunded, charged back or reversed say so in the lists, in the web app's words, not \"received\"", async () => {
  const gw = new FakeGateway();
  const card = (state: CardTipState, refundedMinor = 0n) => {
    const tip = gw.addTip(0n);
    tip.amount = create(MoneySchema, { amountMinor: 10_00n, currency: "USD" });
    tip.cardState = state;
    tip.refunded = create(MoneySchema, { amountMinor: refundedMinor, currency: "USD" });
    return tip;
  };
  card(CardTipState.REFUNDED, 10_00n);
  card(CardTipState.REFUNDED, 4_00n);
  card(CardTipState.DISPUTED);
  card(CardTipState.DISPUTE_LOST);
  card(CardTipState.DISPUTE_WON);
  gw.addTip(0n).mpesaReversal = MpesaReversalState.PENDING;
  await renderApp(gw);
  await signIn(gw);
  const list = await screen.findByTestId("latest-tips");
  await waitFor(() => expect(within(list).getAllByText(/USD 10/)).toHaveLength(5));
  const lines = within(list).getAllByText(/ · /).map((n) => String(n.props.children[0]));
  expect(lines).toEqual(["being given back to the customer's M-Pesa", "received", "taken back: the card holder won a dispute", "disputed by the card holder: set aside", "partly refunded (USD 4)", "refunded to the customer"]);
});

test("a withdrawal asks for the biometric, registers the phone's key once, signs auth's challenge and pays out once", async () => {
  const gw = new FakeGateway();
  const phone = newPhone();
  await renderApp(gw, phone);
  await signIn(gw);
  await startWithdrawal(gw, "500");
  expect(await screen.findByText(/Withdrawal of KES 500: sent/, {}, AFTER_POLLS)).toBeTruthy();
  expect(screen.getByTestId("receipt")).toHaveTextContent("M-Pesa receipt SIM123ABC");
  await waitFor(() => expect(screen.getByTestId("withdraw-available")).toHaveTextContent("KES 1,000"));
  expect(phone.biometricPrompts).toEqual(["Confirm the withdrawal of KES 500"]);
  expect(gw.devices.size).toBe(1);
  expect(gw.count("VerifyDeviceChallenge")).toBe(1);
  expect(gw.last("RequestPayout")).toMatchObject({ amount: { amountMinor: 500_00n, currency: "KES" }, mpesaPhone: "" });
  expect(gw.availableMinor).toBe(1_000_00n);
  // The secret half stays in the secure store; the plain cache never sees it.
  expect(phone.secure.data.get(`device_key.${gw.userId}`)).toMatch(/"secretHex":"[0-9a-f]{64}"/);
  expect([...phone.cache.data.values()].join()).not.toMatch(/secretHex/);

  // A second withdrawal reuses the registered key; the confirmation names the number typed, as the worker reads it.
  await fireEvent.press(screen.getByText("Make another withdrawal"));
  await fireEvent.changeText(await screen.findByTestId("amount"), "100");
  await fireEvent.changeText(screen.getByTestId("mpesa"), "+254 712 345 678");
  await fireEvent.press(screen.getByTestId("withdraw-submit"));
  expect(await screen.findByText("Send KES 100 to 0712 345 678 by M-Pesa?")).toBeTruthy();
  await fireEvent.press(screen.getByTestId("withdraw-confirm"));
  expect(await screen.findByText(/Withdrawal of KES 100: sent/, {}, AFTER_POLLS)).toBeTruthy();
  expect(gw.last("RequestPayout")).toMatchObject({ mpesaPhone: "254712345678" });
  expect(gw.devices.size).toBe(1);
  expect(gw.payouts.size).toBe(2);
});

test("a phone's key is added only with the PIN: declined or wrong, nothing is sent and no key is added; the right PIN adds it and pays out", async () => {
  const gw = new FakeGateway();
  await renderApp(gw);
  await signIn(gw);
  await startWithdrawal(gw, "100", false);
  // The confirmation's own Cancel waits while it is confirmed: cancelled then, the send went on with the PIN.
  expect(within(screen.getByTestId("confirm")).getByRole("button", { name: "Cancel" })).toBeDisabled();
  await fireEvent.press(within(await screen.findByTestId("key-pin")).getByText("Cancel"));
  expect(await screen.findByRole("alert")).toHaveTextContent("Nothing was sent: this device is set up with your PIN first.");
  expect(screen.queryByTestId("key-pin")).toBeNull();
  expect(gw.count("RegisterDevice")).toBe(0);

  await fireEvent.press(screen.getByTestId("withdraw-confirm"));
  await fireEvent.changeText(await screen.findByTestId("key-pin-input"), "12");
  await fireEvent.press(screen.getByTestId("key-pin-continue"));
  expect(within(screen.getByTestId("key-pin")).getByRole("alert")).toHaveTextContent("Your PIN is 4 to 6 digits.");
  await fireEvent.changeText(screen.getByTestId("key-pin-input"), "1111");
  await fireEvent.press(screen.getByTestId("key-pin-continue"));
  expect(await screen.findByRole("alert")).toHaveTextContent("That is not allowed: wrong PIN; 4 tries left before a lockout.");
  expect(gw.count("RegisterDevice")).toBe(1);
  expect(gw.devices.size).toBe(0);
  expect(gw.count("RequestPayout")).toBe(0);

  await fireEvent.press(screen.getByTestId("withdraw-confirm"));
  await givePinForKey(gw);
  expect(await screen.findByText(/Withdrawal of KES 100: sent/, {}, AFTER_POLLS)).toBeTruthy();
  expect(gw.devices.size).toBe(1);
  expect(gw.payouts.size).toBe(1);
});

test("a key removed from the account (on another phone) is replaced at the next withdrawal, which goes on", async () => {
  const gw = new FakeGateway();
  await renderApp(gw);
  await signIn(gw);
  await startWithdrawal(gw, "100");
  expect(await screen.findByText(/Withdrawal of KES 100: sent/, {}, AFTER_POLLS)).toBeTruthy();
  const [first] = gw.devices.keys();
  gw.devices.delete(first!); // RemoveDevice, from settings elsewhere

  await fireEvent.press(screen.getByText("Make another withdrawal"));
  await fireEvent.changeText(await screen.findByTestId("amount"), "200");
  await fireEvent.press(screen.getByTestId("withdraw-submit"));
  await fireEvent.press(await screen.findByTestId("withdraw-confirm"));
  // A new key takes the PIN again.
  await givePinForKey(gw);
  expect(await screen.findByText(/Withdrawal of KES 200: sent/, {}, AFTER_POLLS)).toBeTruthy();
  expect(gw.count("RegisterDevice")).toBe(2);
  expect(gw.devices.size).toBe(1);
  expect(gw.payouts.size).toBe(2);
});

test("a withdrawal M-Pesa fails is said in the app's words (the web app's), not M-Pesa's English", async () => {
  const gw = new FakeGateway();
  await renderApp(gw);
  await signIn(gw);
  // TTIP's own M-Pesa account short: M-Pesa says "The balance is insufficient", which a worker reads as theirs.
  gw.payoutResult = { code: "1", desc: "The balance is insufficient for the transaction." };
  await startWithdrawal(gw, "100");
  expect(await screen.findByText(/Withdrawal of KES 100: failed/, {}, AFTER_POLLS)).toBeTruthy();
  expect(screen.getByTestId("payout-outcome")).toHaveTextContent("M-Pesa could not send it from TTIP's account; this is not about your balance. The amount is back in your balance; try again later.");
  expect(screen.queryByText(/insufficient/)).toBeNull();
  await waitFor(() => expect(screen.getByTestId("withdraw-available")).toHaveTextContent("KES 1,500"));
  // A number M-Pesa cannot pay.
  await fireEvent.press(screen.getByText("Make another withdrawal"));
  gw.payoutResult = { code: "2040", desc: "Credit Party customer type (Unregistered or Registered Customer) can't be supported by the service." };
  await startWithdrawal(gw, "200");
  expect(await screen.findByText(/Withdrawal of KES 200: failed/, {}, AFTER_POLLS)).toBeTruthy();
  expect(screen.getByTestId("payout-outcome")).toHaveTextContent(/^M-Pesa cannot pay this number: it is not registered for M-Pesa\./);
  // A paid one says nothing beyond its status and receipt (not "Sent to M-Pesa").
  await fireEvent.press(screen.getByText("Make another withdrawal"));
  gw.payoutResult = { code: "0", desc: "The service request is processed successfully." };
  await startWithdrawal(gw, "300");
  expect(await screen.findByText(/Withdrawal of KES 300: sent/, {}, AFTER_POLLS)).toBeTruthy();
  expect(screen.queryByTestId("payout-outcome")).toBeNull();
  expect(screen.queryByText("Sent to M-Pesa")).toBeNull();
});

test("a refused biometric sends nothing", async () => {
  const gw = new FakeGateway();
  const phone = newPhone();
  phone.biometricAnswers.push(false);
  await renderApp(gw, phone);
  await signIn(gw);
  await startWithdrawal(gw, "500", false);
  expect(await screen.findByRole("alert")).toHaveTextContent("The withdrawal was not confirmed on this phone. Nothing was sent.");
  expect(gw.count("CreateDeviceChallenge")).toBe(0);
  expect(gw.count("RequestPayout")).toBe(0);
  expect(gw.availableMinor).toBe(1_500_00n);
});

test("a second tap on Confirm while the fingerprint prompt is open opens no second prompt and pays out once", async () => {
  const gw = new FakeGateway();
  const phone = newPhone();
  let touchSensor = () => undefined as void;
  phone.biometricHeld = new Promise((resolve) => (touchSensor = resolve));
  await renderApp(gw, phone);
  await signIn(gw);
  await openTab("withdraw");
  await fireEvent.changeText(await screen.findByTestId("amount"), "500");
  await fireEvent.press(screen.getByTestId("withdraw-submit"));
  await fireEvent.press(await screen.findByTestId("withdraw-confirm"));
  await fireEvent.press(screen.getByTestId("withdraw-confirm"));
  touchSensor();
  await givePinForKey(gw);
  expect(await screen.findByText(/Withdrawal of KES 500: sent/, {}, AFTER_POLLS)).toBeTruthy();
  expect(phone.biometricPrompts).toEqual(["Confirm the withdrawal of KES 500"]);
  expect(gw.count("CreateDeviceChallenge")).toBe(1);
  expect(gw.count("RequestPayout")).toBe(1);
});

test("a payout retried after a lost answer keeps its idempotency key, so it is paid once", async () => {
  const gw = new FakeGateway();
  await renderApp(gw);
  await signIn(gw);
  gw.failNextPayout = new ConnectError("upstream timeout", Code.Unavailable);
  await startWithdrawal(gw, "300");
  expect(await screen.findByRole("alert")).toHaveTextContent("We cannot reach TTIP right now. Check your connection and try again.");
  await fireEvent.press(screen.getByTestId("withdraw-confirm"));
  expect(await screen.findByText(/Withdrawal of KES 300: sent/, {}, AFTER_POLLS)).toBeTruthy();
  const keys = gw.calls.filter((c) => c.method === "RequestPayout").map((c) => (c.request as { idempotencyKey: string }).idempotencyKey);
  expect(keys).toHaveLength(2);
  expect(new Set(keys).size).toBe(1);
  expect(gw.payouts.size).toBe(1);
});

test("a payout refused (a rate limit), then confirmed again and its answer lost, asked for again is the same payout", async () => {
  const gw = new FakeGateway();
  await renderApp(gw);
  await signIn(gw);
  gw.failNextPayout = new ConnectError("too many requests; try again in a minute", Code.ResourceExhausted);
  await startWithdrawal(gw, "300");
  expect(await screen.findByRole("alert")).toBeTruthy();
  gw.loseNextPayoutAnswer = true;
  await fireEvent.press(screen.getByTestId("withdraw-confirm"));
  expect(await screen.findByRole("alert")).toBeTruthy();
  expect(gw.payouts.size).toBe(1);
  await fireEvent.press(screen.getByText("Cancel"));
  // Before, the second Confirm sent the refused attempt's key, settled and never saved: this was a second payout.
  await startWithdrawal(gw, "300");
  expect(await screen.findByText(/Withdrawal of KES 300: sent/, {}, AFTER_POLLS)).toBeTruthy();
  expect(gw.payouts.size).toBe(1);
});

test("a withdrawal whose answer was lost shows the balance its payout left, not the one from before it; asked again, it is that payout, not refused as over that balance", async () => {
  const gw = await withdrawalAnswerLost("1000");
  // Before, KES 1,500 still: read as "nothing moved", it led to a second withdrawal.
  await waitFor(() => expect(screen.getByTestId("withdraw-available")).toHaveTextContent(/^KES 500/));
  await startWithdrawal(gw, "1000");
  expect(await screen.findByText(/Withdrawal of KES 1,000: sent/, {}, AFTER_POLLS)).toBeTruthy();
  expect(gw.payouts.size).toBe(1);
});

test("a withdrawal whose answer was lost, asked again with the payout number typed where it was left blank, is asked about first; given as then, it is that payout", async () => {
  const gw = await withdrawalAnswerLost("1000");
  await openTab("withdraw");
  await fireEvent.changeText(await screen.findByTestId("amount"), "1000");
  await fireEvent.changeText(screen.getByTestId("mpesa"), "0712 345 678");
  await fireEvent.press(screen.getByTestId("withdraw-submit"));
  // Before, a new key: a second payout of KES 1,000.
  expect(await screen.findByRole("alert")).toHaveTextContent(/^A withdrawal of KES 1,000 asked for before, with the number left empty, got no answer: it may have gone\./);
  expect(screen.queryByTestId("withdraw-confirm")).toBeNull();
  await fireEvent.changeText(screen.getByTestId("mpesa"), "");
  await startWithdrawal(gw, "1000");
  expect(await screen.findByText(/Withdrawal of KES 1,000: sent/, {}, AFTER_POLLS)).toBeTruthy();
  expect(gw.payouts.size).toBe(1);
});

test("a payout whose answer was lost, confirmed again and refused by the gateway (a rate limit), asked for again is the same payout", async () => {
  const gw = await withdrawalAnswerLost("300");
  expect(gw.payouts.size).toBe(1);
  gw.failNextPayout = new ConnectError("too many requests; try again in a minute", Code.ResourceExhausted);
  await startWithdrawal(gw, "300");
  expect(await screen.findByRole("alert")).toBeTruthy();
  expect(gw.count("RequestPayout")).toBe(2);
  await fireEvent.press(screen.getByText("Cancel"));
  // Before, the refusal settled the key the lost payout was made under: this was a second payout.
  await startWithdrawal(gw, "300");
  expect(await screen.findByText(/Withdrawal of KES 300: sent/, {}, AFTER_POLLS)).toBeTruthy();
  expect(gw.payouts.size).toBe(1);
  const keys = gw.calls.filter((c) => c.method === "RequestPayout").map((c) => (c.request as { idempotencyKey: string }).idempotencyKey);
  expect(new Set(keys).size).toBe(1);
});

test("a withdrawal whose tab is left and come back to during its confirmation shows its answer when it comes, not an empty form for a second payout", async () => {
  const gw = new FakeGateway();
  await renderApp(gw);
  await signIn(gw);
  let answer = () => {};
  gw.stepUpAnswerHeld = new Promise<void>((r) => (answer = r));
  await startWithdrawal(gw, "300");
  // Left and come back to while the phone's key confirms it (the step-up), before the request is sent.
  await waitFor(() => expect(gw.count("VerifyDeviceChallenge")).toBe(1));
  await openTab("home");
  await openTab("withdraw");
  answer();
  await waitFor(() => expect(gw.payouts.size).toBe(1));
  // Before, the answer landed on the unmounted screen: an empty form, and the same amount again was a second payout.
  expect(await screen.findByText(/Withdrawal of KES 300: sent/, {}, AFTER_POLLS)).toBeTruthy();
  await fireEvent.press(screen.getByText("Make another withdrawal"));
  expect(await screen.findByTestId("amount")).toBeTruthy();
  expect(gw.payouts.size).toBe(1);
});

test("a payout whose answer was lost, asked for again after Cancel and another tab, is the same payout; another amount is a new one", async () => {
  const gw = await withdrawalAnswerLost("300");
  await openTab("home");
  // The same withdrawal asked for again: before, a new key, and a second payout of KES 300.
  await startWithdrawal(gw, "300");
  expect(await screen.findByText(/Withdrawal of KES 300: sent/, {}, AFTER_POLLS)).toBeTruthy();
  expect(gw.payouts.size).toBe(1);
  await fireEvent.press(screen.getByText("Make another withdrawal"));
  await fireEvent.changeText(await screen.findByTestId("amount"), "300");
  await fireEvent.press(screen.getByTestId("withdraw-submit"));
  await fireEvent.press(await screen.findByTestId("withdraw-confirm"));
  expect(await screen.findByText(/Withdrawal of KES 300: sent/, {}, AFTER_POLLS)).toBeTruthy();
  expect(gw.payouts.size).toBe(2);
});

test("a payout whose answer was lost, then another amount reviewed and cancelled, then the first amount again, is the same payout", async () => {
  const gw = await withdrawalAnswerLost("300");
  // KES 500 reviewed, not sent.
  await fireEvent.changeText(await screen.findByTestId("amount"), "500");
  await fireEvent.press(screen.getByTestId("withdraw-submit"));
  await screen.findByTestId("withdraw-confirm");
  await fireEvent.press(screen.getByText("Cancel"));
  // Before, the review of 500 had let go of the 300's key: asked again, a second payout of KES 300.
  await fireEvent.changeText(await screen.findByTestId("amount"), "300");
  await fireEvent.press(screen.getByTestId("withdraw-submit"));
  await fireEvent.press(await screen.findByTestId("withdraw-confirm"));
  expect(await screen.findByText(/Withdrawal of KES 300: sent/, {}, AFTER_POLLS)).toBeTruthy();
  expect(gw.payouts.size).toBe(1);
});

/**
 * A withdrawal of KES 300 whose answer was lost, the app started again (`meanwhile` given the phone and the gateway
 * before it does), and KES 300 asked for again, sent.
 */
async function askedAgainAfterRestart(meanwhile: (phone: TestPhone, gw: FakeGateway) => void = () => {}): Promise<FakeGateway> {
  const gw = new FakeGateway();
  const first = await renderApp(gw);
  await signIn(gw);
  gw.loseNextPayoutAnswer = true;
  await startWithdrawal(gw, "300");
  expect(await screen.findByRole("alert")).toBeTruthy();
  await first.unmount();
  meanwhile(first.phone, gw);
  await renderApp(gw, first.phone);
  await startWithdrawal(gw, "300");
  expect(await screen.findByText(/Withdrawal of KES 300: sent/, {}, AFTER_POLLS)).toBeTruthy();
  return gw;
}

test("a withdrawal whose key the phone cannot read or save is not sent; once it can, the same withdrawal goes under a kept key, however full the offline copies' storage", async () => {
  const gw = new FakeGateway();
  const phone = newPhone();
  // The offline copies filled their storage: before, the keys were kept there too, and every withdrawal was refused.
  phone.cache.set = async () => {
    throw new Error("offline copies' storage full");
  };
  const { get, set } = phone.secure;
  let storage: "unreadable" | "full" | "fine" = "unreadable";
  phone.secure.get = async (k) => {
    if (storage === "unreadable" && k.endsWith(":payout-keys")) throw new Error("secure store unreadable");
    return get(k);
  };
  phone.secure.set = async (k, v) => {
    if (storage === "full" && k.endsWith(":payout-keys")) throw new Error("secure store refused");
    return set(k, v);
  };
  await renderApp(gw, phone);
  await signIn(gw);
  const unsaved = "This phone's storage could not keep the withdrawal's details, so nothing was sent. Free some space on the phone and try again.";
  await openTab("withdraw");
  await fireEvent.changeText(await screen.findByTestId("amount"), "300");
  await fireEvent.press(screen.getByTestId("withdraw-submit"));
  expect(await screen.findByRole("alert")).toHaveTextContent(unsaved);
  // Before, the key went out held in memory alone: its answer lost and the app started again, the same
  // withdrawal had a new key, and was a second payout.
  storage = "full";
  await fireEvent.press(screen.getByTestId("withdraw-submit"));
  await fireEvent.press(await screen.findByTestId("withdraw-confirm"));
  await givePinForKey(gw);
  await waitFor(() => expect(phone.biometricPrompts.length).toBe(1));
  await screen.findByTestId("withdraw-confirm");
  expect(await screen.findByRole("alert")).toHaveTextContent(unsaved);
  expect(gw.count("RequestPayout")).toBe(0);
  storage = "fine";
  await fireEvent.press(screen.getByTestId("withdraw-confirm"));
  expect(await screen.findByText(/Withdrawal of KES 300: sent/, {}, AFTER_POLLS)).toBeTruthy();
  expect(gw.payouts.size).toBe(1);
});

test("a payout whose answer was lost, asked for again after the app restarted, is the same payout", async () => {
  // Before, the key lived in the app's memory only: a new one after the restart, and a second payout of KES 300.
  expect((await askedAgainAfterRestart()).payouts.size).toBe(1);
});

test("a payout whose answer was lost, asked for again later, is that payout, said to be the earlier one; another is made after it", async () => {
  // The payout made 31 minutes ago, its key kept on the phone.
  const gw = await askedAgainAfterRestart((_phone, gw) => {
    for (const p of gw.payouts.values()) p.createdAt = new Date(p.createdAt.getTime() - 31 * 60_000);
  });
  // Before, the key was dropped after half an hour: a new one, and a second payout of KES 300 (this app lists no payouts).
  expect(gw.payouts.size).toBe(1);
  expect(screen.getByTestId("payout-earlier")).toHaveTextContent(/^This is the withdrawal you asked for on \d{4}-\d{2}-\d{2} \d{2}:\d{2} \(Nairobi time\), whose answer was lost: nothing new was sent\./);
  await fireEvent.press(screen.getByText("Make another withdrawal"));
  await startWithdrawal(gw, "300");
  expect(await screen.findByText(/Withdrawal of KES 300: sent/, {}, AFTER_POLLS)).toBeTruthy();
  expect(gw.payouts.size).toBe(2);
  expect(screen.queryByTestId("payout-earlier")).toBeNull();
});

test("a kept key whose first send made no payout makes it when sent again later, said as a new one, not the earlier", async () => {
  const gw = new FakeGateway();
  const first = await renderApp(gw);
  await signIn(gw);
  gw.failNextPayout = new ConnectError("upstream timeout", Code.Unavailable);
  await startWithdrawal(gw, "300");
  expect(await screen.findByRole("alert")).toBeTruthy();
  expect(gw.payouts.size).toBe(0);
  // The key kept, its send an hour ago; the app started again.
  await first.unmount();
  // Kept as an earlier version kept it, beside the offline copies, with a time after it.
  const slot = `${gw.userId}:payout-keys`;
  const saved = JSON.parse(first.phone.secure.data.get(slot)!) as [string, string][];
  first.phone.secure.data.delete(slot);
  first.phone.cache.data.set(slot, JSON.stringify(saved.map(([intent, key]) => [intent, key, Date.now() - 3_600_000])));
  await renderApp(gw, first.phone);
  await startWithdrawal(gw, "300");
  expect(await screen.findByText(/Withdrawal of KES 300: sent/, {}, AFTER_POLLS)).toBeTruthy();
  expect(gw.payouts.size).toBe(1);
  // Before the payout's own time decided it, this was called the earlier withdrawal, and a second one invited.
  expect(screen.queryByTestId("payout-earlier")).toBeNull();
});

test("a balance or a payout that cannot be read says so: never 'Available: KES 0' nor 'Withdrawal of KES 0'", async () => {
  const gw = new FakeGateway();
  gw.failReads = new ConnectError("wallet not answering", Code.Internal);
  await renderApp(gw);
  await signIn(gw);
  // Home too: before, "Available KES 0 · Held: KES 0", read as the money gone.
  await waitFor(() => expect(screen.getByTestId("available")).toHaveTextContent("—"), AFTER_POLLS);
  expect(screen.getByTestId("held")).toHaveTextContent("Held for withdrawals: —");
  await openTab("withdraw");
  await waitFor(() => expect(screen.getByTestId("withdraw-available")).toHaveTextContent("—"), AFTER_POLLS);
  expect(screen.getAllByRole("alert").some((a) => /Something went wrong on our side/.test(String(a.props.children)))).toBe(true);
  gw.failReads = undefined;
  await fireEvent.changeText(await screen.findByTestId("amount"), "300");
  await fireEvent.press(screen.getByTestId("withdraw-submit"));
  gw.failReads = new ConnectError("payment not answering", Code.Unavailable);
  await fireEvent.press(await screen.findByTestId("withdraw-confirm"));
  await givePinForKey(gw);
  // Before: "Withdrawal of KES 0: sending" for as long as GetPayout failed, and no reason.
  expect(await screen.findByText(/Withdrawal of KES 300: /)).toBeTruthy();
  // Said for the payout (and for the balance read again once it was asked for).
  expect((await screen.findAllByText("We cannot reach TTIP right now. Check your connection and try again.", {}, AFTER_POLLS)).length).toBeGreaterThan(0);
});

test("earnings that cannot be read say so on Home: the reason, and a dash, not a loading mark forever", async () => {
  const gw = new FakeGateway();
  gw.failEarnings = new ConnectError("analytics not answering", Code.Internal);
  await renderApp(gw);
  await signIn(gw);
  // Before: "Today: … · This week: …" for good, and no error.
  expect(await screen.findByText(/Today: — · This week: —/, {}, AFTER_POLLS)).toBeTruthy();
  expect(screen.getAllByRole("alert").some((a) => /Something went wrong on our side/.test(String(a.props.children)))).toBe(true);
});

/** Typed, submitted and refused on the screen: no biometric prompt, no device challenge, no payout. */
async function expectRefusedBeforePrompt(gw: FakeGateway, phone: ReturnType<typeof newPhone>, typed: string, message: string) {
  await fireEvent.changeText(await screen.findByTestId("amount"), typed);
  await fireEvent.press(screen.getByTestId("withdraw-submit"));
  expect(await screen.findByRole("alert")).toHaveTextContent(message);
  expect(screen.queryByTestId("withdraw-confirm")).toBeNull();
  expect(phone.biometricPrompts).toEqual([]);
  expect(gw.count("CreateDeviceChallenge")).toBe(0);
  expect(gw.payouts.size).toBe(0);
}

/** Signed in on the Withdraw tab once it shows `available` (and the limit named `limit`, when given). */
async function withdrawTab(gw: FakeGateway, available: string, limit?: string) {
  const phone = newPhone();
  await renderApp(gw, phone);
  await signIn(gw);
  await openTab("withdraw");
  await waitFor(() => expect(screen.getByTestId("withdraw-available")).toHaveTextContent(available));
  if (limit) await screen.findByText(limit);
  return phone;
}

test("a withdrawal asked for shows the balance it leaves at once, also when another is begun before it ends", async () => {
  const gw = new FakeGateway();
  await withdrawTab(gw, "KES 1,500");
  await fireEvent.changeText(await screen.findByTestId("amount"), "500");
  await fireEvent.press(screen.getByTestId("withdraw-submit"));
  await fireEvent.press(await screen.findByTestId("withdraw-confirm"));
  await givePinForKey(gw);
  await screen.findByText(/Withdrawal of KES 500: sending/);
  await fireEvent.press(screen.getByText("Make another withdrawal"));
  // Before, KES 1,500 until the payout ended, and never once another was begun: 1,200 passed the check here.
  await waitFor(() => expect(screen.getByTestId("withdraw-available")).toHaveTextContent("KES 1,000"), AFTER_POLLS);
});

test("more than the balance shown is refused at once, naming it: no biometric prompt, no key, nothing sent", async () => {
  const gw = new FakeGateway();
  const phone = await withdrawTab(gw, "KES 1,500");
  await expectRefusedBeforePrompt(gw, phone, "2000", "That is more than your available balance of KES 1,500. Enter KES 1,500 or less.");
});

test("less than M-Pesa's least payout is refused at once, naming it: no biometric prompt, nothing sent", async () => {
  const gw = new FakeGateway();
  const phone = await withdrawTab(gw, "KES 1,500");
  // Before, the fingerprint was asked for first and payment refused the withdrawal after it.
  await expectRefusedBeforePrompt(gw, phone, "9", "M-Pesa pays out at least KES 10. Enter KES 10 or more.");
});

test("more than wallet's limit per withdrawal is refused at once, naming the limit: no biometric prompt, nothing sent", async () => {
  const gw = new FakeGateway();
  gw.availableMinor = 100_000_00n;
  gw.perWithdrawalMinor = 70_000_00n;
  const phone = await withdrawTab(gw, "KES 100,000", "Per withdrawal");
  await expectRefusedBeforePrompt(gw, phone, "80000", "That is more than the limit of KES 70,000 per withdrawal. Enter KES 70,000 or less.");
});

test("more than what is left of today's limit is refused at once, naming it: no biometric prompt, nothing sent", async () => {
  const gw = new FakeGateway();
  gw.todayLeftMinor = 1_000_00n;
  const phone = await withdrawTab(gw, "KES 1,500", "Today");
  await expectRefusedBeforePrompt(gw, phone, "1200", "Today: only KES 1,000 left to withdraw. Enter KES 1,000 or less.");
});

test("a balance under M-Pesa's least payout says nothing can be withdrawn yet, not \"enter KES 5 or less\"", async () => {
  const gw = new FakeGateway();
  gw.availableMinor = 5_00n;
  const phone = await withdrawTab(gw, "KES 5");
  await expectRefusedBeforePrompt(gw, phone, "10", "Your available balance is KES 5, less than the least M-Pesa pays out (KES 10): nothing can be withdrawn yet.");
});

test("what is left of today's limit under M-Pesa's least payout says nothing more can be withdrawn under it", async () => {
  const gw = new FakeGateway();
  gw.todayLeftMinor = 8_00n;
  const phone = await withdrawTab(gw, "KES 1,500", "Today");
  await expectRefusedBeforePrompt(gw, phone, "10", "Today: only KES 8 left, less than the least M-Pesa pays out (KES 10). Nothing more can be withdrawn under this limit for now.");
});

test("offline, home and history show the saved balance and tips marked with their time", async () => {
  const gw = new FakeGateway();
  gw.addTip(120_00n, TipStatus.SUCCEEDED);
  const phone = newPhone();
  const first = await renderApp(gw, phone);
  await signIn(gw);
  expect(await screen.findByText("KES 1,620")).toBeTruthy();
  await openTab("history");
  expect(await within(await screen.findByTestId("history-list")).findByText("KES 120")).toBeTruthy();
  await first.unmount();

  // The app starts again with no network: the saved copies, marked as such.
  gw.offline = true;
  await renderApp(gw, phone);
  expect(await screen.findByTestId("offline")).toHaveTextContent(/You are offline\. Showing what was saved at .+\./);
  expect(screen.getByTestId("available")).toHaveTextContent("KES 1,620");
  await openTab("history");
  expect(await within(await screen.findByTestId("history-list")).findByText("KES 120")).toBeTruthy();
  expect(screen.getByTestId("offline")).toBeTruthy();
});

test("history's older pages are kept offline by their place, one copy each however often they are opened", async () => {
  const gw = new FakeGateway();
  for (let i = 1; i <= 25; i++) gw.addTip(BigInt(i) * 100n, TipStatus.SUCCEEDED);
  const phone = newPhone();
  await renderApp(gw, phone);
  await signIn(gw);
  for (let visit = 0; visit < 2; visit++) {
    await openTab("history");
    await fireEvent.press(await screen.findByTestId("older"));
    await waitFor(() => expect([...phone.cache.data.keys()].filter((k) => k.includes(":history:")).length).toBe(2));
    gw.addTip(99_00n, TipStatus.SUCCEEDED); // the next visit's page tokens are others
    await openTab("home");
  }
  // Before, a copy per page token: a new one at each visit, never deleted.
  expect([...phone.cache.data.keys()].filter((k) => k.includes(":history:")).sort()).toEqual([`${gw.userId}:history:0:1`, `${gw.userId}:history:0:2`]);
});

/** A signed-in worker's first code made on My QR and shown (K7M4QX), the app still open. */
async function codeMadeOnMyQr() {
  const gw = new FakeGateway();
  const phone = newPhone();
  const first = await renderApp(gw, phone);
  await signIn(gw);
  await openTab("qr");
  await fireEvent.press(await screen.findByTestId("qr-create"));
  expect(await screen.findByText("K7M4QX")).toBeTruthy();
  return { gw, phone, first };
}

test("My QR shows the saved image full screen offline", async () => {
  const { gw, phone, first } = await codeMadeOnMyQr();
  await fireEvent.press(screen.getByText("Share my tip link"));
  expect(phone.shared).toEqual(["Tip me with TTIP: http://127.0.0.1:8080/t/K7M4QX"]);
  await first.unmount();

  gw.offline = true;
  await renderApp(gw, phone);
  await openTab("qr");
  expect(await screen.findByText(/Saved copy from .+: it works offline\./)).toBeTruthy();
  expect(screen.getByTestId("qr-image").props.source).toEqual({ uri: "data:image/png;base64,iVBORw==" });
});

test("My QR forgets its saved copy of a code no longer active: offline it shows no code that customers would find refused", async () => {
  const { gw, phone, first } = await codeMadeOnMyQr();
  await first.unmount();

  gw.qrCodes[0]!.status = QrCodeStatus.REVOKED;
  const second = await renderApp(gw, phone);
  await openTab("qr");
  expect(await screen.findByTestId("qr-create")).toBeTruthy();
  await second.unmount();

  gw.offline = true;
  await renderApp(gw, phone);
  await openTab("qr");
  expect(await screen.findByText(/offline/i)).toBeTruthy();
  // Before, the revoked code's image, "Saved copy from …: it works offline."
  expect(screen.queryByTestId("qr-image")).toBeNull();
  expect(screen.queryByText("K7M4QX")).toBeNull();
});

test("My QR with a saved copy cut short shows the code from the service, and keeps it saved again", async () => {
  const { gw, phone, first } = await codeMadeOnMyQr();
  await first.unmount();
  const slot = [...phone.cache.data.keys()].find((k) => phone.cache.data.get(k)!.includes("K7M4QX"))!;
  phone.cache.data.set(slot, '{"savedAt":"2026-');
  await renderApp(gw, phone);
  await openTab("qr");
  // Before, the copy's JSON threw before the call: "loading" on every visit.
  expect(await screen.findByTestId("qr-image")).toBeTruthy();
  expect(JSON.parse(phone.cache.data.get(slot)!).shortCode).toBe("K7M4QX");
});

test("My QR: a tap again after a lost answer asks under the same key: the same code, not a second one", async () => {
  const gw = new FakeGateway();
  await renderApp(gw, newPhone());
  await signIn(gw);
  await openTab("qr");
  gw.loseNextQrAnswer = true;
  await fireEvent.press(await screen.findByTestId("qr-create"));
  expect(await screen.findByRole("alert")).toBeTruthy();
  expect(gw.count("CreateQrCode")).toBe(1);
  // Before, each tap sent a new key: a second code made.
  await fireEvent.press(screen.getByTestId("qr-create"));
  expect(await screen.findByText("K7M4QX")).toBeTruthy();
  expect(gw.count("CreateQrCode")).toBe(2);
  expect(gw.qrCodes).toHaveLength(1);
  expect(gw.qrByKey.size).toBe(1);
});

test("My QR for a new sign-up asks the name customers will see with the first code, then shows the code (before, qr refused the code, and the PNG's caption)", async () => {
  const gw = new FakeGateway();
  gw.profileName = undefined;
  await renderApp(gw, newPhone());
  await signIn(gw);
  await openTab("qr");
  await fireEvent.press(await screen.findByTestId("qr-create"));
  expect(await screen.findByText("Enter your name (1 to 60 characters).")).toBeTruthy();
  expect(gw.count("CreateQrCode")).toBe(0);
  await fireEvent.changeText(screen.getByTestId("qr-name"), "  Wanjiru K ");
  await fireEvent.press(screen.getByTestId("qr-create"));
  expect(await screen.findByTestId("qr-image")).toBeTruthy();
  expect(gw.profileName).toBe("Wanjiru K");
  expect(gw.qrCodes).toHaveLength(1);
});

test("Swahili: chosen in settings, kept for the next start; the words the web app says too are its words", async () => {
  const gw = new FakeGateway();
  const phone = newPhone();
  const first = await renderApp(gw, phone);
  await signIn(gw);
  await openTab("settings");
  await fireEvent.press(screen.getByTestId("lang-sw"));
  expect(screen.getByTestId("tab-home")).toHaveTextContent("Mwanzo");
  expect(screen.getByTestId("tab-settings")).toHaveTextContent("Mipangilio");
  expect(screen.getByTestId("sign-out")).toHaveTextContent("Toka");
  await first.unmount();
  await renderApp(gw, phone);
  expect(await screen.findByText("Tips zako")).toBeTruthy();
  // Services answer in the worker's language too.
  await waitFor(() => expect(gw.calls.at(-1)?.language).toBe("sw"));
});

test("a phone whose language is Swahili starts in Swahili", async () => {
  const gw = new FakeGateway();
  await renderApp(gw, newPhone(), "sw");
  expect(await screen.findByText("Ingia")).toBeTruthy();
  expect(screen.getByText("Nitumie namba")).toBeTruthy();
});

test("sign out everywhere that does not reach auth says so and keeps this phone signed in to try again; done, every session ends", async () => {
  const gw = new FakeGateway();
  const phone = newPhone();
  await renderApp(gw, phone);
  await signIn(gw);
  await openTab("settings");
  gw.failRevokeAll = new ConnectError("upstream unavailable", Code.Unavailable);
  await fireEvent.press(screen.getByTestId("sign-out-all"));
  // Before, the error was dropped and the phone signed out as if the other phones had been.
  expect(await screen.findByText(/^The other devices were not signed out: .+ You are still signed in here; try again\.$/)).toBeTruthy();
  expect(screen.getByTestId("settings")).toBeTruthy();
  expect(phone.secure.data.has("session")).toBe(true);
  await fireEvent.press(screen.getByTestId("sign-out-all"));
  expect(await screen.findByTestId("signin")).toBeTruthy();
  expect(gw.count("RevokeAllSessions")).toBe(2);
  expect(phone.secure.data.has("session")).toBe(false);
});

test.each(["sign-out", "sign-out-all"])("%s forgets the phone's withdrawal key: whoever signs in next as this worker adds a key of their own", async (button) => {
  const gw = new FakeGateway();
  const phone = newPhone();
  await renderApp(gw, phone);
  await signIn(gw);
  // As after a first withdrawal on this phone.
  await phone.secure.set(`device_key.${gw.userId}`, JSON.stringify({ deviceId: "d-1", secretHex: "00".repeat(32) }));
  await openTab("settings");
  await fireEvent.press(screen.getByTestId(button));
  expect(await screen.findByTestId("signin")).toBeTruthy();
  expect(phone.secure.data.has(`device_key.${gw.userId}`)).toBe(false);
});

test("after sign-in the push token is registered with notification; signing out removes it and the session", async () => {
  const gw = new FakeGateway();
  const phone = newPhone();
  await renderApp(gw, phone);
  await signIn(gw);
  await waitFor(() => expect(gw.pushTokens).toEqual(new Set(["android:fcm-token-0123456789"])));
  await openTab("settings");
  expect(screen.getByTestId("push-state")).toHaveTextContent("Tips arrive as notifications on this phone.");
  await fireEvent.press(screen.getByTestId("sign-out"));
  expect(await screen.findByTestId("signin")).toBeTruthy();
  expect(gw.pushTokens.size).toBe(0);
  expect(phone.secure.data.has("session")).toBe(false);
  expect(gw.count("Logout")).toBe(1);
});
