// The device's step-up as both apps run it, whatever holds the key (the browser's IndexedDB, the phone's secure
// store): this device's registered key, or a new one made and registered; auth's fresh challenge for one purpose,
// signed; auth's step-up token back. A key removed from the account (in settings, perhaps on another phone) is
// forgotten here and a new one made, once. Adding a key takes the PIN, asked for only then.
import { Code, ConnectError } from "@connectrpc/connect";

/** What a proof is for, as auth binds it into the challenge: a withdrawal, or replacing the payout number. */
export type StepUpPurpose = "payout" | "payout_number";

/** A browser's key as auth lists it: its user agent, cut to what the lists keep (readableAgent words it). */
export const browserKeyName = (): string => navigator.userAgent.slice(0, 60) || "browser";
/** Where the step-up is, to say on screen: making and registering the key, or signing the challenge. */
export type StepUpStage = "key" | "confirm";
export type DeviceStepUp = (userId: string, purpose: StepUpPurpose, onStage?: (stage: StepUpStage) => void) => Promise<string>;
/** Asks the worker for their PIN (a key is added with it); rejects with PinNotGiven when they decline. */
export type AskPin = () => Promise<string>;

/** The worker declined to type their PIN: no key was added and nothing was sent. */
export class PinNotGiven extends Error {
  constructor() {
    super("the PIN was not given");
    this.name = "PinNotGiven";
  }
}

/**
 * The PIN asked for while the step-up waits: `ask` is the flow's AskPin, the screen's prompt answers or declines.
 * One at a time (a second ask declines the first), and `shown` tells the screen when to show the prompt.
 */
export class PinRequest {
  private waiting?: { resolve: (pin: string) => void; reject: (e: Error) => void };
  constructor(private readonly shown: (asking: boolean) => void) {}

  readonly ask: AskPin = () => new Promise<string>((resolve, reject) => {
    this.waiting?.reject(new PinNotGiven());
    this.waiting = { resolve, reject };
    this.shown(true);
  });

  answer(pin: string): void {
    this.settle((w) => w.resolve(pin));
  }

  /** Declined, or the screen left (else its send, and what it tells the next visit, would wait for ever). */
  decline(): void {
    this.settle((w) => w.reject(new PinNotGiven()));
  }

  private settle(how: (w: NonNullable<PinRequest["waiting"]>) => void): void {
    const w = this.waiting;
    this.waiting = undefined;
    this.shown(false);
    if (w) how(w);
  }
}

/** This device's key for one user, as the flow needs it. */
export interface StepUpKey {
  /** The device id of the key this device holds, if any. */
  deviceId(): Promise<string | undefined>;
  /** Makes a key, registers it with auth (with the worker's PIN) and keeps it; its device id. */
  register(pin: string): Promise<string>;
  forget(): Promise<void>;
  /** Signs with the key deviceId or register last answered. */
  sign(challenge: Uint8Array): Promise<Uint8Array>;
}

/** Auth's two calls the flow makes. */
export interface StepUpCalls {
  challenge(req: { deviceId: string; purpose: string }): Promise<{ challengeId: string; challenge: Uint8Array }>;
  verify(req: { challengeId: string; signature: Uint8Array }): Promise<{ stepUpToken: string }>;
}

export async function proveDevice(key: StepUpKey, calls: StepUpCalls, askPin: AskPin, purpose: StepUpPurpose, onStage: (stage: StepUpStage) => void = () => undefined): Promise<string> {
  const register = async () => {
    const pin = await askPin();
    onStage("key");
    return key.register(pin);
  };
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
