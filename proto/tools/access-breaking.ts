// `buf breaking` compares types and names, never option values: an RPC whose
// declared access (ttip.common.v1.access / service_access) opens up would pass
// it. This compares every RPC the base ref had with the working tree's and
// fails when one admits a caller it did not (a wider audience, another role,
// a partner scope added or changed) or drops the admin network or the
// device step-up. Tightening, new RPCs and first declarations pass.
//   node --import tsx proto/tools/access-breaking.ts <git-ref>
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { createFileRegistry, fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { accessOf, ROLES, type DeclaredAccess } from "@ttip/runtime";

/** Who a declaration lets in: caller kinds ("anonymous", a role, "partner:<scope>"), and the walls left. */
export function admitted(d: DeclaredAccess | undefined): { callers: Set<string>; adminNetwork: boolean; stepUp: boolean } {
  const callers = new Set<string>();
  if (d?.partnerScope) callers.add(`partner:${d.partnerScope}`);
  if (d?.access === "anonymous") ["anonymous", ...ROLES].forEach((c) => callers.add(c));
  if (d?.access === "signed_in") (d.roles?.length ? d.roles : ROLES).forEach((c) => callers.add(c));
  if (d?.access === "admin") d.roles.forEach((c) => callers.add(c));
  const adminNetwork = d?.access === "admin" || (d?.access === "signed_in" && d.adminNetwork === true);
  return { callers, adminNetwork, stepUp: d?.access === "admin" && d.stepUp === true };
}

/** Each RPC of `before` that `after` opens further, with what it now admits; empty when none. */
export function loosenings(before: ReadonlyMap<string, DeclaredAccess | undefined>, after: ReadonlyMap<string, DeclaredAccess | undefined>): string[] {
  const found: string[] = [];
  for (const [rpc, was] of before) {
    // Removed: buf breaking's to judge. Undeclared before: it was refused, and
    // declaring it is what the policy test demands, not a loosening.
    if (!after.has(rpc) || was === undefined) continue;
    const a = admitted(was);
    const b = admitted(after.get(rpc));
    const added = [...b.callers].filter((c) => !a.callers.has(c));
    if (added.length) found.push(`${rpc}: now admits ${added.join(", ")}`);
    if (a.adminNetwork && !b.adminNetwork) found.push(`${rpc}: no longer needs the admin network`);
    if (a.stepUp && !b.stepUp) found.push(`${rpc}: no longer needs the device step-up`);
  }
  return found;
}

/** Every ttip RPC's declared access in a descriptor set. */
function declarationsIn(file: string): Map<string, DeclaredAccess | undefined> {
  const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(file)));
  const out = new Map<string, DeclaredAccess | undefined>();
  for (const type of registry) {
    if (type.kind !== "service" || !type.typeName.startsWith("ttip.")) continue;
    for (const m of type.methods) out.set(`${type.typeName}/${m.name}`, accessOf(m));
  }
  return out;
}

function build(input: string, dir: string, name: string): string {
  const out = path.join(dir, `${name}.binpb`);
  execFileSync("npx", ["buf", "build", input, "--as-file-descriptor-set", "-o", out], { stdio: "inherit" });
  return out;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const ref = process.argv[2];
  if (!ref) throw new Error("usage: access-breaking.ts <git-ref>");
  const dir = mkdtempSync(path.join(os.tmpdir(), "ttip-access-"));
  try {
    const found = loosenings(declarationsIn(build(`.git#ref=${ref}`, dir, "before")), declarationsIn(build(".", dir, "after")));
    for (const f of found) console.error(`access loosened: ${f}`);
    if (found.length) process.exit(1);
    console.log(`access declarations: none loosened since ${ref}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
