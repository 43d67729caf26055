// A bound on the calls one server runs at once. Past it a new call is refused at once,
// before any of its work starts, instead of joining a queue in which every call ends late:
// on one event loop, calls in flight share its time, so each added one delays all of them.
import { Code, type ConnectError, type Interceptor } from "@connectrpc/connect";
import { DomainError } from "./domain-errors.js";

/** The unary calls a service's server runs at once by default (0: no bound). */
export const DEFAULT_MAX_CALLS_IN_FLIGHT = 512;

/** What a refused caller is told to wait before trying again. */
export const OVERLOAD_RETRY_AFTER_SECONDS = 1;

/** Calls never refused: a balancer's health checks must see a busy server as serving. */
const EXEMPT_SERVICES = new Set(["grpc.health.v1.Health"]);

/**
 * The server has as many calls in flight as it takes: this one was refused
 * before anything of it ran, so sending it again (the same idempotency key) is
 * safe. UNAVAILABLE, gRPC's code for a transient refusal that a retry with
 * backoff may fix: the one gRPC retry policies list, and one a write keeps its
 * key for (RESOURCE_EXHAUSTED is the caller's own quota, answered with a new key).
 */
export class OverloadedError extends DomainError {
  readonly code = Code.Unavailable;
  readonly reason = "OVERLOADED";

  constructor(
    readonly maxCallsInFlight: number,
    readonly retryAfterSeconds = OVERLOAD_RETRY_AFTER_SECONDS,
  ) {
    super(`the server is busy (${maxCallsInFlight} calls in flight, its limit): nothing was done; try again in ${retryAfterSeconds} s`, {
      retry_after_seconds: String(retryAfterSeconds),
    });
  }

  /** With the retry hint as HTTP's retry-after (Connect, browsers) and gRPC's pushback (its retry policy waits that long). */
  override toConnectError(): ConnectError {
    const err = super.toConnectError();
    err.metadata.set("retry-after", String(this.retryAfterSeconds));
    err.metadata.set("grpc-retry-pushback-ms", String(this.retryAfterSeconds * 1000));
    return err;
  }
}

export interface Admission {
  readonly interceptor: Interceptor;
  /** Unary calls running now. */
  readonly inFlight: number;
  /** Calls refused since start. */
  readonly refused: number;
}

/**
 * Admits at most `maxCallsInFlight` unary calls at once (0: no bound, still
 * counted); each counts from its admission until its answer or error. Not counted, never
 * refused: health checks, and streams (a watch waits for news for minutes and
 * holds no work meanwhile). Plain HTTP (Daraja's callbacks, Stripe's webhooks:
 * money arriving, retried only on the provider's schedule) never passes here.
 */
export function admission(maxCallsInFlight: number): Admission {
  let inFlight = 0;
  let refused = 0;
  const interceptor: Interceptor = (next) => (req) => {
    if (req.method.methodKind !== "unary" || EXEMPT_SERVICES.has(req.service.typeName)) return next(req);
    if (maxCallsInFlight > 0 && inFlight >= maxCallsInFlight) {
      refused++;
      return Promise.reject(new OverloadedError(maxCallsInFlight).toConnectError());
    }
    inFlight++;
    const done = () => void inFlight--;
    let answer;
    try {
      answer = next(req);
    } catch (err) {
      done();
      throw err;
    }
    answer.then(done, done);
    return answer;
  };
  return {
    interceptor,
    get inFlight() {
      return inFlight;
    },
    get refused() {
      return refused;
    },
  };
}
