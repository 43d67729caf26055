// A call's headers as an in-process call makes them (runtime light-headers.ts): made, two set,
// one read, one looked for, in LightHeaders and in node's own Headers (the yardstick, same
// process, alternated each round). Prints CPU nanoseconds per set of headers and the ratio.
//   node --import tsx bench/light-headers.ts [rounds=5] [sets per round=200000]
import { LightHeaders } from "@ttip/runtime";

const rounds = Number(process.argv[2] ?? 5);
const perRound = Number(process.argv[3] ?? 200_000);

/** CPU ns per set of headers made by `make` and used as a call uses them. */
function nsPerSet(make: () => Headers): number {
  const start = process.cpuUsage();
  let seen = 0;
  for (let i = 0; i < perRound; i++) {
    const h = make();
    h.set("x-request-id", "0b6f4c1e-request");
    h.set("x-ttip-internal", "v1.1764570000.signature");
    seen += (h.get("x-request-id")?.length ?? 0) + (h.has("x-ttip-subject") ? 1 : 0);
  }
  const used = process.cpuUsage(start);
  if (seen !== perRound * "0b6f4c1e-request".length) throw new Error("the headers did not answer as set");
  return ((used.user + used.system) * 1000) / perRound;
}

for (let round = 1; round <= rounds; round++) {
  const node = nsPerSet(() => new Headers());
  const light = nsPerSet(() => new LightHeaders());
  console.log(`round ${round}: node's Headers ${node.toFixed(0)} ns, LightHeaders ${light.toFixed(0)} ns per set (ratio ${(light / node).toFixed(2)})`);
}
