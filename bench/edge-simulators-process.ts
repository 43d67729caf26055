// The simulators' process of bench/edge-simulators.ts: Daraja (STK callbacks at
// once), the OTP SMS simulator and the providers' simulator, on loopback. It
// says where they listen, then answers the bench's questions until asked to
// close, or until the bench is gone (its IPC channel closed).
import { startSmsSimulator } from "@ttip/auth/testing";
import { ProviderSimulator } from "@ttip/notification/testing";
import { startDarajaSimulator } from "@ttip/payment/testing";
import { EDGE_SMS_API_KEY, type EdgeAnswer, type EdgeReady, type EdgeRequest } from "./edge-simulators.js";
import { startProfile, stopProfile } from "./process-profile.js";

const sms = await startSmsSimulator({ apiKey: EDGE_SMS_API_KEY });
const providers = new ProviderSimulator();
await providers.start();
const daraja = await startDarajaSimulator({ callbackDelayMs: 0 });

const ready: EdgeReady = {
  ready: true,
  daraja: { url: daraja.url, options: daraja.options, certificateFile: daraja.certificateFile, client: daraja.clientConfig() },
  smsUrl: sms.url,
  providers: providers.config(),
};
process.send!(ready);

let closing: Promise<void> | undefined;
function close(): Promise<void> {
  closing ??= Promise.allSettled([daraja.close(), providers.close(), sms.close()]).then(() => undefined);
  return closing;
}

function answer(req: EdgeRequest): Omit<EdgeAnswer, "id"> {
  switch (req.kind) {
    case "lastSms":
      return { message: sms.lastTo(req.phone)?.message };
    case "stkCallbacksSent":
      // Only what the bench reads, of every push so far (thousands a run).
      return { sent: daraja.transactions().filter((t) => t.kind === "stk").map((t) => [t.checkoutRequestId!, t.callbackSentAt ?? NaN]) };
    case "providerSends":
      return { sends: providers.sent.length };
    case "close":
    case "profileStart":
    case "profileStop":
      return {};
  }
}

/** Questions answered once something asynchronous is done. */
function answerLater(req: EdgeRequest): Promise<void> | undefined {
  if (req.kind === "profileStart") return startProfile();
  if (req.kind === "profileStop") return stopProfile(req.file);
  return undefined;
}

process.on("message", (req: EdgeRequest) => {
  if (req.kind === "close") {
    void close().then(() => process.send!({ id: req.id }, () => process.disconnect()));
    return;
  }
  const later = answerLater(req);
  if (later) {
    later.then(() => process.send!({ id: req.id }), (err: unknown) => process.send!({ id: req.id, error: String((err as Error)?.stack ?? err) }));
    return;
  }
  try {
    process.send!({ id: req.id, ...answer(req) });
  } catch (err) {
    process.send!({ id: req.id, error: String((err as Error)?.stack ?? err) });
  }
});
// The bench gone (ended, or killed): nothing is left listening.
process.on("disconnect", () => void close().then(() => process.exit(0)));
