"use client";
// The device's step-up, for what moves a worker's money: this browser's key (made once, not extractable, registered
// with auth after the PIN sign-in) signs a fresh challenge for one purpose, and auth answers a step-up token that
// the service spends. A key removed from the account (in settings, perhaps on another phone) is forgotten here and
// a new one made, once.
import { Code, ConnectError } from "@connectrpc/connect";
import { useMutation } from "@connectrpc/connect-query";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { forgetDeviceKey, loadDeviceKey, newDeviceKey, saveDeviceKey, signChallenge, type DeviceKey } from "./device-key";

/** What a proof is for, as auth binds it into the challenge: a withdrawal, or replacing the payout number. */
export type StepUpPurpose = "payout" | "payout_number";
/** Where the step-up is, to say on screen: making and registering the key, or signing the challenge. */
export type StepUpStage = "key" | "confirm";
export type DeviceStepUp = (userId: string, purpose: StepUpPurpose, onStage?: (stage: StepUpStage) => void) => Promise<string>;

export function useDeviceStepUp(): DeviceStepUp {
  const register = useMutation(AuthService.method.registerDevice);
  const challenge = useMutation(AuthService.method.createDeviceChallenge);
  const verify = useMutation(AuthService.method.verifyDeviceChallenge);
  return async (userId, purpose, onStage = () => undefined) => {
    const registerKey = async (): Promise<DeviceKey> => {
      onStage("key");
      const made = await newDeviceKey();
      const { device: registered } = await register.mutateAsync({ name: navigator.userAgent.slice(0, 60) || "browser", publicKeyJwk: made.publicJwk });
      const key = { deviceId: registered!.deviceId, privateKey: made.privateKey };
      await saveDeviceKey(userId, key);
      return key;
    };
    let device = (await loadDeviceKey(userId)) ?? (await registerKey());
    onStage("confirm");
    const ask = () => challenge.mutateAsync({ deviceId: device.deviceId, purpose });
    const c = await ask().catch(async (x: unknown) => {
      if (ConnectError.from(x).code !== Code.NotFound) throw x;
      await forgetDeviceKey(userId);
      device = await registerKey();
      onStage("confirm");
      return ask();
    });
    const signature = await signChallenge(device.privateKey, c.challenge);
    return (await verify.mutateAsync({ challengeId: c.challengeId, signature })).stepUpToken;
  };
}
