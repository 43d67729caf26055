// The tip status page's long poll: a watch that fails fast (payment restarting) is asked again only after a
// pause, so a short outage does not spend every attempt and leave a paid tip reading "waiting" for good.
import assert from "node:assert/strict";
import { test } from "node:test";
import { pollForChange } from "../src/lib/poll-for-change.js";

/** A clock that moves only when the poll sleeps or a long poll waits. */
function fakeClock() {
  let at = 0;
  const slept: number[] = [];
  return { now: () => at, sleep: async (ms: number) => void (slept.push(ms), (at += ms)), wait: (ms: number) => (at += ms), slept };
}

test("a watch answering at once with no change is asked again 2 s after it started: ten seconds of outage spend five attempts, not all forty", async () => {
  const clock = fakeClock();
  let asked = 0;
  // Fails for the first 10 s (an immediate "no change" or an error), then answers the change.
  const wait = async () => {
    asked++;
    clock.wait(50);
    if (clock.now() < 10_000) {
      if (asked % 2) throw new Error("unavailable");
      return 1;
    }
    return 2;
  };
  const changed = await pollForChange(1, wait, { attempts: 40, minIntervalMs: 2_000, stopped: () => false, ...clock });
  // Before, each fast answer was asked again at once: forty asks in two seconds, and the change never seen.
  assert.equal(changed, 2);
  assert.equal(asked, 6);
  assert.deepEqual(clock.slept, [1_950, 1_950, 1_950, 1_950, 1_950]);
});

test("long polls that run their time are asked again without a pause; after the last attempt, no change is undefined; a stopped page asks no more", async () => {
  const clock = fakeClock();
  let asked = 0;
  const longPoll = async () => (asked++, clock.wait(25_000), 1);
  assert.equal(await pollForChange(1, longPoll, { attempts: 3, minIntervalMs: 2_000, stopped: () => false, ...clock }), undefined);
  assert.deepEqual([asked, clock.slept], [3, []]);
  let stopped = false;
  const stopsPage = async () => ((stopped = true), 2);
  assert.equal(await pollForChange(1, stopsPage, { attempts: 3, minIntervalMs: 2_000, stopped: () => stopped, ...clock }), undefined, "the page moved on before the answer");
});

test("asks that fail while the device is offline are not counted: the poll waits for the network, then sees the change", async () => {
  const clock = fakeClock();
  let online = true;
  let asked = 0;
  let waitedForNetwork = 0;
  // Offline from the second ask for 50 failed asks (a lift, a basement bar), then back, and the tip is paid.
  const wait = async () => {
    asked++;
    clock.wait(50);
    if (asked === 2) online = false;
    if (!online) throw new Error("network request failed");
    return asked > 2 ? 2 : 1;
  };
  const backOnline = async () => {
    waitedForNetwork++;
    if (waitedForNetwork === 50) online = true;
  };
  // Before, the 50 failures spent all 40 attempts: undefined, the page "waiting" for good.
  const changed = await pollForChange(1, wait, { attempts: 40, minIntervalMs: 2_000, stopped: () => false, online: () => online, backOnline, ...clock });
  assert.equal(changed, 2);
  assert.equal(waitedForNetwork, 50);
  assert.equal(asked, 52);
});
