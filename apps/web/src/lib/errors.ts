// Every error from the API as a plain sentence, never a code.
import { Code, ConnectError } from "@connectrpc/connect";

export function plainError(err: unknown): string {
  const e = ConnectError.from(err);
  const field = /^([a-z_]+(?:\.[a-z_]+)*):/.exec(e.rawMessage)?.[1];
  const detail = e.rawMessage.replace(/^[a-z_.]+:\s*/, "");
  switch (e.code) {
    case Code.InvalidArgument:
      return field ? `Please check the ${field.replace(/_/g, " ")}: ${detail}.` : `Please check what you entered: ${detail}.`;
    case Code.Unauthenticated:
      return "Your session has ended. Please sign in again.";
    case Code.PermissionDenied:
      return `That is not allowed: ${detail}.`;
    case Code.ResourceExhausted:
      return `Too many tries or over a limit: ${detail}.`;
    case Code.FailedPrecondition:
      return `That cannot be done now: ${detail}.`;
    case Code.NotFound:
      return "We could not find that.";
    case Code.AlreadyExists:
      return "That was already done.";
    case Code.Unimplemented:
      return "That is not available yet.";
    case Code.Unavailable:
    case Code.DeadlineExceeded:
      return "We cannot reach TTIP right now. Check your connection and try again.";
    default:
      return "Something went wrong on our side. Please try again.";
  }
}
