// Every error from the gateway as a plain sentence in the worker's language: apps/web's
// English sentences, and the same in Swahili (the field and detail are the service's).
import { Code, ConnectError } from "@connectrpc/connect";
import { plainError as english } from "@ttip/web-lib/errors";
function swahili(err) {
    const e = ConnectError.from(err);
    const field = /^([a-z_]+(?:\.[a-z_]+)*):/.exec(e.rawMessage)?.[1];
    const detail = e.rawMessage.replace(/^[a-z_.]+:\s*/, "");
    switch (e.code) {
        case Code.InvalidArgument:
            return field ? `Tafadhali angalia ${field.replace(/_/g, " ")}: ${detail}.` : `Tafadhali angalia ulichoweka: ${detail}.`;
        case Code.Unauthenticated:
            return "Muda wako umeisha. Tafadhali ingia tena.";
        case Code.PermissionDenied:
            return `Hilo haliruhusiwi: ${detail}.`;
        case Code.ResourceExhausted:
            return `Majaribio mengi mno au umezidi kikomo: ${detail}.`;
        case Code.FailedPrecondition:
            return `Hilo haliwezekani sasa: ${detail}.`;
        case Code.NotFound:
            return "Hatukukipata.";
        case Code.AlreadyExists:
            return "Hilo limeshafanyika.";
        case Code.Unimplemented:
            return "Hilo bado halipatikani.";
        case Code.Unavailable:
        case Code.DeadlineExceeded:
            return "Hatuwezi kufikia TTIP sasa hivi. Angalia mtandao wako na ujaribu tena.";
        default:
            return "Kuna hitilafu upande wetu. Tafadhali jaribu tena.";
    }
}
export function plainError(err, locale) {
    return locale === "sw" ? swahili(err) : english(err);
}
