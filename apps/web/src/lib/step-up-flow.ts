// The device's step-up as both apps run it, whatever holds the key (the browser's IndexedDB, the phone's secure
// store): this device's registered key, or a new one made and registered; auth's fresh challenge for one purpose,
// signed; auth's step-up token back. A key removed from the account (in settings, perhaps on another phone) is
// forgotten here and a new one made, once.
import { Code, ConnectError } from "@connectrpc/connect";

/** What a proof is for, as auth binds it into the challenge: a withdrawal, or replacing the payout number. */
export type StepUpPurpose = "payout" | "payout_number";

/** A browser's key as auth lists it: its user agent, cut to what the lists keep (readableAgent words it). */
export const browserKeyName = (): string => navigator.userAgent.slice(0, 60) || "browser";
/** Where the step-up is, to say on screen: making and registering the key, or signing the challenge. */
export type StepUpStage = "key" | "confirm";
export type DeviceStepUp = (userId: string, purpose: StepUpPurpose, onStage?: (stage: StepUpStage) => void) => Promise<string>;

/** This device's key for one user, as the flow needs it. */
export interface StepUpKey {
  /** The device id of the key this device holds, if any. */
  deviceId(): Promise<string | undefined>;
  /** Makes a key, registers it with auth and keeps it; its device id. */
  register(): Promise<string>;
  forget(): Promise<void>;
  /** Signs with the key deviceId or register last answered. */
  sign(challenge: Uint8Array): Promise<Uint8Array>;
}

/** Auth's two calls the flow makes. */
export interface StepUpCalls {
  challenge(req: { deviceId: string; purpose: string }): Promise<{ challengeId: string; challenge: Uint8Array }>;
  verify(req: { challengeId: string; signature: Uint8Array }): Promise<{ stepUpToken: string }>;
}

export async function proveDevice(key: StepUpKey, calls: StepUpCalls, purpose: StepUpPurpose, onStage: (stage: StepUpStage) => void = () => undefined): Promise<string> {
  const register = () => (onStage("key"), key.register());
  let deviceId = (await key.deviceId()) ?? (await register());
  onStage("confirm");
  const ask = () => calls.challenge({ deviceId, purpose });
  const c = await ask().catch(async (err: unknown) => {
    if (ConnectError.from(err).code !== Code.NotFound) throw err;
    await key.forget();
    deviceId = await register();
    onStage("confirm");
    return ask();
  });
  return (await calls.verify({ challengeId: c.challengeId, signature: await key.sign(c.challenge) })).stepUpToken;
}
