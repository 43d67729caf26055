import assert from "node:assert/strict";
import { type Code, ConnectError } from "@connectrpc/connect";

/** The code and message (without the "[code]" prefix) a call must fail with; fails the test when it succeeds. */
export async function failure(p: Promise<unknown>): Promise<{ code: Code; message: string }> {
  try {
    await p;
  } catch (err) {
    const e = ConnectError.from(err);
    return { code: e.code, message: e.rawMessage };
  }
  assert.fail("expected the call to fail");
}
