import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@ttip/proto/grpc/health/v1/health_pb.js";
import { DomainErrorInfoSchema } from "@ttip/proto/ttip/common/v1/errors_pb.js";
import {
  asConnectError,
  batchRefusal,
  DependencyUnavailableError,
  InsufficientFundsError,
  InvalidStateError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitedError,
  refusalOfField,
} from "../src/domain-errors.js";
import { fieldError, violationsOf } from "../src/field-errors.js";
import { errorInterceptor } from "../src/interceptors.js";
import { createLogger } from "../src/log.js";

/** A handler that throws `err`, unary (Check) or after one message of a stream (Watch), behind the runtime's errorInterceptor. */
function throwing(err: unknown) {
  const transport = createRouterTransport(
    (router) =>
      router.service(Health, {
        check: () => {
          throw err;
        },
        async *watch() {
          yield { status: Status.SERVING };
          throw err;
        },
      }),
    { router: { interceptors: [errorInterceptor(createLogger({ level: "silent" }))] } },
  );
  const client = createClient(Health, transport);
  const caught = async (p: Promise<unknown>) => p.then(() => assert.fail("no error"), (e: unknown) => e as ConnectError);
  return {
    unary: () => caught(client.check({})),
    stream: () =>
      caught(
        (async () => {
          for await (const _ of client.watch({})) void _;
        })(),
      ),
  };
}

describe("typed domain errors, mapped once by errorInterceptor", () => {
  const table: [Error, Code, string][] = [
    [new NotFoundError("tip_id: no such tip"), Code.NotFound, "NOT_FOUND"],
    [new PermissionDeniedError("venue_id: not your venue"), Code.PermissionDenied, "PERMISSION_DENIED"],
    [new InvalidStateError("the code is revoked"), Code.FailedPrecondition, "INVALID_STATE"],
    [new InsufficientFundsError("available KES 10.00", { available: "KES 10.00" }), Code.FailedPrecondition, "INSUFFICIENT_FUNDS"],
    [new RateLimitedError("try again in 30 s"), Code.ResourceExhausted, "RATE_LIMITED"],
    [new DependencyUnavailableError("qr cannot answer"), Code.Unavailable, "DEPENDENCY_UNAVAILABLE"],
  ];

  test("each becomes its code, its message unchanged, with DomainErrorInfo naming the rule: unary calls and streams alike", async () => {
    for (const [err, code, reason] of table) {
      for (const e of [await throwing(err).unary(), await throwing(err).stream()]) {
        assert.equal(e.code, code, err.message);
        assert.equal(e.rawMessage, err.message);
        assert.equal(e.findDetails(DomainErrorInfoSchema)[0]?.reason, reason);
      }
    }
    const funds = await throwing(table[3][0]).unary();
    assert.deepEqual(funds.findDetails(DomainErrorInfoSchema)[0]?.metadata, { available: "KES 10.00" });
  });

  test("field errors keep their violations; any other error is INTERNAL with the request id, never its text", async () => {
    const bad = await throwing(fieldError("amount", "must be positive")).stream();
    assert.equal(bad.code, Code.InvalidArgument);
    assert.deepEqual(violationsOf(bad), [{ field: "amount", message: "must be positive", ruleId: "invalid" }]);
    const bug = await throwing(new TypeError("secret detail")).unary();
    assert.equal(bug.code, Code.Internal);
    assert.doesNotMatch(bug.rawMessage, /secret/);
  });

  test("asConnectError: an in-process refusal keeps its code where ConnectError.from would say UNKNOWN", () => {
    const err = new NotFoundError("qr_code_id: no such code");
    assert.equal(ConnectError.from(err).code, Code.Unknown);
    assert.equal(asConnectError(err).code, Code.NotFound);
    assert.equal(asConnectError(new ConnectError("x", Code.Aborted)).code, Code.Aborted);
  });

  test("refusalOfField: a peer's refusal of a passed-on value stays the caller's mistake, about the caller's field", () => {
    const cases: [ConnectError | Error, string, string | undefined, string | undefined][] = [
      [new ConnectError("short_code: no such code", Code.NotFound), "qr_code", "NotFound", "qr_code: short_code: no such code"],
      [new ConnectError("qr_code_id: revoked", Code.FailedPrecondition), "qr_code", "FailedPrecondition", "qr_code: qr_code_id: revoked"],
      [fieldError("amount.currency", "KES only"), "amount", "InvalidArgument", "amount.currency: KES only"],
      [new ConnectError("amount: too small", Code.InvalidArgument), "amount", "InvalidArgument", "amount: too small"],
      [new NotFoundError("no such worker"), "worker_id", "NotFound", "worker_id: no such worker"],
      [new ConnectError("down", Code.Unavailable), "qr_code", undefined, undefined],
      [new Error("socket hang up"), "qr_code", undefined, undefined],
    ];
    for (const [peer, field, code, message] of cases) {
      const mine = refusalOfField(peer, field);
      assert.equal(mine && Code[asConnectError(mine).code], code, `${peer.message} -> code`);
      assert.equal(mine && asConnectError(mine).rawMessage, message);
    }
    const invalid = asConnectError(refusalOfField(new ConnectError("too small", Code.InvalidArgument), "amount"));
    assert.deepEqual(violationsOf(invalid).map((v) => v.field), ["amount"], "the violation names the caller's field");
  });

  test("batchRefusal: a batch item's refusal says a client's mistake as it is; anything else is logged and told as internal only", () => {
    const logged: string[] = [];
    const logger = { error: (_fields: object, message: string) => void logged.push(message), warn: (_fields: object, message: string) => void logged.push(message) };
    assert.deepEqual(batchRefusal(new NotFoundError("account_id: no account"), logger, "an item failed"), { code: Code.NotFound, message: "account_id: no account" });
    assert.deepEqual(batchRefusal(fieldError("amount", "required"), logger, "an item failed"), { code: Code.InvalidArgument, message: "amount: required" });
    assert.deepEqual(logged, []);
    assert.deepEqual(batchRefusal(new Error("relation secret_table does not exist"), logger, "an item failed"), { code: Code.Internal, message: "internal error" });
    assert.deepEqual(logged, ["an item failed"]);
  });
});
