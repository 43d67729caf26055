// Every error from the API as a plain sentence, never a code, in English or Swahili.
import { Code, ConnectError } from "@connectrpc/connect";
const words = {
    en: {
        field: (f, d) => `Please check the ${f}: ${d}.`,
        input: (d) => `Please check what you entered: ${d}.`,
        session: "Your session has ended. Please sign in again.",
        denied: (d) => `That is not allowed: ${d}.`,
        exhausted: (d) => `Too many tries or over a limit: ${d}.`,
        precondition: (d) => `That cannot be done now: ${d}.`,
        notFound: "We could not find that.",
        exists: "That was already done.",
        unimplemented: "That is not available yet.",
        unavailable: "We cannot reach TTIP right now. Check your connection and try again.",
        other: "Something went wrong on our side. Please try again.",
    },
    // The service's own detail stays in English (it names the field); the sentence around it is Swahili.
    sw: {
        field: (f, d) => `Tafadhali angalia ${f}: ${d}.`,
        input: (d) => `Tafadhali angalia ulichoweka: ${d}.`,
        session: "Muda wako umekwisha. Tafadhali ingia tena.",
        denied: (d) => `Hilo haliruhusiwi: ${d}.`,
        exhausted: (d) => `Majaribio mengi mno au zaidi ya kikomo: ${d}.`,
        precondition: (d) => `Hilo haliwezekani sasa: ${d}.`,
        notFound: "Hatukulipata hilo.",
        exists: "Hilo limeshafanyika.",
        unimplemented: "Hilo bado halipatikani.",
        unavailable: "Hatuwezi kufikia TTIP sasa. Angalia mtandao wako ujaribu tena.",
        other: "Kuna hitilafu upande wetu. Tafadhali jaribu tena.",
    },
};
export function plainError(err, locale = "en") {
    const w = words[locale];
    const e = ConnectError.from(err);
    // "preferences.kinds[4].key: must be …" names the field, then says what is wrong.
    const field = /^([a-z_]+(?:\[\d+\])?(?:\.[a-z_]+(?:\[\d+\])?)*):/.exec(e.rawMessage)?.[1];
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
            return w.exists;
        case Code.Unimplemented:
            return w.unimplemented;
        case Code.Unavailable:
        case Code.DeadlineExceeded:
            return w.unavailable;
        default:
            return w.other;
    }
}
