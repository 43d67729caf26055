// Notification's render() of a tip's SMS (TIP_RECEIVED, English), the text split once per
// template (templates.ts), against the yardstick in the same process: the regular-expression
// fill it replaced (placeholders searched, then replace with a callback), alternated each round.
// Prints CPU nanoseconds per render and the ratio.
//   node --import tsx bench/template-render.ts [rounds=5] [renders per round=200000]
import { TemplateKey } from "@ttip/proto/ttip/notification/v1/notification_pb.js";
import { defaultTemplates, render } from "../services/notification/src/templates.js";

const rounds = Number(process.argv[2] ?? 5);
const perRound = Number(process.argv[3] ?? 200_000);

const PLACEHOLDER = /\{\{\s*([a-z_]{1,40})\s*\}\}/g;
/** The fill as it was. */
function byReplace(text: string, variables: Record<string, string>): string {
  const missing = [...new Set([...text.matchAll(PLACEHOLDER)].map((m) => m[1]))].filter((v) => variables[v] === undefined);
  if (missing.length) throw new Error(`missing ${missing.join()}`);
  return text.replace(PLACEHOLDER, (_, name: string) => variables[name]).replace(/[ \t]+$/gm, "").replace(/ {2,}/g, " ");
}

const body = defaultTemplates().find((t) => t.key === TemplateKey.TIP_RECEIVED && t.locale === "en")!.body;
const variables = { amount: "KES 500", net: "KES 480", from: "Wanjiru", message: "" };

function nsPerRender(fill: (text: string, v: Record<string, string>) => string): number {
  const start = process.cpuUsage();
  let chars = 0;
  for (let i = 0; i < perRound; i++) chars += fill(body, variables).length;
  const used = process.cpuUsage(start);
  if (chars !== perRound * byReplace(body, variables).length) throw new Error("the fills differ");
  return ((used.user + used.system) * 1000) / perRound;
}

for (let round = 1; round <= rounds; round++) {
  const before = nsPerRender(byReplace);
  const now = nsPerRender(render);
  console.log(`round ${round}: regular-expression fill ${before.toFixed(0)} ns, render ${now.toFixed(0)} ns (ratio ${(now / before).toFixed(2)})`);
}
