// flush() is what tests and shutdown rely on to find every ended span at the collector.
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { test } from "node:test";
import { inConsumerSpan, startTracing } from "../src/index.js";
import { startOtlpReceiver } from "../src/testing/index.js";

test("flush waits for an export the processor's timer already began: the span has reached the collector when it returns", async () => {
  const receiver = await startOtlpReceiver({ holdMs: 300 });
  const tracing = await startTracing({ endpoint: receiver.url, serviceName: "flush-test", exportDelayMs: 10 });
  try {
    await inConsumerSpan("ended-before-flush", [undefined], async () => undefined);
    // The timer's export is on its way (held by the collector) when flush is called.
    await sleep(100);
    assert.equal(receiver.exports(), 0, "the collector holds the timer's export");
    await tracing.flush();
    assert.deepEqual(receiver.spans.map((s) => s.name), ["ended-before-flush"]);
  } finally {
    await tracing.stop();
    await receiver.close();
  }
});
