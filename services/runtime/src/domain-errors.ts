// Typed refusals of the domain. Domain code throws these and never builds a ConnectError;
// errorInterceptor maps each to its Connect code, with a DomainErrorInfo in the details.
import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { DomainErrorInfoSchema, IdempotencyKeyConflictSchema } from "@ttip/proto/ttip/common/v1/errors_pb.js";
import { databaseConflictOf } from "./db-answers.js";
import { fieldErrorAsSaid } from "./field-errors.js";

export abstract class DomainError extends Error {
  /** The Connect code a caller sees. */
  abstract readonly code: Code;
  /** Stable UPPER_SNAKE_CASE name of the rule that refused. */
  abstract readonly reason: string;

  constructor(
    message: string,
    /** The figures that decided it, as text (amounts formatted), for the details. */
    readonly metadata: Record<string, string> = {},
  ) {
    super(message);
    this.name = new.target.name;
  }

  toConnectError(): ConnectError {
    const info = create(DomainErrorInfoSchema, { reason: this.reason, metadata: this.metadata });
    return new ConnectError(this.message, this.code, undefined, [{ desc: DomainErrorInfoSchema, value: info }], this);
  }
}

/** The idempotency key was used before for a different request. */
export class IdempotencyConflictError extends DomainError {
  readonly code = Code.AlreadyExists;
  readonly reason = "IDEMPOTENCY_KEY_CONFLICT";

  constructor(
    readonly idempotencyKey: string,
    readonly operation: string,
  ) {
    super(`idempotency_key: already used for a different request (${operation})`, { idempotency_key: idempotencyKey, operation });
  }

  override toConnectError(): ConnectError {
    const err = super.toConnectError();
    const conflict = create(IdempotencyKeyConflictSchema, { idempotencyKey: this.idempotencyKey, operation: this.operation });
    err.details.push({ desc: IdempotencyKeyConflictSchema, value: conflict });
    return err;
  }
}

/** Not enough money where it is asked for (a balance, a pool). */
export class InsufficientFundsError extends DomainError {
  readonly code = Code.FailedPrecondition;
  readonly reason = "INSUFFICIENT_FUNDS";
}

/** A limit (per transaction, daily, monthly, M-Pesa's) would be passed. */
export class LimitExceededError extends DomainError {
  readonly code = Code.FailedPrecondition;
  readonly reason = "LIMIT_EXCEEDED";
}

/** The thing was reversed already; reversing it again changes nothing it could. */
export class AlreadyReversedError extends DomainError {
  readonly code = Code.FailedPrecondition;
  readonly reason = "ALREADY_REVERSED";
}

/** The deployment has not set up what this call needs (credentials, a fee schedule, a provider). */
export class NotConfiguredError extends DomainError {
  readonly code = Code.FailedPrecondition;
  readonly reason = "NOT_CONFIGURED";
}

/** The thing named does not exist (or is not the caller's to see). */
export class NotFoundError extends DomainError {
  readonly code = Code.NotFound;
  readonly reason = "NOT_FOUND";
}

/** The caller may not do this (not their account, not their venue, not their role). */
export class PermissionDeniedError extends DomainError {
  readonly code = Code.PermissionDenied;
  readonly reason = "PERMISSION_DENIED";
}

/** The call needs a signed-in caller, or the credentials given do not hold. */
export class UnauthenticatedError extends DomainError {
  readonly code = Code.Unauthenticated;
  readonly reason = "UNAUTHENTICATED";
}

/** The thing is not in a state that allows this (revoked, inactive, already done, in the future). */
export class InvalidStateError extends DomainError {
  readonly code = Code.FailedPrecondition;
  readonly reason = "INVALID_STATE";
}

/** The thing to create exists already (outside idempotent retries, which answer the first result). */
export class AlreadyExistsError extends DomainError {
  readonly code = Code.AlreadyExists;
  readonly reason = "ALREADY_EXISTS";
}

/** Too many attempts or requests for now; the message says when to retry, and so does a retry-after header. */
export class RateLimitedError extends DomainError {
  readonly code = Code.ResourceExhausted;
  readonly reason = "RATE_LIMITED";

  constructor(
    message: string,
    readonly retryAfterSeconds?: number,
    metadata: Record<string, string> = {},
  ) {
    super(message, retryAfterSeconds === undefined ? metadata : { ...metadata, retry_after_seconds: String(retryAfterSeconds) });
  }

  override toConnectError(): ConnectError {
    const err = super.toConnectError();
    if (this.retryAfterSeconds !== undefined) err.metadata.set("retry-after", String(this.retryAfterSeconds));
    return err;
  }
}

/**
 * The call lost to a concurrent change of the same data (a deadlock, a
 * serialization failure) and its transaction was rolled back: sending it again,
 * with the same idempotency key, may succeed. ABORTED, as gRPC's codes say of a transaction abort.
 */
export class ConcurrentChangeError extends DomainError {
  readonly code = Code.Aborted;
  readonly reason = "CONCURRENT_CHANGE";
}

/** A service or provider this call needs cannot answer now; retrying later may work. */
export class DependencyUnavailableError extends DomainError {
  readonly code = Code.Unavailable;
  readonly reason = "DEPENDENCY_UNAVAILABLE";
}

/** A value outside what the domain can handle (e.g. beyond the last tariff band). */
export class OutOfRangeError extends DomainError {
  readonly code = Code.OutOfRange;
  readonly reason = "OUT_OF_RANGE";
}

/** Not built yet: said plainly rather than faked. */
export class UnimplementedError extends DomainError {
  readonly code = Code.Unimplemented;
  readonly reason = "UNIMPLEMENTED";
}

/** The Connect error for a domain error, or undefined for anything else. */
export function connectErrorOf(err: unknown): ConnectError | undefined {
  return err instanceof DomainError ? err.toConnectError() : undefined;
}

/**
 * Any error as the Connect error a caller would see: for code that catches an
 * in-process call's refusal and branches on its code (ConnectError.from alone
 * turns a domain error into UNKNOWN).
 */
export function asConnectError(err: unknown, code?: Code): ConnectError {
  return connectErrorOf(err) ?? ConnectError.from(err, code);
}

/**
 * A peer service's refusal of a value this call passed on to it, said about
 * this call's `field` (prefixed unless the peer already named it): its
 * INVALID_ARGUMENT, NOT_FOUND or FAILED_PRECONDITION stays the caller's
 * mistake. Undefined for any other failure, which the caller decides on
 * (usually: the peer cannot answer now).
 */
export function refusalOfField(err: unknown, field: string): Error | undefined {
  const e = asConnectError(err);
  const named = e.rawMessage.startsWith(`${field}:`) || e.rawMessage.startsWith(`${field}.`);
  const message = named ? e.rawMessage : `${field}: ${e.rawMessage}`;
  if (e.code === Code.InvalidArgument) return fieldErrorAsSaid(field, message);
  if (e.code === Code.NotFound) return new NotFoundError(message);
  if (e.code === Code.FailedPrecondition) return new InvalidStateError(message);
  return undefined;
}

/**
 * One request's refusal inside a batch call's answer (each request answered as its call alone
 * would be, as a code and a message instead of a thrown error): a client's mistake says why; a
 * statement that lost to a concurrent transaction is ABORTED (logged at warn), to retry; anything
 * else (INTERNAL, UNKNOWN: a bug or an outage, whose text may hold data) is logged as `what` and
 * told as "internal error" only: each as the server's error interceptor answers a call.
 */
export function batchRefusal(err: unknown, logger: { error(fields: object, message: string): void; warn(fields: object, message: string): void }, what: string): { code: Code; message: string } {
  const conflict = databaseConflictOf(err);
  if (conflict) {
    logger.warn({ ...conflict }, what);
    return { code: Code.Aborted, message: "the request conflicted with a concurrent change of the same data; retry it with the same idempotency key" };
  }
  const e = asConnectError(err);
  if (e.code === Code.Internal || e.code === Code.Unknown) {
    logger.error({ err }, what);
    return { code: Code.Internal, message: "internal error" };
  }
  return { code: e.code, message: e.rawMessage };
}
