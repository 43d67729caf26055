import assert from "node:assert/strict";
import { test } from "node:test";
import type { DeclaredAccess } from "@ttip/runtime";
import { loosenings } from "./access-breaking.js";

const RPC = "ttip.x.v1.XService/Do";
const compare = (before: DeclaredAccess | undefined, after: DeclaredAccess | undefined) => loosenings(new Map([[RPC, before]]), new Map([[RPC, after]]));

test("access-breaking: an RPC that admits a new caller or drops a wall fails; tightening, first declarations and removals pass", () => {
  const cases: [string, DeclaredAccess | undefined, DeclaredAccess | undefined, string[]][] = [
    ["same", { access: "admin", roles: ["admin"] }, { access: "admin", roles: ["admin"] }, []],
    ["a role added", { access: "admin", roles: ["admin"] }, { access: "admin", roles: ["admin", "support"] }, [`${RPC}: now admits support`]],
    ["a role taken away", { access: "admin", roles: ["admin", "finance"] }, { access: "admin", roles: ["admin"] }, []],
    ["admin to signed in", { access: "admin", roles: ["admin"] }, { access: "signed_in", roles: ["admin"] }, [`${RPC}: no longer needs the admin network`]],
    ["step-up dropped", { access: "admin", roles: ["admin"], stepUp: true }, { access: "admin", roles: ["admin"] }, [`${RPC}: no longer needs the device step-up`]],
    ["signed in to anonymous", { access: "signed_in", roles: ["worker"] }, { access: "anonymous" }, [`${RPC}: now admits anonymous, customer, venue_manager, admin, support, finance, partner`]],
    ["anonymous to signed in", { access: "anonymous" }, { access: "signed_in", roles: ["worker"] }, []],
    ["a partner scope added", { access: "anonymous" }, { access: "anonymous", partnerScope: "qr:write" }, [`${RPC}: now admits partner:qr:write`]],
    ["a partner scope changed", { access: "partner", partnerScope: "tips:read" }, { access: "partner", partnerScope: "tips:write" }, [`${RPC}: now admits partner:tips:write`]],
    ["internal opened", { access: "internal" }, { access: "signed_in" }, [`${RPC}: now admits customer, worker, venue_manager, admin, support, finance, partner`]],
    ["declared for the first time", undefined, { access: "anonymous" }, []],
  ];
  for (const [name, before, after, expected] of cases) assert.deepEqual(compare(before, after), expected, name);
  assert.deepEqual(loosenings(new Map([[RPC, { access: "internal" }]]), new Map()), [], "a removed RPC is buf breaking's to judge");
});
