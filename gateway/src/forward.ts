import type { DescMethod, DescMethodServerStreaming, DescMethodUnary, DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type ConnectRouter, type ContextValues, type HandlerContext, type Transport } from "@connectrpc/connect";
import { IDEMPOTENCY_KEY_HEADER, LightHeaders, REQUEST_ID_HEADER, signInternal, STEP_UP_AT_HEADER, stepUpHeaderValue } from "@ttip/runtime";
import { CLIENT_ADDRESS_HEADER, principalKey, PRINCIPAL_HEADERS, SESSION_HEADER } from "./auth.js";
import { stepUpVerifiedKey } from "./policy.js";
import { clientAddressKey } from "./rate-limit.js";

/** Request headers a backend needs; everything else stays at the door. */
const FORWARDED = [REQUEST_ID_HEADER, IDEMPOTENCY_KEY_HEADER, "accept-language", "user-agent"];

/** The headers a call to the backend carries, from the caller's (`requestHeader`) and what the checks found (`values`); signed. */
export function outgoingHeaders(requestHeader: Headers, values: ContextValues): Headers {
  const headers: Headers = new LightHeaders();
  for (const name of FORWARDED) {
    const v = requestHeader.get(name);
    if (v) headers.set(name, v);
  }
  // The verified principal, never the caller's own claims (those were dropped).
  const principal = values.get(principalKey);
  if (principal) {
    headers.set(PRINCIPAL_HEADERS.subject, principal.subject);
    headers.set(PRINCIPAL_HEADERS.roles, principal.roles.join(","));
    if (principal.sessionId) headers.set(SESSION_HEADER, principal.sessionId);
  }
  // The address the gateway worked out from its trusted proxies; the raw
  // X-Forwarded-For is the client's to invent and stays at the door.
  headers.set(CLIENT_ADDRESS_HEADER, values.get(clientAddressKey));
  // The step-up the policy verified and spent; services demand it for money actions.
  const steppedUp = values.get(stepUpVerifiedKey);
  if (steppedUp !== undefined) headers.set(STEP_UP_AT_HEADER, stepUpHeaderValue(steppedUp));
  // The services believe these headers only with the internal key's signature over them.
  signInternal(headers);
  return headers;
}

function callOptions(ctx: HandlerContext) {
  const timeoutMs = ctx.timeoutMs();
  return {
    headers: outgoingHeaders(ctx.requestHeader, ctx.values),
    signal: ctx.signal,
    timeoutMs,
    onHeader: (h: Headers) => copyHeaders(h, ctx.responseHeader),
    onTrailer: (t: Headers) => copyHeaders(t, ctx.responseTrailer),
  };
}

/** Application metadata, relayed between the legs; protocol and hop-by-hop headers belong to each leg. */
export function isMetadata(name: string): boolean {
  return name.startsWith("x-") || name === "retry-after";
}

function copyHeaders(from: Headers, to: Headers) {
  from.forEach((value, key) => {
    if (isMetadata(key)) to.set(key, value);
  });
}

/**
 * The backend's error as this gateway's own: same code, message and details. One made here by the connection
 * (a socket's error its cause) is said plainly: its words name internal addresses ("connect ECONNREFUSED
 * 10.42.3.7:8080"), kept in its cause for the log.
 */
export function relayedError(err: unknown): ConnectError {
  const e = ConnectError.from(err);
  const metadata = new Headers();
  copyHeaders(e.metadata, metadata);
  const local = e.code === Code.Unavailable && e.cause instanceof Error && "code" in e.cause;
  const relayed = new ConnectError(local ? "the service cannot be reached just now; try again shortly" : e.rawMessage, e.code, metadata, undefined, e.cause);
  relayed.details.push(...e.details);
  return relayed;
}

function relayError(err: unknown): never {
  throw relayedError(err);
}

/**
 * Serves `service` on the gateway by calling the same method on the backend.
 * Errors pass through with their code, message and details, so a client sees
 * exactly what the owning service said. Unary and server-streaming calls go
 * to the transport itself: connect-es's client (`viaClient`, as before: the
 * benches' yardstick) adds a layer of its own per call and, for a stream, a
 * generator and a delegator compiled for older engines around every message
 * (bench/gateway-tip-calls.ts). Client and bidi streams keep the client.
 */
export function forwardService(router: ConnectRouter, service: DescService, transport: Transport, { viaClient = false }: { viaClient?: boolean } = {}): void {
  const client = createClient(service, transport) as unknown as Record<string, (...args: unknown[]) => unknown>;
  const impl: Record<string, unknown> = {};
  for (const method of service.methods) {
    const direct = viaClient ? undefined : forwardToTransport(method, transport);
    impl[method.localName] = direct ?? forwardMethod(method, client[method.localName]);
  }
  router.service(service, impl as never);
}

/** A unary or server-streaming method forwarded on the transport, as the client would call it; undefined for the other kinds. */
function forwardToTransport(method: DescMethod, transport: Transport) {
  switch (method.methodKind) {
    case "unary":
      return async (req: unknown, ctx: HandlerContext) => {
        try {
          const res = await transport.unary(method as DescMethodUnary, ctx.signal, ctx.timeoutMs(), outgoingHeaders(ctx.requestHeader, ctx.values), req as never, undefined);
          copyHeaders(res.header, ctx.responseHeader);
          copyHeaders(res.trailer, ctx.responseTrailer);
          return res.message;
        } catch (err) {
          relayError(err);
        }
      };
    case "server_streaming":
      // Each message passes through as it arrives.
      return async function* (req: unknown, ctx: HandlerContext) {
        try {
          const res = await transport.stream(method as DescMethodServerStreaming, ctx.signal, ctx.timeoutMs(), outgoingHeaders(ctx.requestHeader, ctx.values), oneMessage(req as never), undefined);
          copyHeaders(res.header, ctx.responseHeader);
          yield* res.message;
          copyHeaders(res.trailer, ctx.responseTrailer);
        } catch (err) {
          relayError(err);
        }
      };
    default:
      return undefined;
  }
}

/** A server-streaming call's one request message, as the client sends it. */
async function* oneMessage<T>(message: T): AsyncGenerator<T> {
  yield message;
}

function forwardMethod(method: DescMethod, call: (...args: unknown[]) => unknown) {
  switch (method.methodKind) {
    case "unary":
    case "client_streaming":
      return (req: unknown, ctx: HandlerContext) => (call(req, callOptions(ctx)) as Promise<unknown>).catch(relayError);
    default:
      // Streams pass each message through as it arrives.
      return async function* (req: unknown, ctx: HandlerContext) {
        try {
          yield* call(req, callOptions(ctx)) as AsyncIterable<unknown>;
        } catch (err) {
          relayError(err);
        }
      };
  }
}
