import { AsyncLocalStorage } from "node:async_hooks";
import { performance } from "node:perf_hooks";
import { Code, ConnectError, createContextKey, type ContextValues, type Interceptor } from "@connectrpc/connect";
import { databaseConflictOf } from "./db-answers.js";
import { ConcurrentChangeError, connectErrorOf } from "./domain-errors.js";
import { REQUEST_ID_HEADER } from "./headers.js";
import type { Logger } from "./log.js";
import { uuidV4 } from "./uuid.js";
const VALID_REQUEST_ID = /^[A-Za-z0-9._:-]{8,128}$/;

/** The request id of the current call, for handlers and downstream calls. */
export const requestIdKey = createContextKey<string>("", { description: "request id" });

/** The request id of the call being handled, for code that has no handler context (outgoing calls to peers). */
const currentCall = new AsyncLocalStorage<string>();

/** The request id of the call this code runs for, if any. */
export function currentRequestId(): string | undefined {
  return currentCall.getStore();
}

/** For transports to peer services: the current call's request id travels on, so one id follows a call everywhere. */
export function requestIdPropagation(): Interceptor {
  return (next) => (req) => {
    const id = currentRequestId();
    if (id && !req.header.has(REQUEST_ID_HEADER)) req.header.set(REQUEST_ID_HEADER, id);
    return next(req);
  };
}

/**
 * Accepts a well-formed caller request id or makes one, and echoes it back.
 * Promise callbacks, not an async function: no suspended frame per call, and
 * a header set only when the id is not the caller's own already.
 */
export function requestIdInterceptor(): Interceptor {
  return (next) => (req) => {
    const given = req.header.get(REQUEST_ID_HEADER);
    const id = given && VALID_REQUEST_ID.test(given) ? given : uuidV4();
    if (id !== given) req.header.set(REQUEST_ID_HEADER, id);
    req.contextValues.set(requestIdKey, id);
    let answer;
    try {
      answer = currentCall.run(id, next, req);
    } catch (err) {
      return Promise.reject(withRequestId(err, id));
    }
    return answer.then(
      (res) => (res.header.set(REQUEST_ID_HEADER, id), res),
      (err: unknown) => Promise.reject(withRequestId(err, id)),
    );
  };
}

/** `err` as the caller gets it, with the call's request id in its metadata. */
function withRequestId(err: unknown, id: string): ConnectError {
  const ce = ConnectError.from(err);
  ce.metadata.set(REQUEST_ID_HEADER, id);
  return ce;
}

const SERVER_FAULT = new Set([Code.Internal, Code.Unknown, Code.DataLoss]);

export interface ErrorLogOptions {
  /**
   * The errors come from elsewhere (the gateway relays its backends'): the
   * service where one happened logged it, the access log has the code.
   */
  relayed?: boolean;
}

/**
 * Hides internal details and logs each error once, where it happens: a
 * DomainError becomes its Connect code (the one place domain refusals are
 * mapped); a client's mistake is logged at debug only (the gateway's access
 * log has one line per call); a server fault at error; a statement that lost
 * to a concurrent transaction (db-answers.ts) is ABORTED, logged at warn; any
 * other error that is not a ConnectError is a bug, answered as INTERNAL with
 * the request id to quote.
 */
export function errorInterceptor(logger: Logger, options: ErrorLogOptions = {}): Interceptor {
  return (next) => (req) => {
    let answer;
    try {
      answer = next(req);
    } catch (err) {
      return Promise.reject(callerError(logger, options, req, err));
    }
    return answer.then(
      // A server stream fails while it is read, after this returns: map those errors too.
      (res) => (res.stream ? { ...res, message: afterMessages(res.message, (err) => (err === undefined ? undefined : callerError(logger, options, req, err))) } : res),
      (err: unknown) => Promise.reject(callerError(logger, options, req, err)),
    );
  };
}

type Req = Parameters<Next>[0];

/**
 * The error the caller gets for `err`, logged (callerErrorOf). Past the call's
 * deadline the caller is answered DEADLINE_EXCEEDED, whatever the handler threw
 * (gRPC and Connect: the deadline expired before the call completed); the
 * handler's error is logged as it is.
 */
function callerError(logger: Logger, options: ErrorLogOptions, req: Req, err: unknown): ConnectError {
  const mapped = callerErrorOf(logger, options, req, err);
  const reason = req.signal.aborted ? (req.signal.reason as unknown) : undefined;
  return reason instanceof ConnectError && reason.code === Code.DeadlineExceeded ? reason : mapped;
}

/** `err` as the caller gets it, logged once: see errorInterceptor. */
function callerErrorOf(logger: Logger, options: ErrorLogOptions, req: Req, err: unknown): ConnectError {
  const requestId = req.contextValues.get(requestIdKey);
  const rpc = `${req.service.typeName}/${req.method.name}`;
  const domain = connectErrorOf(err);
  if (domain) {
    logger.debug({ rpc, requestId, code: Code[domain.code], err: domain.rawMessage }, "call refused");
    return domain;
  }
  if (err instanceof ConnectError) {
    const fault = SERVER_FAULT.has(err.code) && !options.relayed;
    logger[fault ? "error" : "debug"]({ rpc, requestId, code: Code[err.code], err: err.rawMessage }, "call failed");
    return err;
  }
  const conflict = databaseConflictOf(err);
  if (conflict) {
    // Expected under contention, not a bug; many of them say which rows are hot.
    logger.warn({ rpc, requestId, ...conflict }, "call lost to a concurrent transaction");
    const message = `the call conflicted with a concurrent change of the same data; retry it with the same idempotency key (request id ${requestId})`;
    return new ConcurrentChangeError(message).toConnectError();
  }
  logger.error({ rpc, requestId, err }, "unhandled error in handler");
  return new ConnectError(`internal error (request id ${requestId})`, Code.Internal);
}

/**
 * `messages`, read through, with `ended` called once when they end: with no
 * argument after the last one, else with the error a read failed with; an
 * error `ended` returns is thrown in its place. A reader that lets go early
 * (return()) ends the messages without `ended`. What an async generator
 * around `yield*` gives, without a generator and its queue per layer.
 */
export function afterMessages<T>(messages: AsyncIterable<T>, ended: (err?: unknown) => unknown): AsyncIterable<T> {
  return { [Symbol.asyncIterator]: () => new EndingIterator(messages, ended) };
}

const DONE = Object.freeze({ done: true as const, value: undefined });

/** afterMessages' iterator: the messages' own is taken at the first read, as a generator's `yield*` takes it. */
class EndingIterator<T> implements AsyncIterator<T> {
  private it: AsyncIterator<T> | undefined;
  private over = false;

  constructor(
    private readonly messages: AsyncIterable<T>,
    private readonly ended: (err?: unknown) => unknown,
  ) {}

  next(): Promise<IteratorResult<T>> {
    if (this.over) return Promise.resolve(DONE);
    let read: Promise<IteratorResult<T>>;
    try {
      read = (this.it ??= this.messages[Symbol.asyncIterator]()).next();
    } catch (err) {
      read = Promise.reject(err);
    }
    return read.then(
      (result) => {
        if (!result.done) return result;
        if (!this.over) this.ended();
        this.over = true;
        return DONE;
      },
      (err: unknown) => {
        if (this.over) throw err;
        this.over = true;
        throw this.ended(err) ?? err;
      },
    );
  }

  return(value?: unknown): Promise<IteratorResult<T>> {
    const { over, it } = this;
    this.over = true;
    const done = { done: true as const, value };
    return over || !it?.return ? Promise.resolve(done) : it.return(value).then(() => done);
  }
}

/**
 * One line per call (the gateway's): method, code, duration, request id and
 * the kind of caller, never who. Streams are logged when they end.
 */
export function accessLogInterceptor(logger: Logger, callerKind: (values: ContextValues) => string): Interceptor {
  return (next) => (req) => nextThen(next, req, logLine, { logger, callerKind, req, started: performance.now() });
}

/** accessLogInterceptor's line for one call. */
function logLine(call: { logger: Logger; callerKind: (values: ContextValues) => string; req: Parameters<Next>[0]; started: number }, err?: unknown): void {
  const { req } = call;
  call.logger.info(
    {
      rpc: `${req.service.typeName}/${req.method.name}`,
      code: err === undefined ? "OK" : Code[ConnectError.from(err).code],
      ms: Math.round((performance.now() - call.started) * 10) / 10,
      requestId: req.contextValues.get(requestIdKey),
      caller: call.callerKind(req.contextValues),
    },
    "call",
  );
}

type Next = Parameters<Interceptor>[0];

/**
 * Calls `next`, then `ended` with `call` once the call is over, with its error if it failed: at
 * once for a unary answer, after the last message (or the failure) of a streamed one. `ended`
 * is a function made once and `call` what it needs of the call. Promise callbacks, not an async
 * function: no suspended frame per call.
 */
export function nextThen<C>(next: Next, req: Parameters<Next>[0], ended: (call: C, err?: unknown) => void, call: C): ReturnType<Next> {
  let answer;
  try {
    answer = next(req);
  } catch (err) {
    ended(call, err);
    return Promise.reject(err);
  }
  return answer.then(
    (res) => {
      if (!res.stream) {
        ended(call);
        return res;
      }
      return { ...res, message: afterMessages(res.message, (err) => ended(call, err)) };
    },
    (err: unknown) => {
      ended(call, err);
      return Promise.reject(err);
    },
  );
}
