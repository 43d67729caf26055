// The tip-SMS choice kept on the phone, sent by flushes against a router transport: on a network that hangs, and
// across a sign-out.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { PreferencesSchema, type Preferences } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { NotificationService } from "@ttip/proto/ttip/notification/v1/notification_service_pb.js";
import { memoryStore } from "../lib/key-value";
import { flushPreferences, pendingPreferences, queuePreferences, smsOn, withTipSms } from "../lib/pending-settings";

const A = "6a8f0a7e-1c0b-4d7e-8f3a-0c1d2e3f4a01";
const B = "6a8f0a7e-1c0b-4d7e-8f3a-0c1d2e3f4a02";

/** A notification service whose GetPreferences answers when `answer` is called (each call its own). */
function service() {
  const asked: ((prefs: Preferences | Error) => void)[] = [];
  const updated: Preferences[] = [];
  const transport = createRouterTransport(({ service: serve }) =>
    serve(NotificationService, {
      getPreferences: () =>
        new Promise((resolve, reject) => asked.push((p) => (p instanceof Error ? reject(p) : resolve({ preferences: p })))),
      updatePreferences: (req) => (updated.push(req.preferences!), { preferences: req.preferences }),
    }),
  );
  return { client: createClient(NotificationService, transport), asked, updated };
}

const settle = () => new Promise((r) => setTimeout(r, 20));

test("on a network that hangs, the retry timer's flushes share the one waiting: one more call when it fails, not one per tick", async () => {
  const cache = memoryStore();
  const { client, asked } = service();
  await queuePreferences(cache, A, withTipSms(create(PreferencesSchema), false));
  const tick = () => flushPreferences(cache, A, client, () => A).catch((e: unknown) => e);
  const flushes = [tick()];
  await settle();
  expect(asked).toHaveLength(1);
  // Nine more ticks while the first hangs.
  for (let i = 0; i < 9; i++) flushes.push(tick());
  await settle();
  asked[0](new ConnectError("network request failed", Code.Unavailable));
  await settle();
  // Before, the nine behind it ran one after another, each asking again (and hanging in turn).
  expect(asked).toHaveLength(2);
  asked[1](new ConnectError("network request failed", Code.Unavailable));
  const outcomes = await Promise.all(flushes);
  expect(outcomes.every((e) => e instanceof ConnectError && e.code === Code.Unavailable)).toBe(true);
  expect(asked).toHaveLength(2);
  expect(await pendingPreferences(cache, A)).toBeDefined();
});

test("signed out while a flush asks: the next worker's settings are not changed, and the choice waits for its worker", async () => {
  const cache = memoryStore();
  const { client, asked, updated } = service();
  let signedIn: string | undefined = A;
  await queuePreferences(cache, A, withTipSms(create(PreferencesSchema), false));
  const flush = flushPreferences(cache, A, client, () => signedIn);
  await settle();
  // A signs out and B signs in on the phone before the answer: the client's calls are now made as B.
  signedIn = B;
  asked[0](withTipSms(create(PreferencesSchema, { quietHoursStart: "22:00", quietHoursEnd: "06:00" }), true));
  expect(await flush).toBe(false);
  expect(updated).toHaveLength(0);
  // A flush of A's begun while B is signed in asks nothing.
  expect(await flushPreferences(cache, A, client, () => signedIn)).toBe(false);
  expect(asked).toHaveLength(1);
  expect(smsOn(await pendingPreferences(cache, A))).toBe(false);

  // A back: their choice is sent, onto their settings as they are then.
  signedIn = A;
  const back = flushPreferences(cache, A, client, () => signedIn);
  await settle();
  asked[1](create(PreferencesSchema, { quietHoursStart: "21:00", quietHoursEnd: "05:00" }));
  expect(await back).toBe(true);
  expect(updated).toHaveLength(1);
  expect(smsOn(updated[0])).toBe(false);
  expect([updated[0].quietHoursStart, updated[0].quietHoursEnd]).toEqual(["21:00", "05:00"]);
  expect(await pendingPreferences(cache, A)).toBeUndefined();
});
