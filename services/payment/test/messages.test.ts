// What a customer reads when M-Pesa refuses a tip: whether their money was taken is the first thing they ask.
import assert from "node:assert/strict";
import { test } from "node:test";
import { resultMessage } from "../src/messages.js";

test("every M-Pesa refusal says nothing was charged, in English and Swahili; a tip with no answer in time does not claim it", () => {
  for (const code of ["1", "1001", "1019", "1025", "9999", "1032", "1037", "2001", "17", "SFC_IC0003", "unavailable", "a code M-Pesa added later"]) {
    assert.match(resultMessage(code, "en"), /Nothing was charged/, code);
    assert.match(resultMessage(code, "sw"), /Hakuna pesa iliyotozwa/, code);
  }
  assert.doesNotMatch(resultMessage("expired", "en"), /Nothing was charged/);
  assert.match(resultMessage("1", "en"), /top up or choose a smaller amount/);
});
