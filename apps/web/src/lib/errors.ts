// Every error from the API as a plain sentence, never a code, in English or Swahili.
import { Code, ConnectError } from "@connectrpc/connect";
import { DomainErrorInfoSchema } from "@ttip/proto/ttip/common/v1/errors_pb.js";
import type { Locale } from "./i18n";
import { PinNotGiven } from "./step-up-flow";

const words = {
  en: {
    field: (f: string, d: string) => `Please check the ${f}: ${d}.`,
    input: (d: string) => `Please check what you entered: ${d}.`,
    session: "Your session has ended. Please sign in again.",
    denied: (d: string) => `That is not allowed: ${d}.`,
    exhausted: (d: string) => `Too many tries or over a limit: ${d}.`,
    precondition: (d: string) => `That cannot be done now: ${d}.`,
    notFound: "We could not find that.",
    exists: "That was already done.",
    unimplemented: "That is not available yet.",
    unavailable: "We cannot reach TTIP right now. Check your connection and try again.",
    busy: "TTIP is busy right now. Nothing was done; please try again in a few seconds.",
    aborted: (d: string) => `That could not be done just now: ${d}.`,
    other: "Something went wrong on our side. Please try again.",
    pinNotGiven: "Nothing was sent: this device is set up with your PIN first.",
  },
  // The service's own detail stays in English (it names the field); the sentence around it is Swahili.
  sw: {
    field: (f: string, d: string) => `Tafadhali angalia ${f}: ${d}.`,
    input: (d: string) => `Tafadhali angalia ulichoweka: ${d}.`,
    session: "Muda wako umekwisha. Tafadhali ingia tena.",
    denied: (d: string) => `Hilo haliruhusiwi: ${d}.`,
    exhausted: (d: string) => `Majaribio mengi mno au zaidi ya kikomo: ${d}.`,
    precondition: (d: string) => `Hilo haliwezekani sasa: ${d}.`,
    notFound: "Hatukulipata hilo.",
    exists: "Hilo limeshafanyika.",
    unimplemented: "Hilo bado halipatikani.",
    unavailable: "Hatuwezi kufikia TTIP sasa. Angalia mtandao wako ujaribu tena.",
    busy: "TTIP ina shughuli nyingi sasa hivi. Hakuna kilichofanyika; tafadhali jaribu tena baada ya sekunde chache.",
    aborted: (d: string) => `Hilo halikuweza kufanyika sasa hivi: ${d}.`,
    other: "Kuna hitilafu upande wetu. Tafadhali jaribu tena.",
    pinNotGiven: "Hakuna kilichotumwa: kifaa hiki kinaandaliwa kwa PIN yako kwanza.",
  },
};

/**
 * A server too busy to take the call refused it before doing anything (UNAVAILABLE,
 * reason OVERLOADED): the same request, under the same idempotency key, may be sent again.
 */
export function overloaded(err: unknown): boolean {
  const e = ConnectError.from(err);
  return e.code === Code.Unavailable && e.findDetails(DomainErrorInfoSchema).some((d) => d.reason === "OVERLOADED");
}

/** The field a refusal's message begins with ("preferences.kinds[4].key: must be …" gives "preferences.kinds[4].key"); undefined when it names none. */
export function messageField(rawMessage: string): string | undefined {
  return /^([a-z_]+(?:\[\d+\])?(?:\.[a-z_]+(?:\[\d+\])?)*):/.exec(rawMessage)?.[1];
}

/** A refusal asking for the device's step-up (FAILED_PRECONDITION naming step_up_token): the same request, proved, goes. */
export function asksForStepUp(err: unknown): boolean {
  const e = ConnectError.from(err);
  return e.code === Code.FailedPrecondition && messageField(e.rawMessage) === "step_up_token";
}

export function plainError(err: unknown, locale: Locale = "en"): string {
  const w = words[locale];
  // The worker declined the PIN a new device key needs (step-up-flow): not the API's, said here for web and phone.
  if (err instanceof PinNotGiven) return w.pinNotGiven;
  const e = ConnectError.from(err);
  const field = messageField(e.rawMessage);
  const detail = field ? e.rawMessage.slice(field.length + 1).trim() : e.rawMessage;
  switch (e.code) {
    case Code.InvalidArgument:
      return field ? w.field(field.replace(/\[\d+\]/g, "").replace(/[_.]/g, " "), detail) : w.input(detail);
    case Code.Unauthenticated:
      return w.session;
    case Code.PermissionDenied:
      return w.denied(detail);
    case Code.ResourceExhausted:
      return w.exhausted(detail);
    case Code.FailedPrecondition:
      return w.precondition(detail);
    case Code.NotFound:
      return w.notFound;
    case Code.AlreadyExists:
      // A refusal naming what exists ("phone: this number is already on the venue's staff") says so.
      return field ? w.field(field.replace(/\[\d+\]/g, "").replace(/[_.]/g, " "), detail) : w.exists;
    case Code.Unimplemented:
      return w.unimplemented;
    case Code.Unavailable:
      return overloaded(e) ? w.busy : w.unavailable;
    case Code.DeadlineExceeded:
      return w.unavailable;
    case Code.Aborted:
      // Lost to a concurrent change (an automatic payout placing its hold): the service says when to ask again.
      return w.aborted(detail);
    default:
      return w.other;
  }
}
