// The device's step-up, for what moves a worker's money: this phone's key (made once, its secret in the secure
// store, registered with auth) signs auth's fresh challenge for one purpose, and auth answers a step-up token
// that payment spends. The screen asks for the biometric prompt first. A key removed from the account (in
// settings, perhaps on another phone) is forgotten here and a new one made, once.
import { Code, ConnectError } from "@connectrpc/connect";
import { useMutation } from "@connectrpc/connect-query";
import { AuthService } from "@ttip/proto/ttip/auth/v1/auth_service_pb.js";
import { Platform } from "react-native";
import { useApp } from "../app-context";

/** What a proof is for, as auth binds it into the challenge: a withdrawal, or replacing the payout number. */
export type StepUpPurpose = "payout" | "payout_number";
/** Where the step-up is, to say on screen: making and registering the key, or signing the challenge. */
export type StepUpStage = "key" | "confirm";
export type DeviceStepUp = (userId: string, purpose: StepUpPurpose, onStage?: (stage: StepUpStage) => void) => Promise<string>;

export function useDeviceStepUp(): DeviceStepUp {
  const { keyring } = useApp();
  const register = useMutation(AuthService.method.registerDevice);
  const challenge = useMutation(AuthService.method.createDeviceChallenge);
  const verify = useMutation(AuthService.method.verifyDeviceChallenge);
  return async (userId, purpose, onStage = () => undefined) => {
    const keys = await keyring();
    const registerKey = async () => {
      onStage("key");
      const made = await keys.create(userId);
      const { device } = await register.mutateAsync({ name: `TTIP app (${Platform.OS})`, publicKeyJwk: made.publicJwk });
      await made.keep(device!.deviceId);
      return device!.deviceId;
    };
    let deviceId = (await keys.deviceId(userId)) ?? (await registerKey());
    onStage("confirm");
    const ask = () => challenge.mutateAsync({ deviceId, purpose });
    const c = await ask().catch(async (err: unknown) => {
      if (ConnectError.from(err).code !== Code.NotFound) throw err;
      await keys.forget(userId);
      deviceId = await registerKey();
      onStage("confirm");
      return ask();
    });
    const signature = await keys.sign(userId, c.challenge);
    return (await verify.mutateAsync({ challengeId: c.challengeId, signature })).stepUpToken;
  };
}
