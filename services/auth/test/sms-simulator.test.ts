// The SMS simulator's refusal (numbers ending 0000) is a marker the tests' plain numbers never end in.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { isSimulatorMarker, testPhone } from "@ttip/runtime/testing";
import { startSmsSimulator, type SmsSimulator } from "../src/testing.js";

let sim: SmsSimulator;
before(async () => void (sim = await startSmsSimulator({ apiKey: "k" })));
after(() => sim.close());

const send = async (to: string) => {
  const res = await fetch(`${sim.url}/version1/messaging`, { method: "POST", headers: { apikey: "k", "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams({ username: "sandbox", to, message: "code 1234" }) });
  return res.status;
};

test("a number ending 0000 is refused, a plain test number is delivered: 0000 is a marker by the testing module's rule", async () => {
  const refused = testPhone({ format: "+254", suffix: "0000" });
  assert.equal(await send(refused), 403);
  assert.equal(sim.lastTo(refused), undefined);
  assert.ok(isSimulatorMarker("0000"));
  const plain = testPhone({ format: "+254" });
  assert.equal(await send(plain), 201);
  assert.equal(sim.lastTo(plain)?.message, "code 1234");
});
