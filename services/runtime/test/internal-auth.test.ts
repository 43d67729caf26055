import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHmac, randomBytes } from "node:crypto";
import { test } from "node:test";
import { signInternal, verifyInternal } from "../src/internal-auth.js";
import { sourceLoaderFlags } from "../src/testing/source-loader.js";

test("internal signature: covers the identity headers, expires, and needs the shared key", () => {
  const key = randomBytes(32);
  const h = new Headers({ "x-ttip-subject": "u1", "x-ttip-roles": "worker" });
  signInternal(h, key);
  assert.equal(verifyInternal(h, key), true);
  assert.equal(verifyInternal(h, randomBytes(32)), false, "another key");
  const changed = new Headers(h);
  changed.set("x-ttip-roles", "worker,admin");
  assert.equal(verifyInternal(changed, key), false, "a role added after signing");
  const added = new Headers(h);
  added.set("x-ttip-session", "s1");
  assert.equal(verifyInternal(added, key), false, "a header added after signing");
  assert.equal(verifyInternal(h, key, Date.now() + 61_000), false, "older than a minute");
  assert.equal(verifyInternal(new Headers({ "x-ttip-internal": "v1.1.x" }), key), false);
});

test("internal signature: covers the step-up time when present, and reads as before without it", () => {
  const key = randomBytes(32);
  const plain = new Headers({ "x-ttip-subject": "u1", "x-ttip-roles": "finance" });
  signInternal(plain, key);
  const forged = new Headers(plain);
  forged.set("x-ttip-step-up-at", String(Math.floor(Date.now() / 1000)));
  assert.equal(verifyInternal(forged, key), false, "a step-up claimed after signing");

  const stepped = new Headers({ "x-ttip-subject": "u1", "x-ttip-roles": "finance", "x-ttip-step-up-at": "1700000000" });
  signInternal(stepped, key);
  assert.equal(verifyInternal(stepped, key), true);
  const moved = new Headers(stepped);
  moved.set("x-ttip-step-up-at", "1700000060");
  assert.equal(verifyInternal(moved, key), false, "the step-up time changed");
  const dropped = new Headers(stepped);
  dropped.delete("x-ttip-step-up-at");
  assert.equal(verifyInternal(dropped, key), false, "the step-up removed");
});

test("internal signature: the same bytes as an HMAC-SHA256 over the documented layout (signatures of older processes still verify)", () => {
  const key = randomBytes(32);
  const now = Date.now();
  const at = String(Math.floor(now / 1000));
  const h = new Headers({ "x-ttip-subject": "u1", "x-ttip-roles": "worker", "x-ttip-client-address": "203.0.113.9", "x-ttip-step-up-at": "1700000000" });
  const layout = `v1\n${at}\nu1\nworker\n\n203.0.113.9\nx-ttip-step-up-at:1700000000`;
  const old = createHmac("sha256", key).update(layout).digest("base64url");
  signInternal(h, key, now);
  assert.equal(h.get("x-ttip-internal"), `v1.${at}.${old}`);
  const forged = new Headers(h);
  const sig = old.slice(0, -2) + (old.at(-2) === "A" ? "B" : "A") + old.at(-1);
  forged.set("x-ttip-internal", `v1.${at}.${sig}`);
  assert.equal(verifyInternal(forged, key, now), false, "a signature one character off");
  const otherKey = Buffer.from(key);
  otherKey[31] ^= 0x80;
  assert.equal(verifyInternal(h, otherKey, now), false, "a key one bit off");
});

/** Runs `code` (a module) in a new process with INTERNAL_SIGNING_KEY=`key`, internal-auth.ts imported as `auth`; its output. */
function inNewProcess(key: string, code: string): string {
  const auth = JSON.stringify(new URL("../src/internal-auth.ts", import.meta.url).href);
  const script = `const auth = await import(${auth});\n${code}`;
  return execFileSync(process.execPath, [...sourceLoaderFlags(), "--input-type=module", "-e", script], { env: { ...process.env, INTERNAL_SIGNING_KEY: key }, encoding: "utf8" });
}

test("internalSigningKey: the key the process starts with signs and verifies, read once (a later change to the environment is not read)", () => {
  const started = "a".repeat(32);
  const out = inNewProcess(
    started,
    `const first = auth.internalSigningKey();
     process.env.INTERNAL_SIGNING_KEY = "b".repeat(32);
     const h = new Headers({ "x-ttip-subject": "u1" });
     auth.signInternal(h);
     console.log(JSON.stringify({ key: first.toString(), same: auth.internalSigningKey() === first, signature: h.get("x-ttip-internal"), verifies: auth.verifyInternal(h) }));`,
  );
  const seen = JSON.parse(out) as { key: string; same: boolean; signature: string; verifies: boolean };
  assert.equal(seen.key, started);
  assert.equal(seen.same, true, "the same Buffer after the environment changed (its KeyObject is made once)");
  assert.equal(seen.verifies, true);
  const signed = new Headers({ "x-ttip-subject": "u1", "x-ttip-internal": seen.signature });
  assert.equal(verifyInternal(signed, Buffer.from(started)), true, "signed with the key set at start");
  assert.equal(verifyInternal(signed, Buffer.from("b".repeat(32))), false, "not with the one set later");
});

test("internalSigningKey: a key shorter than 32 characters is refused at its first use", () => {
  const out = inNewProcess("short", `try { auth.internalSigningKey(); console.log("used"); } catch (err) { console.log(err.message); }`);
  assert.match(out, /at least 32 characters/);
});

test("internal signature: MACs remembered within a second answer as computed ones, per key, past the memo's bound", () => {
  const [key, other] = [randomBytes(32), randomBytes(32)];
  const now = Date.now();
  const signed = Array.from({ length: 600 }, (_, i) => {
    const h = new Headers({ "x-ttip-subject": `u${i % 300}`, "x-ttip-roles": "worker" });
    signInternal(h, key, now);
    return h;
  });
  for (const h of signed) {
    assert.equal(verifyInternal(h, key, now), true);
    assert.equal(verifyInternal(h, other, now), false, "the message's MAC under another key is not the remembered one");
    const subject = h.get("x-ttip-subject")!;
    const at = String(Math.floor(now / 1000));
    assert.equal(h.get("x-ttip-internal"), `v1.${at}.${createHmac("sha256", key).update(`v1\n${at}\n${subject}\nworker\n\n`).digest("base64url")}`);
  }
});
