/**
 * Headers the gateway sets for the services from what it verified. It removes callers' own
 * copies of every one of them, so a service behind it can trust them.
 */
export const GATEWAY_HEADERS = Object.freeze({
  /** The verified caller's user id. */
  subject: "x-ttip-subject",
  /** The caller's roles, comma-separated. */
  roles: "x-ttip-roles",
  /** The session the access token belongs to (its `sid` claim). */
  session: "x-ttip-session",
  /** The client's network address, for per-address limits and the audit log. */
  clientAddress: "x-ttip-client-address",
  /**
   * When the gateway verified and spent the caller's device step-up for this
   * call (unix seconds); absent when it did not. Services refuse an RPC that
   * declares step_up without a fresh one.
   */
  stepUpAt: "x-ttip-step-up-at",
});

export const PRINCIPAL_HEADERS = Object.freeze({ subject: GATEWAY_HEADERS.subject, roles: GATEWAY_HEADERS.roles });
export const SESSION_HEADER = GATEWAY_HEADERS.session;
export const CLIENT_ADDRESS_HEADER = GATEWAY_HEADERS.clientAddress;
export const STEP_UP_AT_HEADER = GATEWAY_HEADERS.stepUpAt;

/** Carried through every hop, echoed back to the client. */
export const REQUEST_ID_HEADER = "x-request-id";
/** A caller's key that makes a retried write happen once. */
export const IDEMPOTENCY_KEY_HEADER = "idempotency-key";
