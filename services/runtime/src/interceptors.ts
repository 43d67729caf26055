import { randomUUID } from "node:crypto";
import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
import { connectErrorOf } from "./domain-errors.js";
import { REQUEST_ID_HEADER } from "./headers.js";
import type { Logger } from "./log.js";
const VALID_REQUEST_ID = /^[A-Za-z0-9._:-]{8,128}$/;

/** The request id of the current call, for handlers and downstream calls. */
export const requestIdKey = createContextKey<string>("", { description: "request id" });

/** Accepts a well-formed caller request id or makes one, and echoes it back. */
export function requestIdInterceptor(): Interceptor {
  return (next) => async (req) => {
    const given = req.header.get(REQUEST_ID_HEADER);
    const id = given && VALID_REQUEST_ID.test(given) ? given : randomUUID();
    req.header.set(REQUEST_ID_HEADER, id);
    req.contextValues.set(requestIdKey, id);
    try {
      const res = await next(req);
      res.header.set(REQUEST_ID_HEADER, id);
      return res;
    } catch (err) {
      const ce = ConnectError.from(err);
      ce.metadata.set(REQUEST_ID_HEADER, id);
      throw ce;
    }
  };
}

/**
 * Logs failed calls and hides internal details: a DomainError becomes its
 * Connect code (the one place domain refusals are mapped); any other error
 * that is not a ConnectError is a bug, answered as INTERNAL with the request
 * id to quote.
 */
export function errorInterceptor(logger: Logger): Interceptor {
  return (next) => async (req) => {
    try {
      return await next(req);
    } catch (err) {
      const requestId = req.contextValues.get(requestIdKey);
      const rpc = `${req.service.typeName}/${req.method.name}`;
      const domain = connectErrorOf(err);
      if (domain) {
        logger.info({ rpc, requestId, code: Code[domain.code], err: domain.rawMessage }, "call refused");
        throw domain;
      }
      if (err instanceof ConnectError) {
        const level = err.code === Code.Internal || err.code === Code.Unknown || err.code === Code.DataLoss ? "error" : "info";
        logger[level]({ rpc, requestId, code: Code[err.code], err: err.rawMessage }, "call failed");
        throw err;
      }
      logger.error({ rpc, requestId, err }, "unhandled error in handler");
      throw new ConnectError(`internal error (request id ${requestId})`, Code.Internal);
    }
  };
}
