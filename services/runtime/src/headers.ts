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
});

export const PRINCIPAL_HEADERS = Object.freeze({ subject: GATEWAY_HEADERS.subject, roles: GATEWAY_HEADERS.roles });
export const SESSION_HEADER = GATEWAY_HEADERS.session;
export const CLIENT_ADDRESS_HEADER = GATEWAY_HEADERS.clientAddress;

/** Carried through every hop, echoed back to the client. */
export const REQUEST_ID_HEADER = "x-request-id";
/** A caller's key that makes a retried write happen once. */
export const IDEMPOTENCY_KEY_HEADER = "idempotency-key";
