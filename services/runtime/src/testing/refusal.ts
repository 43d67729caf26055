import assert from "node:assert/strict";
import { Code, ConnectError } from "@connectrpc/connect";
import { DomainErrorInfoSchema, IdempotencyKeyConflictSchema } from "@ttip/proto/ttip/common/v1/errors_pb.js";

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

/** The error a call must fail with (the test fails if it succeeds). */
export async function refusal(call: Promise<unknown>): Promise<ConnectError> {
  return call.then(
    () => {
      throw new Error("expected a refusal, the call succeeded");
    },
    (e: unknown) => ConnectError.from(e),
  );
}

/** The key an idempotency conflict names in its details (undefined if the refusal is not one). */
export function conflictingKeyOf(err: ConnectError): string | undefined {
  if (err.code !== Code.AlreadyExists) return undefined;
  return err.findDetails(IdempotencyKeyConflictSchema)[0]?.idempotencyKey;
}

/** The rule a domain refusal names (DomainErrorInfo.reason, e.g. "INSUFFICIENT_FUNDS"), or undefined. */
export function reasonOf(err: ConnectError): string | undefined {
  return err.findDetails(DomainErrorInfoSchema)[0]?.reason;
}
